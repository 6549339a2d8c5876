"""POST /v1/chat over a real uvicorn server with the real tiny model."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from tests.conftest import FaultyGenerate, stream_chat

PROMPT = [{"role": "user", "content": "How do I reverse a list in Python?"}]


def test_text_arrives_incrementally(client: httpx.Client) -> None:
    result = stream_chat(client, {"messages": PROMPT, "max_new_tokens": 512, "ignore_eos": True, "seed": 0})

    assert result.status_code == 200
    assert result.done is not None
    # One event per token or close to it, not whole words or the whole text at the end.
    assert len(result.texts) > 256
    assert all(result.texts), "no empty text events"
    first, last = result.arrival_s[0], result.arrival_s[-1]
    assert first < 0.25 * last, f"first event at {first:.3f}s, last at {last:.3f}s"


def test_done_event_reports_usage_timings_and_instance(client: httpx.Client, tokenizer: Any) -> None:
    result = stream_chat(client, {"messages": PROMPT, "max_new_tokens": 16, "ignore_eos": True})

    done = result.done
    assert done is not None
    expected_prompt = tokenizer.apply_chat_template(PROMPT, add_generation_prompt=True, return_dict=False)
    assert done["usage"] == {
        "prompt_tokens": len(expected_prompt),
        "completion_tokens": 16,
        "total_tokens": len(expected_prompt) + 16,
    }
    assert done["finish_reason"] == "length"
    timings = done["timings"]
    assert 0 <= timings["queue_s"] <= timings["ttft_s"] <= timings["total_s"]
    assert len(done["instance"]["id"]) >= 8
    assert 0 < time.time() - done["instance"]["started_at"] < 3600


def test_completion_tokens_match_the_tokenizer(client: httpx.Client, tokenizer: Any) -> None:
    # Greedy decoding with a stop at EOS: the usage must count what was generated,
    # which re-encodes to the same text.
    result = stream_chat(client, {"messages": PROMPT, "max_new_tokens": 40, "temperature": 0})

    assert result.done is not None
    completion = result.done["usage"]["completion_tokens"]
    assert 1 <= completion <= 40
    reencoded = tokenizer(result.text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(reencoded) == result.text


def test_ignore_eos_generates_exactly_max_new_tokens(client: httpx.Client) -> None:
    for max_new_tokens in (1, 7, 100):
        result = stream_chat(
            client, {"messages": "hi", "max_new_tokens": max_new_tokens, "ignore_eos": True, "seed": 3}
        )
        assert result.done is not None
        assert result.done["usage"]["completion_tokens"] == max_new_tokens
        assert result.done["finish_reason"] == "length"


def test_chat_template_is_applied(client: httpx.Client, tokenizer: Any) -> None:
    system_first = [{"role": "system", "content": "Answer in one line."}, *PROMPT]

    plain = stream_chat(client, {"messages": PROMPT, "max_new_tokens": 1})
    with_system = stream_chat(client, {"messages": system_first, "max_new_tokens": 1})

    assert plain.done is not None
    assert with_system.done is not None
    rendered = tokenizer.apply_chat_template(system_first, add_generation_prompt=True, tokenize=False)
    assert rendered.startswith("<s>[INST] Answer in one line.\n\nHow do I reverse")
    assert rendered.endswith("[/INST]")
    assert with_system.done["usage"]["prompt_tokens"] == len(
        tokenizer.apply_chat_template(system_first, add_generation_prompt=True, return_dict=False)
    )
    assert with_system.done["usage"]["prompt_tokens"] > plain.done["usage"]["prompt_tokens"]


def test_a_plain_string_is_one_user_message(client: httpx.Client) -> None:
    as_string = stream_chat(
        client, {"messages": "How do I reverse a list in Python?", "seed": 5, "max_new_tokens": 20}
    )
    as_list = stream_chat(client, {"messages": PROMPT, "seed": 5, "max_new_tokens": 20})

    assert as_string.text == as_list.text
    assert as_string.done == {**as_list.done, "timings": as_string.done["timings"]}


def test_same_seed_same_text_and_different_seed_different_text(client: httpx.Client) -> None:
    payload = {"messages": PROMPT, "max_new_tokens": 30, "ignore_eos": True}

    first = stream_chat(client, {**payload, "seed": 11})
    again = stream_chat(client, {**payload, "seed": 11})
    other = stream_chat(client, {**payload, "seed": 12})

    assert first.text == again.text
    assert first.text != other.text


def test_concurrent_requests_never_mix_text(server_url: str) -> None:
    payloads = [
        {
            "messages": [{"role": "user", "content": f"question number {i}"}],
            "seed": i,
            "max_new_tokens": 60,
            "ignore_eos": True,
        }
        for i in range(6)
    ]
    with httpx.Client(base_url=server_url, timeout=60) as http:
        alone = [stream_chat(http, p).text for p in payloads]

    def run(payload: dict[str, Any]) -> str:
        with httpx.Client(base_url=server_url, timeout=60) as http:
            return stream_chat(http, payload).text

    with ThreadPoolExecutor(len(payloads)) as pool:
        together = list(pool.map(run, payloads))

    assert together == alone
    assert len(set(alone)) == len(alone)


def test_stop_string_ends_the_text_before_it(client: httpx.Client) -> None:
    payload = {"messages": PROMPT, "max_new_tokens": 80, "ignore_eos": True, "seed": 21}
    full = stream_chat(client, payload).text
    stop = full[30:34]
    assert stop
    assert stop not in full[:30]

    stopped = stream_chat(client, {**payload, "stop": [stop]})

    assert stopped.text == full[: full.index(stop)]
    assert stopped.done is not None
    assert stopped.done["finish_reason"] == "stop"
    assert stopped.done["usage"]["completion_tokens"] < 80


def test_failure_inside_generate_is_an_error_event_and_the_next_request_succeeds(
    faulty_server_url: str, faulty: FaultyGenerate
) -> None:
    with httpx.Client(base_url=faulty_server_url, timeout=60) as http:
        faulty.fail_next.set()
        failed = stream_chat(http, {"messages": PROMPT, "max_new_tokens": 8})
        after = stream_chat(http, {"messages": PROMPT, "max_new_tokens": 8, "ignore_eos": True})

        assert failed.status_code == 200
        assert failed.done is None
        assert failed.error is not None
        assert failed.error["error"]["type"] == "server_error"
        assert "injected failure" in failed.error["error"]["message"]
        assert after.done is not None
        assert after.done["usage"]["completion_tokens"] == 8
        assert http.get("/ready").status_code == 200

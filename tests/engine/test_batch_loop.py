"""The batch loop against generate(): the same tokens, whoever shares the batch and whenever they joined."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from transformers import LogitsProcessorList

from service.engine.batch_loop import BatchLoop
from service.engine.batch_request import BatchRequest
from service.engine.llama_forward import LlamaForward
from service.engine.loader import LoadedModel, load_model
from service.engine.logprobs import SampledLogprobs
from service.engine.sampling import SeededSampler
from service.settings import Settings

TOP_P = 0.9


@pytest.fixture(scope="module")
def loaded(settings: Settings) -> LoadedModel:
    return load_model(settings)


@pytest.fixture
def batch_loop(loaded: LoadedModel) -> Iterator[BatchLoop]:
    tokenizer = loaded.tokenizer
    running = BatchLoop(loaded.model, 4, pad_token_id=0, stop_token_ids=[tokenizer.eos_token_id])
    yield running
    running.stop()


def prompt(loaded: LoadedModel, text: str) -> list[int]:
    return loaded.tokenizer.apply_chat_template([{"role": "user", "content": text}], return_dict=False)


def generate_reference(
    loaded: LoadedModel, prompt_ids: list[int], tokens: int, temperature: float, seed: int
) -> list[int]:
    """What the sequential engine's generate() makes of it (ignore_eos: min_new_tokens)."""
    input_ids = torch.tensor([prompt_ids])
    sampler = SeededSampler(temperature, TOP_P, seed, len(prompt_ids))
    with torch.inference_mode():
        output = loaded.model.generate(
            input_ids,
            attention_mask=torch.ones_like(input_ids),
            max_new_tokens=tokens,
            min_new_tokens=tokens,
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            pad_token_id=0,
            logits_processor=LogitsProcessorList([sampler]),
        )
    return output[0, len(prompt_ids) :].tolist()


class Collected:
    def __init__(self) -> None:
        self.token_ids: list[int] = []
        self.logprobs: list[SampledLogprobs] = []
        self.error: BaseException | None = None
        self.finished = threading.Event()
        self.delivered_at: list[float] = []  # perf_counter, per delivery

    def __call__(
        self,
        token_ids: list[int],
        finished: bool,
        error: BaseException | None,
        logprobs: list[SampledLogprobs] | None = None,
    ) -> None:
        self.delivered_at.append(time.perf_counter())
        self.token_ids += token_ids
        self.logprobs += logprobs or []
        self.error = error
        if finished:
            self.finished.set()


def submit(
    batch_loop: BatchLoop, prompt_ids: list[int], tokens: int, temperature: float = 0.0, seed: int = 0
) -> tuple[BatchRequest, Collected]:
    collected = Collected()
    request = BatchRequest(prompt_ids, tokens, temperature, TOP_P, seed, True, collected)
    batch_loop.submit(request)
    return request, collected


def test_rows_that_join_at_different_times_get_generates_tokens(
    loaded: LoadedModel, batch_loop: BatchLoop
) -> None:
    # Different prompt lengths (the batch pads left), greedy and sampled rows, staggered arrivals,
    # and more requests than rows (the fifth waits for a free one).
    cases: list[tuple[str, int, float, int]] = [
        ("hello", 40, 0.0, 1),
        ("write a long function that sorts a list of numbers quickly, please", 25, 0.0, 2),
        ("hi", 50, 0.8, 3),
        ("write a long function that sorts a list of numbers quickly, please", 20, 1.0, 4),
        ("what is a closure?", 10, 0.7, 5),
    ]
    collected: list[Collected] = []
    for text, tokens, temperature, seed in cases:
        collected.append(submit(batch_loop, prompt(loaded, text), tokens, temperature, seed)[1])
        time.sleep(0.005)

    for result in collected:
        assert result.finished.wait(60)
    for (text, tokens, temperature, seed), result in zip(cases, collected, strict=True):
        assert result.error is None
        assert result.token_ids == generate_reference(loaded, prompt(loaded, text), tokens, temperature, seed)


def test_a_cancelled_row_stops_within_a_step_and_frees_its_place(
    loaded: LoadedModel, batch_loop: BatchLoop
) -> None:
    hello = prompt(loaded, "hello")
    rows = [submit(batch_loop, hello, 1800) for _ in range(4)]  # every row of the batch
    waiting_request, waiting = submit(batch_loop, hello, 1800)
    waiting_request.cancelled = True  # cancelled while it waits: never prefilled
    late_request, late = submit(batch_loop, hello, 5)
    time.sleep(0.1)
    assert not late.finished.is_set(), "no row is free yet"

    first_request, first = rows[0]
    first_request.cancelled = True

    assert late.finished.wait(30), "the cancelled row's place went to the next request"
    tokens_when_cancelled = len(first.token_ids)
    time.sleep(0.1)
    assert len(first.token_ids) == tokens_when_cancelled < 1800
    assert waiting.token_ids == []
    assert late_request.generated == len(late.token_ids) == 5
    for request, _ in rows[1:]:
        request.cancelled = True


@pytest.mark.parametrize("gap_s", [1.0, 0.0], ids=["gathered", "at-once"])
def test_an_idle_loop_gathers_requests_arriving_within_the_gap_into_one_prefill(
    loaded: LoadedModel, gap_s: float
) -> None:
    """A burst reaching an idle loop is prefilled before its first decode step (in passes: the
    second starts before the first has its second token); with no gap the first starts alone. A
    1 s gap against 50 ms between arrivals: no race on a slow machine."""
    tokenizer = loaded.tokenizer
    loop = BatchLoop(
        loaded.model, 4, pad_token_id=0, stop_token_ids=[tokenizer.eos_token_id], arrival_gap_s=gap_s
    )
    try:
        first, first_done = submit(loop, prompt(loaded, "hello"), 3)
        if gap_s == 0.0:
            assert first_done.finished.wait(60)  # certainly started before the next one arrives
        else:
            time.sleep(0.05)
        second, second_done = submit(loop, prompt(loaded, "hi there"), 3)
        assert first_done.finished.wait(60)
        assert second_done.finished.wait(60)
    finally:
        loop.stop()

    assert first.started_at is not None
    assert second.started_at is not None
    assert (second.started_at < first_done.delivered_at[1]) == (gap_s > 0)


@pytest.mark.parametrize("on_their_way", [0, 1], ids=["none-on-their-way", "one-on-its-way"])
def test_an_idle_loop_waits_for_a_gap_only_while_requests_are_on_their_way(
    loaded: LoadedModel, on_their_way: int
) -> None:
    """A lone request (nothing announced: service.engine.arrivals) starts at once, not a 1 s gap
    later; one announced and never arriving keeps the loop waiting the gap."""
    tokenizer = loaded.tokenizer
    loop = BatchLoop(
        loaded.model,
        4,
        pad_token_id=0,
        stop_token_ids=[tokenizer.eos_token_id],
        arrival_gap_s=1.0,
        on_their_way=lambda: on_their_way,
    )
    try:
        request, done = submit(loop, prompt(loaded, "hello"), 2)
        assert done.finished.wait(60)
    finally:
        loop.stop()

    assert request.started_at is not None
    waited_s = request.started_at - request.submitted_at
    assert (waited_s >= 1.0) == bool(on_their_way), waited_s


def test_a_request_joining_running_rows_is_prefilled_in_their_decode_step(
    loaded: LoadedModel, batch_loop: BatchLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Beside a running stream, the new prompt goes through the running rows' decode step
    (LlamaForward.step_carrying), and both streams read as generate() makes them."""
    carried: list[int] = []
    original = LlamaForward.step_carrying

    def counted(self: LlamaForward, *args: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        carried.append(len(args[4]))  # the prompts it carries
        return original(self, *args)

    monkeypatch.setattr(LlamaForward, "step_carrying", counted)
    running_ids, joining_ids = prompt(loaded, "hello"), prompt(loaded, "what is a closure?")
    _, running = submit(batch_loop, running_ids, 60)
    deadline = time.monotonic() + 30
    while not running.token_ids and time.monotonic() < deadline:
        time.sleep(0.01)
    _, joining = submit(batch_loop, joining_ids, 20, 0.8, 7)

    assert joining.finished.wait(60)
    assert running.finished.wait(60)
    assert carried == [1]
    assert running.token_ids == generate_reference(loaded, running_ids, 60, 0.0, 0)
    assert joining.token_ids == generate_reference(loaded, joining_ids, 20, 0.8, 7)

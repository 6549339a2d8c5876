"""Incremental decoding and stop strings, with the real tiny tokenizer."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from service.engine.base import TextDelta
from service.engine.streamer import GenerationStopped, StopStringMatcher, TokenStreamer


def feed_all(matcher: StopStringMatcher, pieces: list[str]) -> tuple[str, bool]:
    shown = ""
    for piece in pieces:
        text, matched = matcher.feed(piece)
        shown += text
        if matched:
            return shown, True
    return shown + matcher.flush(), False


@pytest.mark.parametrize(
    ("pieces", "stop", "expected"),
    [
        (["hello wor", "ld"], ["world"], ("hello ", True)),
        (["a", "b", "c", "d"], ["bc"], ("a", True)),
        (["abc"], ["x"], ("abc", False)),
        (["ab", "ab", "c"], ["abc"], ("ab", True)),
        (["xyz"], [], ("xyz", False)),
        (["one END two"], ["two", "END"], ("one ", True)),
        (["en", "d of text"], ["end!"], ("end of text", False)),
    ],
)
def test_stop_string_matcher(pieces: list[str], stop: list[str], expected: tuple[str, bool]) -> None:
    assert feed_all(StopStringMatcher(stop), pieces) == expected


def test_matcher_holds_back_only_what_could_become_a_stop_string() -> None:
    matcher = StopStringMatcher(["STOP"])

    assert matcher.feed("abc ST") == ("abc ", False)
    assert matcher.feed("x") == ("STx", False)


def stream_ids(tokenizer: Any, token_ids: list[int], stop: tuple[str, ...] = ()) -> tuple[list[str], Any]:
    deltas: list[TextDelta] = []
    streamer = TokenStreamer(tokenizer.backend_tokenizer, stop, deltas.append)
    streamer.put(torch.tensor([[1, 2, 3]]))  # the prompt, which generate() puts first
    try:
        for token_id in token_ids:
            streamer.put(torch.tensor([token_id]))
        streamer.end()
    except GenerationStopped:
        pass
    counts = [delta.completion_tokens for delta in deltas]
    assert counts == sorted(counts), "token counts only grow"
    assert all(count <= streamer.completion_tokens for count in counts)
    return [delta.text for delta in deltas], streamer


def test_streamed_text_equals_batch_decode(tokenizer: Any) -> None:
    text = "def f(x):\n    return x * 2  # naïve café 東京 😀"
    token_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    token_ids.append(tokenizer.eos_token_id)

    emitted, streamer = stream_ids(tokenizer, token_ids)

    assert "".join(emitted) == tokenizer.decode(token_ids, skip_special_tokens=True) == text
    assert all(emitted), "no empty pieces"
    assert len(emitted) > len(token_ids) // 2, "text is not held back"
    assert streamer.completion_tokens == len(token_ids)


def test_stop_string_raises_to_end_generation(tokenizer: Any) -> None:
    token_ids = tokenizer("first line\nsecond line", add_special_tokens=False)["input_ids"]

    emitted, streamer = stream_ids(tokenizer, token_ids, stop=("\n",))

    assert "".join(emitted) == "first line"
    assert streamer.stop_string_matched
    assert streamer.completion_tokens < len(token_ids)


def test_cancel_raises_at_the_next_token(tokenizer: Any) -> None:
    streamer = TokenStreamer(tokenizer.backend_tokenizer, (), lambda _: None)
    streamer.put(torch.tensor([[1, 2]]))
    streamer.cancel()

    with pytest.raises(GenerationStopped):
        streamer.put(torch.tensor([5]))

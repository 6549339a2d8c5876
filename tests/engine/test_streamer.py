"""Incremental decoding and stop strings, with the real tiny tokenizer."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from service.engine.streamer import Detokenizer, GenerationStopped, StopStringMatcher, TokenIdStreamer


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


def detokenize(
    tokenizer: Any, token_ids: list[int], stop: tuple[str, ...] = ()
) -> tuple[list[str], Detokenizer]:
    """Feed the ids one at a time, as the engines do when the client keeps up."""
    detokenizer = Detokenizer(tokenizer.backend_tokenizer, stop)
    emitted: list[str] = []
    for token_id in token_ids:
        emitted.append(detokenizer.feed([token_id]))
        if detokenizer.stop_matched:
            break
    emitted.append(detokenizer.finish())
    return [text for text in emitted if text], detokenizer


def test_streamed_text_equals_batch_decode(tokenizer: Any) -> None:
    text = "def f(x):\n    return x * 2  # naïve café 東京 😀"
    token_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    token_ids.append(tokenizer.eos_token_id)

    emitted, detokenizer = detokenize(tokenizer, token_ids)

    assert "".join(emitted) == tokenizer.decode(token_ids, skip_special_tokens=True) == text
    assert len(emitted) > len(token_ids) // 2, "text is not held back"
    assert detokenizer.completion_tokens == len(token_ids)


def test_ids_fed_at_once_give_the_same_text(tokenizer: Any) -> None:
    token_ids = tokenizer("naïve café 東京 😀 and more", add_special_tokens=False)["input_ids"]
    detokenizer = Detokenizer(tokenizer.backend_tokenizer, ())

    assert detokenizer.feed(token_ids) + detokenizer.finish() == "naïve café 東京 😀 and more"


def test_a_stop_string_ends_the_text_and_the_count(tokenizer: Any) -> None:
    token_ids = tokenizer("first line\nsecond line", add_special_tokens=False)["input_ids"]
    newline_at = next(i for i, t in enumerate(token_ids) if "\n" in tokenizer.decode(token_ids[: i + 1]))

    emitted, detokenizer = detokenize(tokenizer, token_ids, stop=("\n",))

    assert "".join(emitted) == "first line"
    assert detokenizer.stop_matched
    assert detokenizer.completion_tokens == newline_at + 1
    assert detokenizer.feed(token_ids) == "", "nothing after the stop string"
    assert detokenizer.completion_tokens == newline_at + 1


def test_streamer_hands_over_ids_but_not_the_prompt() -> None:
    received: list[list[int]] = []
    streamer = TokenIdStreamer(received.append)
    streamer.put(torch.tensor([[1, 2, 3]]))  # the prompt, which generate() puts first
    streamer.put(torch.tensor([5]))
    streamer.put(torch.tensor([[6]]))

    assert received == [[5], [6]]


def test_cancel_raises_at_the_next_token() -> None:
    streamer = TokenIdStreamer(lambda _: None)
    streamer.put(torch.tensor([[1, 2]]))
    streamer.cancel()

    with pytest.raises(GenerationStopped):
        streamer.put(torch.tensor([5]))

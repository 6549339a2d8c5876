"""Per-request streaming out of ``model.generate()``.

:class:`TokenStreamer` replaces transformers' ``TextIteratorStreamer``, which
re-decodes the whole text at each step (O(n) per token), holds text back until
it sees whitespace and yields empty strings. Here each token is decoded once by
the tokenizers library's ``DecodeStream`` (O(1) per token), stop strings are
matched as text arrives, and every piece of text is handed to ``emit`` at once.

Stopping works by raising :class:`GenerationStopped` from ``put()``, which
``generate()`` calls once per decode step: a cancelled request stops within one
step, with no extra forward pass.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from tokenizers import Tokenizer
from tokenizers.decoders import DecodeStream
from transformers.generation.streamers import BaseStreamer

from service.engine.base import TextDelta


class GenerationStopped(Exception):
    """Raised from ``put()`` to end ``generate()`` early (cancelled, or a stop string matched)."""


class StopStringMatcher:
    """Finds the first stop string in text that arrives in pieces.

    ``feed`` returns the text that is safe to show: everything before a match, or
    everything except the longest tail that could still grow into a stop string.
    """

    def __init__(self, stop: Sequence[str]) -> None:
        self._stop = tuple(s for s in stop if s)
        self._pending = ""

    def feed(self, text: str) -> tuple[str, bool]:
        """Return ``(text_to_emit, matched)``; after a match the rest is discarded."""
        if not self._stop:
            return text, False
        buffer = self._pending + text
        positions = [i for i in (buffer.find(s) for s in self._stop) if i >= 0]
        if positions:
            self._pending = ""
            return buffer[: min(positions)], True
        held = max((_longest_prefix_at_end(buffer, s) for s in self._stop), default=0)
        self._pending = buffer[len(buffer) - held :]
        return buffer[: len(buffer) - held], False

    def flush(self) -> str:
        """Text held back at the end of generation: it never became a stop string."""
        pending, self._pending = self._pending, ""
        return pending


def _longest_prefix_at_end(text: str, stop: str) -> int:
    for length in range(min(len(stop) - 1, len(text)), 0, -1):
        if text.endswith(stop[:length]):
            return length
    return 0


class TokenStreamer(BaseStreamer):
    """Receives token ids from ``generate()`` on the inference thread; emits text.

    ``emit`` is called on the inference thread with each new piece of text, as a
    :class:`TextDelta` that counts the tokens generated so far; it must not
    block (the engine passes a ``loop.call_soon_threadsafe`` wrapper).
    """

    def __init__(self, tokenizer: Tokenizer, stop: Sequence[str], emit: Callable[[TextDelta], Any]) -> None:
        self._tokenizer = tokenizer
        self._decoder = DecodeStream(skip_special_tokens=True)
        self._stop_matcher = StopStringMatcher(stop)
        self._emit = emit
        self._cancelled = threading.Event()
        self._prompt_seen = False
        self.completion_tokens = 0
        self.stop_string_matched = False

    def cancel(self) -> None:
        """Ask the generation to stop; safe from any thread."""
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def put(self, value: Any) -> None:
        if self._cancelled.is_set():
            raise GenerationStopped
        # generate() first puts the prompt itself; only what follows is new.
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        for token_id in value.reshape(-1).tolist():
            self.completion_tokens += 1
            piece = self._decoder.step(self._tokenizer, token_id)
            if not piece:
                continue  # a partial UTF-8 sequence or a special token
            text, matched = self._stop_matcher.feed(piece)
            if text:
                self._emit(TextDelta(text, self.completion_tokens))
            if matched:
                self.stop_string_matched = True
                raise GenerationStopped

    def end(self) -> None:
        tail = self._stop_matcher.flush()
        if tail:
            self._emit(TextDelta(tail, self.completion_tokens))

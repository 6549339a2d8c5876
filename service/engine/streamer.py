"""Per-request streaming: token ids out of the model, text out to the client.

:class:`Detokenizer` turns token ids into text on the event loop, for both
engines: each token is decoded once by the tokenizers library's ``DecodeStream``
(O(1) per token; transformers' ``TextIteratorStreamer`` re-decodes the whole
text at each step and holds text back until it sees whitespace), and stop
strings are matched as text arrives.

:class:`TokenIdStreamer` is what ``model.generate()`` sees on the inference
thread. It only hands token ids over: decoding there would sit on the critical
path of every decode step, while on the event loop it overlaps with the next
forward pass. Stopping works by raising :class:`GenerationStopped` from
``put()``, which ``generate()`` calls once per decode step: a cancelled request
stops within one step.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from tokenizers import Tokenizer
from tokenizers.decoders import DecodeStream
from transformers.generation.streamers import BaseStreamer

from service.engine.logprobs import SampledLogprobs


class GenerationStopped(Exception):
    """Raised from ``put()`` to end ``generate()`` early (the request was cancelled)."""


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


class Detokenizer:
    """Token ids in, text out, with stop strings; one per request, used on one thread.

    The text is what ``tokenizer.decode`` gives for the same ids, also when generation
    ends in the middle of a multi-byte character: ``DecodeStream`` holds such bytes back,
    waiting for the rest, so :meth:`finish` decodes what it still holds.
    """

    def __init__(self, tokenizer: Tokenizer, stop: Sequence[str]) -> None:
        self.tokenizer = tokenizer
        self._decoder = DecodeStream(skip_special_tokens=True)
        self._stop_matcher = StopStringMatcher(stop)
        self._token_ids: list[int] = []
        self._decoded: list[str] = []  # the pieces DecodeStream gave, before stop strings
        self._held_back = 0  # trailing ids that DecodeStream has not turned into text yet
        self.completion_tokens = 0
        self.stop_matched = False

    def feed(self, token_ids: Sequence[int]) -> str:
        """The text these tokens add; after a stop string matches, the rest is ignored."""
        text = ""
        for token_id in token_ids:
            if self.stop_matched:
                break
            self.completion_tokens += 1
            self._token_ids.append(token_id)
            piece = self._decoder.step(self.tokenizer, token_id)
            if not piece:  # a partial UTF-8 sequence or a special token
                self._held_back += 1
                continue
            self._held_back = 0
            self._decoded.append(piece)
            shown, self.stop_matched = self._stop_matcher.feed(piece)
            text += shown
        return text

    def finish(self) -> str:
        """The text still held back at the end of generation: bytes of an unfinished character
        (as ``decode`` shows them) and text that could have become a stop string."""
        if self.stop_matched:
            return ""
        text = ""
        if self._held_back:
            decoded = "".join(self._decoded)
            full = self.tokenizer.decode(self._token_ids, skip_special_tokens=True)
            if full.startswith(decoded):
                text, self.stop_matched = self._stop_matcher.feed(full[len(decoded) :])
            self._held_back = 0
        return text if self.stop_matched else text + self._stop_matcher.flush()


class TokenIdStreamer(BaseStreamer):
    """Receives token ids from ``generate()`` on the inference thread and passes them to ``emit``.

    ``emit`` must not block (the engine passes a Mailbox sink: service.engine.outputs).
    With ``logprobs_of`` (the sampler's, service.engine.sampling) each token's log-probabilities
    go with it.
    """

    def __init__(
        self, emit: Callable[..., Any], logprobs_of: Callable[[int], SampledLogprobs] | None = None
    ) -> None:
        self._emit = emit
        self._logprobs_of = logprobs_of
        self._cancelled = threading.Event()
        self._prompt_seen = False

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
        token_ids = value.reshape(-1).tolist()
        if self._logprobs_of is None:
            self._emit(token_ids)
        else:
            self._emit(token_ids, logprobs=[self._logprobs_of(token_id) for token_id in token_ids])

    def end(self) -> None:
        """Nothing to do: the engine reports the end once generate() has returned."""

"""Grammar-constrained decoding: structured output and tool calls, with llguidance.

Why llguidance and not xgrammar (docs/structured-output.md has the numbers): it has no
dependencies (xgrammar pulls triton, 286 MB, onto every CPU install), compiles a schema
in 2-3 ms, and bounds the work of every mask by its own fuel limits, so a pathological
schema fails alone instead of stalling the batch.

A request's :class:`ConstrainedRow` masks the tokens its grammar does not allow before
sampling (so temperature, top-p and logprobs see only the allowed ones), and keeps the
answer complete within ``max_new_tokens``: once the tokens left are few, every sampled token
is checked to leave a way to finish in time, and if it does not, the row writes the shortest
completion it found instead (``finish_reason`` is then ``length``, but the JSON parses).
"""

from __future__ import annotations

import asyncio
import json
import string
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import llguidance
import llguidance.hf
import torch

from service.engine.base import InvalidPromptError, OutputGrammar, SamplingParams

if TYPE_CHECKING:
    from llguidance._lib import JsonCompileOptions  # only in the type stubs

_CACHED_GRAMMARS = 64
# Compact JSON: no whitespace between tokens, which small models otherwise repeat forever.
# A schema's own "x-guidance" options still override it.
_JSON_DEFAULTS: JsonCompileOptions = {"whitespace_flexible": False}
# The characters the completion search tries, in order: closing what is open first, then
# every other printable ASCII character (a name the schema fixes may need any of them).
_FIRST = '"}],:0'
_CLOSING_CHARACTERS = _FIRST + "".join(
    sorted(
        (c for c in string.printable if c not in _FIRST and c not in "\t\n\r\x0b\x0c"),
        key=lambda c: not c.isalnum(),
    )
)
_SEARCH_STEPS = 50_000  # candidates tried per search (0.4 us each): bounded work, on a schema of any shape
# Within this many tokens of the end, every sampled token is checked to leave a completion.
_CHECK_MARGIN = 64


class JsonGrammar(OutputGrammar):
    """A compiled grammar; :meth:`matcher` starts a request on it."""

    def __init__(
        self, compiler: GrammarCompiler, matcher: llguidance.LLMatcher, shortest: list[int] | None
    ) -> None:
        self.compiler = compiler
        self._initial = matcher
        # A schema whose answers the bounded search cannot complete (a string "pattern", which JSON
        # Schema matches anywhere in the string) is still enforced, but max_tokens may cut it.
        self.completes_when_cut = shortest is not None
        self.shortest_tokens = len(shortest) if shortest is not None else 0

    def matcher(self) -> llguidance.LLMatcher:
        return self._initial.deep_copy()


class GrammarCompiler:
    """Compiles JSON schemas for one tokenizer and keeps the last few compiled."""

    def __init__(self, tokenizer: Any, eos_token_ids: Sequence[int], vocab_size: int) -> None:
        self._hf_tokenizer = tokenizer
        self._eos_token_ids = list(eos_token_ids)
        self.eos_token_id = self._eos_token_ids[0]  # what ends an answer the grammar has completed
        self.vocab_size = vocab_size  # the model's logits; the tokenizer may have fewer
        self._tokenizer: llguidance.LLTokenizer | None = None
        self._closing_tokens: list[int] = []
        self._cache: OrderedDict[tuple[str, bool], JsonGrammar] = OrderedDict()
        self._lock = threading.Lock()

    async def compile(self, schema: str, text_allowed: bool = False) -> JsonGrammar:
        """JSON text matching ``schema``; with ``text_allowed``, either that or free text (a tool
        call the model may make, ``tool_choice: "auto"``). Raises :class:`InvalidPromptError`
        naming what the library rejected."""
        key = (schema, text_allowed)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        # llguidance drops the GIL while it builds the grammar: the event loop keeps serving.
        grammar = await asyncio.to_thread(self._compile, schema, text_allowed)
        with self._lock:
            self._cache[key] = grammar
            while len(self._cache) > _CACHED_GRAMMARS:
                self._cache.popitem(last=False)
        return grammar

    def _compile(self, schema: str, text_allowed: bool) -> JsonGrammar:
        tokenizer = self._llg_tokenizer()
        try:
            if text_allowed:
                grammar = llguidance.LLMatcher.grammar_from_lark(self._call_or_text(json.loads(schema)))
            else:
                grammar = llguidance.LLMatcher.grammar_from_json_schema(schema, defaults=_JSON_DEFAULTS)
        except ValueError as exc:
            raise InvalidPromptError(
                f"the JSON schema is not valid JSON: {exc}", param="response_format"
            ) from exc
        matcher = llguidance.LLMatcher(tokenizer, grammar, log_level=0)
        if matcher.is_error():
            raise InvalidPromptError(
                f"the JSON schema cannot be used: {matcher.get_error()}", param="response_format"
            )
        return JsonGrammar(self, matcher, self.completion(matcher))

    def _call_or_text(self, call: dict[str, Any]) -> str:
        """A Lark grammar (llguidance's dialect): a call matching ``call`` as JSON, or free text
        that does not start like one (nor with whitespace, so that a call is told apart by the
        answer's first character). A model whose tokenizer has Mistral's ``[TOOL_CALLS]``
        may also write its own format: that token, then a JSON array of calls."""
        compact = {"x-guidance": _JSON_DEFAULTS}
        calls = [f"%json {json.dumps({**call, **compact})}"]
        marker = self._hf_tokenizer.convert_tokens_to_ids("[TOOL_CALLS]")
        if isinstance(marker, int) and marker != self._hf_tokenizer.unk_token_id:
            array = {"type": "array", "items": call, "minItems": 1, **compact}
            calls.append(f'<[{marker}]> " "? %json {json.dumps(array)}')
        return "\n".join(["start: call | TEXT", f"call: {' | '.join(calls)}", r"TEXT: /[^\[{\s][\s\S]*/"])

    def _llg_tokenizer(self) -> llguidance.LLTokenizer:
        """Built on first use (0.4 s for SmolLM2's vocabulary), not at start-up."""
        with self._lock:
            if self._tokenizer is None:
                tokenizer = llguidance.hf.from_tokenizer(
                    self._hf_tokenizer, n_vocab=self.vocab_size, eos_token=self._eos_token_ids
                )
                singles = (tokenizer.tokenize_str(character) for character in _CLOSING_CHARACTERS)
                self._closing_tokens = [ids[0] for ids in singles if len(ids) == 1]
                self._tokenizer = tokenizer
            return self._tokenizer

    def completion(self, matcher: llguidance.LLMatcher) -> list[int] | None:
        """A short sequence of tokens that completes the grammar from the matcher's state (it is
        left as it was), or None if a bounded search finds none. A depth-first search one
        character at a time, closing what is open first; then the tokenizer's own (shorter)
        tokens for that text, where the grammar takes them."""
        tokenizer = self._llg_tokenizer()
        candidates = self._closing_tokens
        search = matcher.deep_copy()
        path: list[int] = []
        tried: list[int] = [0]  # per depth: how many candidates have been tried there
        for _ in range(_SEARCH_STEPS):
            if search.is_accepting():
                break
            depth = len(path)
            if tried[depth] == len(candidates):  # a dead end: back up
                if not path:
                    return None
                path.pop()
                tried.pop()
                search.rollback(1)
                continue
            token = candidates[tried[depth]]
            tried[depth] += 1
            if search.try_consume_tokens([token]) == 1:
                path.append(token)
                tried.append(0)
        else:
            return None
        shorter = tokenizer.tokenize_str(tokenizer.decode_str(path))
        check = matcher.deep_copy()
        if (
            len(shorter) < len(path)
            and check.try_consume_tokens(shorter) == len(shorter)
            and check.is_accepting()
        ):
            return shorter
        return path


class ConstrainedRow:
    """One request's place in its grammar: the tokens allowed next, and an answer that is
    complete by ``max_new_tokens``. Used on the inference thread only."""

    def __init__(self, grammar: JsonGrammar, max_new_tokens: int) -> None:
        self._compiler = grammar.compiler
        self._matcher = grammar.matcher()
        self._tokens_left = max_new_tokens
        self._closing: list[int] = []  # forced: the completion that still fits
        self._last_completion = grammar.shortest_tokens
        self._completes_when_cut = grammar.completes_when_cut
        words = (grammar.compiler.vocab_size + 31) // 32
        self._bitmask = torch.zeros(words, dtype=torch.int32)
        self._shifts = torch.arange(32, dtype=torch.int32)

    def allowed(self) -> torch.Tensor:
        """A bool mask over the model's vocabulary: what the grammar allows next."""
        vocab_size = self._compiler.vocab_size
        if self._closing:
            mask = torch.zeros(vocab_size, dtype=torch.bool)
            mask[self._closing[0]] = True
            return mask
        self._matcher.unsafe_compute_mask_ptr(self._bitmask.data_ptr(), self._bitmask.numel() * 4)
        bits = (self._bitmask.unsqueeze(-1) >> self._shifts) & 1
        return bits.view(-1)[:vocab_size].bool()

    def take(self, token: int) -> int:
        """Advance by the sampled ``token``; returns the token to emit: ``token``, or the next of a
        completion when ``token`` would leave none within the tokens left."""
        self._tokens_left -= 1
        if self._closing:
            forced = self._closing.pop(0)
            self._matcher.consume_token(forced)
            return forced
        self._matcher.consume_token(token)
        if (
            not self._completes_when_cut
            or self._matcher.is_stopped()
            or self._tokens_left > self._last_completion + _CHECK_MARGIN
        ):
            return token
        completion = self._compiler.completion(self._matcher)
        if completion is not None and len(completion) <= self._tokens_left:
            self._last_completion = len(completion)
            return token
        # Too late after this token: take back, and write the completion from before it instead.
        self._matcher.rollback(1)
        before = self._compiler.completion(self._matcher)
        if before is None:  # none found even before it: the answer is cut where it is
            self._matcher.consume_token(token)
            return token
        if not before:  # complete before it: end here
            before = [self._compiler.eos_token_id]
        self._closing = before[1:]
        self._matcher.consume_token(before[0])
        return before[0]


def constrained_row(params: SamplingParams) -> ConstrainedRow | None:
    """The request's row in its grammar, if it has one."""
    if params.grammar is None:
        return None
    assert isinstance(params.grammar, JsonGrammar)  # an engine only gets grammars it compiled
    return ConstrainedRow(params.grammar, params.max_new_tokens)

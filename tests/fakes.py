"""A scripted engine for tests where the model does not matter: validation, errors, routing.

It implements the Engine interface without torch: a prompt is its messages' words (one
token each), and a generation yields ``words`` of the script one per step. The real
models are for what depends on the model (tests/engine, the real-model route tests).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

from service.engine.base import (
    DEFAULT_TEMPLATE,
    Engine,
    GenerationEvent,
    GenerationFinished,
    InvalidPromptError,
    Message,
    OutputGrammar,
    Prompt,
    SamplingParams,
    TemplateOptions,
    TextDelta,
)

SCRIPT = ["the", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog"]


class ScriptedEngine(Engine):
    """Answers every request with words of :data:`SCRIPT`, one per ``step_s``."""

    def __init__(self, model_name: str = "scripted", context_length: int = 2048, step_s: float = 0.0) -> None:
        super().__init__()
        self.model_name = model_name
        self.max_concurrency = 4
        self._context_length = context_length
        self._step_s = step_s

    @property
    def context_length(self) -> int:
        return self._context_length

    async def _load(self) -> dict[str, str]:
        return {"device": "none", "engine": "scripted"}

    async def _warm_up(self) -> None:
        pass

    async def render_prompt(
        self,
        messages: Sequence[Message],
        template: TemplateOptions = DEFAULT_TEMPLATE,
        tools: Sequence[dict[str, Any]] = (),
    ) -> Prompt:
        template.resolve(messages[-1].role)
        return Prompt(token_ids=[hash(word) % 1000 for m in messages for word in m.content.split()] or [0])

    async def tokenize(self, text: str) -> Prompt:
        if not text:
            raise InvalidPromptError("the prompt is empty", param="prompt")
        return Prompt(token_ids=[hash(word) % 1000 for word in text.split()] or [0])

    async def prompt_tokens_at_least(self, messages: Sequence[Message]) -> int:
        return 0

    async def compile_json_schema(self, schema: str, text_allowed: bool = False) -> OutputGrammar:
        raise InvalidPromptError("the scripted engine writes no JSON", param="response_format")

    def generate(self, prompt: Prompt, params: SamplingParams) -> AsyncIterator[GenerationEvent]:
        return self._stream(prompt, params)

    async def _stream(self, prompt: Prompt, params: SamplingParams) -> AsyncIterator[GenerationEvent]:
        for step in range(params.max_new_tokens):
            await asyncio.sleep(self._step_s)
            yield TextDelta(" " + SCRIPT[step % len(SCRIPT)], step + 1)
        yield GenerationFinished("length", len(prompt.token_ids), params.max_new_tokens, 0.0)

    async def close(self) -> None:
        pass

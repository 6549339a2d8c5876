"""The bodies of POST /v1/completions, OpenAI's legacy text completion."""

from __future__ import annotations

import time
from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from service.openai_logprobs import MAX_TOP_LOGPROBS, CompletionLogprobs
from service.openai_schemas import OpenAISampling
from service.schemas import Flag, Usage


class CompletionRequest(OpenAISampling):
    """POST /v1/completions: a prompt continued as it is, no chat template."""

    prompt: str | list[str] = Field(description="The text to continue (a list of exactly one).")
    echo: Flag = Field(False, description="Put the prompt before the completion in the text.")
    logprobs: int | None = Field(
        None,
        strict=True,
        ge=0,
        le=MAX_TOP_LOGPROBS,
        description="Each token's log-probability and the n most likely tokens at its step (0-20).",
    )
    suffix: str | None = Field(None, description="Not supported: must be absent.")
    best_of: int | None = Field(None, description="Only 1.")

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and len(value) != 1:
            raise ValueError(f"a list of exactly one prompt (got {len(value)}): one completion per request")
        return value

    @model_validator(mode="after")
    def _no_prompt_logprobs(self) -> CompletionRequest:
        if self.echo and self.logprobs is not None:
            raise ValueError("echo with logprobs (the prompt's log-probabilities) is not supported")
        return self

    @field_validator("suffix")
    @classmethod
    def _no_suffix(cls, value: str | None) -> str | None:
        if value:
            raise ValueError("suffix (insertion) is not supported")
        return value

    @field_validator("best_of")
    @classmethod
    def _one_best(cls, value: int | None) -> int | None:
        if value not in (None, 1):
            raise ValueError("only best_of 1 is supported")
        return value

    @property
    def text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]


class CompletionChoice(BaseModel):
    index: int = 0
    text: str
    logprobs: CompletionLogprobs | None = None
    finish_reason: Literal["stop", "length"] | None = None


class Completion(BaseModel):
    """The answer of /v1/completions, and (object and text deltas alike) each chunk of its stream."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None

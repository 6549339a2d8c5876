"""The ``logprobs`` of OpenAI's answers: per token on /v1/chat/completions, in the legacy
parallel lists on /v1/completions. Built from the engines' TokenLogprob (service.engine.base)."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, Field

from service.engine.base import TokenLogprob

# OpenAI's limit for top_logprobs (vLLM's default max_logprobs is 20 too).
MAX_TOP_LOGPROBS = 20
TopLogprobs = Field(
    None, strict=True, ge=0, le=MAX_TOP_LOGPROBS, description="The most likely tokens at each step (0-20)."
)


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None


class ChatTokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChatLogprobs(BaseModel):
    """``choices[].logprobs`` of a chat completion or chunk."""

    content: list[ChatTokenLogprob] | None
    refusal: None = None


class CompletionLogprobs(BaseModel):
    """``choices[].logprobs`` of a text completion: parallel lists, one entry per token."""

    tokens: list[str]
    token_logprobs: list[float]
    # The sampled token and the most likely ones at its step, by text (OpenAI: up to logprobs + 1).
    top_logprobs: list[dict[str, float]]
    text_offset: list[int]


def chat_logprobs(items: Sequence[TokenLogprob]) -> ChatLogprobs:
    return ChatLogprobs(
        content=[
            ChatTokenLogprob(
                token=item.token,
                logprob=item.logprob,
                bytes=item.utf8,
                top_logprobs=[
                    TopLogprob(token=top.token, logprob=top.logprob, bytes=top.utf8) for top in item.top
                ],
            )
            for item in items
        ]
    )


def completion_logprobs(items: Sequence[TokenLogprob], text_offset: int) -> CompletionLogprobs:
    """The legacy lists; ``text_offset``: where the first token's text starts in the choice's text."""
    offsets = []
    for item in items:
        offsets.append(text_offset)
        text_offset += len(item.token)
    return CompletionLogprobs(
        tokens=[item.token for item in items],
        token_logprobs=[item.logprob for item in items],
        top_logprobs=[
            {**{top.token: top.logprob for top in item.top}, item.token: item.logprob} for item in items
        ],
        text_offset=offsets,
    )

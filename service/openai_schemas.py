"""The OpenAI-compatible bodies: POST /v1/chat/completions, GET /v1/models, and the fields both
completion endpoints share (POST /v1/completions: service.openai_completion_schemas)."""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from service.openai_logprobs import ChatLogprobs, TopLogprobs
from service.openai_tools import HistoryToolCall, ToolCall, ToolCallDelta, ToolsRequest
from service.schemas import (
    AddGenerationPrompt,
    ContinueFinalMessage,
    Flag,
    MinP,
    MinTokens,
    Seed,
    StopStrings,
    Temperature,
    TopK,
    TopP,
    Usage,
    check_stop,
)

OpenAIRole = Literal["system", "developer", "user", "assistant", "tool"]
# Parts a text-only model cannot take: named so that the 400 says what is unsupported.
_NON_TEXT_PARTS = {"image_url": "images", "input_audio": "audio", "file": "files", "video_url": "video"}


class TextContentPart(BaseModel):
    type: Literal["text"]
    text: str = Field(strict=True)


class OpenAIMessage(BaseModel):
    role: OpenAIRole = Field(
        description="'developer' is OpenAI's newer name for 'system' and is taken as it; 'tool' carries "
        "a tool's result back (rendered by the chat template)."
    )
    content: str | list[TextContentPart] | None = Field(
        union_mode="left_to_right",
        description="Text, or a list of {'type': 'text'} parts; null only on an assistant message "
        "with tool_calls.",
    )
    name: str | None = None
    # An agent's history: the assistant's calls and the tool results that answer them.
    tool_calls: list[HistoryToolCall] | None = None
    tool_call_id: str | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _text_parts_only(cls, value: Any) -> Any:
        if isinstance(value, list):
            for part in value:
                kind = part.get("type") if isinstance(part, dict) else None
                if kind in _NON_TEXT_PARTS:
                    raise ValueError(
                        f"{_NON_TEXT_PARTS[kind]} are not supported: this server serves a text-only model "
                        "(send {'type': 'text'} parts)"
                    )
        return value

    @model_validator(mode="after")
    def _content_unless_tool_calls(self) -> OpenAIMessage:
        if self.content is None and not (self.role == "assistant" and self.tool_calls):
            raise ValueError("content may be null only on an assistant message with tool_calls")
        if self.tool_calls and self.role != "assistant":
            raise ValueError(f"tool_calls belong on an assistant message, not a {self.role} message")
        return self

    @property
    def chat_role(self) -> str:
        return "system" if self.role == "developer" else self.role

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class StreamOptions(BaseModel):
    include_usage: Flag = False
    continuous_usage_stats: Flag = Field(
        False, description="With include_usage: every chunk carries the usage so far (vLLM's extension)."
    )


class OpenAISampling(BaseModel):
    """The fields both OpenAI endpoints share: length, sampling, streaming and vLLM's extensions."""

    # Unknown OpenAI fields (user, metadata, ...) are accepted and ignored, as OpenAI-compatible servers do.
    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    max_tokens: int | None = Field(None, strict=True, ge=1)
    temperature: Temperature = 1.0
    top_p: TopP = 1.0
    seed: Seed = None
    stop: StopStrings = None
    n: int = Field(1, strict=True, ge=1, le=1, description="Only one choice is supported.")
    stream: Flag = False
    stream_options: StreamOptions | None = None
    ignore_eos: Flag = Field(False, description="Extension: generate exactly max_tokens tokens.")
    # vLLM's sampling extensions; the ones this server does not implement are refused by name below.
    top_k: TopK = 0
    min_p: MinP = 0.0
    min_tokens: MinTokens = 0
    frequency_penalty: float | None = Field(None, description="Not supported: must be absent or 0.")
    presence_penalty: float | None = Field(None, description="Not supported: must be absent or 0.")
    repetition_penalty: float | None = Field(None, description="Not supported: must be absent or 1.")
    logit_bias: dict[str, Any] | None = Field(None, description="Not supported: must be absent or empty.")
    stop_token_ids: list[int] | None = Field(None, description="Not supported: must be absent or empty.")

    @field_validator("stop")
    @classmethod
    def _few_stop_strings(cls, value: str | list[str] | None) -> str | list[str] | None:
        return check_stop(value)

    @field_validator("frequency_penalty", "presence_penalty")
    @classmethod
    def _no_penalty(cls, value: float | None) -> float | None:
        if value:  # OpenAI's default is 0
            raise ValueError("penalties are not supported by this server yet: send 0 or leave it out")
        return value

    @field_validator("repetition_penalty")
    @classmethod
    def _no_repetition_penalty(cls, value: float | None) -> float | None:
        if value is not None and value != 1:
            raise ValueError("repetition_penalty is not supported by this server yet: send 1 or leave it out")
        return value

    @field_validator("logit_bias", "stop_token_ids")
    @classmethod
    def _none_given(cls, value: Any) -> Any:
        if value:
            raise ValueError("not supported by this server yet: leave it out or send it empty")
        return value


class ChatCompletionRequest(OpenAISampling, ToolsRequest):
    messages: list[OpenAIMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, strict=True, ge=1)
    add_generation_prompt: AddGenerationPrompt = None
    continue_final_message: ContinueFinalMessage = None
    # OpenAI's legacy function calling: declared so that it is a 400 naming the field (send tools).
    functions: list[dict[str, Any]] | None = Field(None, description="Legacy: send tools instead.")
    function_call: str | dict[str, Any] | None = Field(None, description="Legacy: send tool_choice instead.")
    logprobs: bool | None = Field(
        None, strict=True, description="Each token's log-probability, in choices[].logprobs.content."
    )
    top_logprobs: int | None = TopLogprobs

    @field_validator("functions")
    @classmethod
    def _no_functions(cls, value: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        if value:
            raise ValueError("the legacy functions are not supported: send them as tools")
        return value

    @field_validator("function_call")
    @classmethod
    def _no_function_call(cls, value: str | dict[str, Any] | None) -> str | dict[str, Any] | None:
        if value not in (None, "none", "auto"):
            raise ValueError("the legacy function_call is not supported: send tool_choice")
        return value

    @model_validator(mode="after")
    def _top_logprobs_with_logprobs(self) -> ChatCompletionRequest:
        if self.top_logprobs and not self.logprobs:  # as OpenAI and vLLM answer it
            raise ValueError("top_logprobs needs logprobs: true")
        if self.answer_schema() is not None and (self.ignore_eos or self.min_tokens):
            # A constrained answer ends when its grammar is complete.
            raise ValueError("ignore_eos and min_tokens cannot be combined with a JSON answer or a tool call")
        return self

    @property
    def logprobs_count(self) -> int | None:
        """SamplingParams.logprobs: None for none, else how many of the most likely tokens."""
        return (self.top_logprobs or 0) if self.logprobs else None


FinishReason = Literal["stop", "length", "tool_calls"]


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    tool_calls: list[ToolCall] | None = None


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: FinishReason
    logprobs: ChatLogprobs | None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[Choice]
    usage: Usage


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[ToolCallDelta] | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: FinishReason | None = None
    logprobs: ChatLogprobs | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "llm-serving"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]

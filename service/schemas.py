"""The native endpoint's bodies, the one error body, and the field types both endpoints share
(service/openai_schemas.py: the OpenAI-compatible bodies)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Role = Literal["system", "user", "assistant"]
# Numbers must be JSON numbers (strict: "1" or true is not 1), integers where integers are meant.
Temperature = Annotated[
    float, Field(strict=True, ge=0.0, le=2.0, allow_inf_nan=False, description="0 is greedy decoding.")
]
TopP = Annotated[float, Field(strict=True, gt=0.0, le=1.0, allow_inf_nan=False)]
Seed = Annotated[int | None, Field(strict=True, ge=0, lt=2**63, description="Same seed, same text.")]
Flag = Annotated[bool, Field(strict=True)]
# Bounded to int32: the engines put these in int64 tensors, and any k past the vocabulary is "off".
_INT32_MAX = 2**31 - 1
TopK = Annotated[
    int,
    Field(
        strict=True, ge=-1, le=_INT32_MAX, description="Sample from the k most likely tokens (0 or -1: off)."
    ),
]
MinP = Annotated[
    float,
    Field(
        strict=True,
        ge=0.0,
        le=1.0,
        allow_inf_nan=False,
        description="Drop tokens less likely than this fraction of the most likely one (0: off).",
    ),
]
MinTokens = Annotated[
    int,
    Field(
        strict=True,
        ge=0,
        le=_INT32_MAX,
        description="End-of-sequence cannot end the answer before this many tokens.",
    ),
]
MAX_STOP_STRINGS = 8
AddGenerationPrompt = Annotated[
    bool | None,
    Field(
        strict=True,
        description="Open the assistant's turn after the messages (default: unless the final "
        "message is continued).",
    ),
]
ContinueFinalMessage = Annotated[
    bool | None,
    Field(
        strict=True,
        description="Continue the final (assistant) message instead of starting a new one, e.g. a "
        "prefilled answer (default: when the conversation ends with the assistant's message).",
    ),
]
StopStrings = Annotated[
    str | list[Annotated[str, Field(min_length=1)]] | None,
    Field(description=f"Stop before any of these strings (at most {MAX_STOP_STRINGS})."),
]


# ----- errors -----
class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """OpenAI-style error body, used by every endpoint for every error."""

    error: ErrorDetail


# ----- native endpoint: POST /v1/chat -----
class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role
    content: str = Field(strict=True)


class ChatRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"messages": [{"role": "user", "content": "Hello!"}], "max_new_tokens": 64}]
        },
    )

    messages: list[ChatMessage] = Field(
        description="The conversation; a plain string is taken as one user message."
    )
    max_new_tokens: int | None = Field(
        None,
        strict=True,
        ge=1,
        description="Tokens to generate at most (default: the server's setting, or what the "
        "context leaves after the prompt if that is less).",
    )
    temperature: Temperature = 1.0
    top_p: TopP = 1.0
    seed: Seed = None
    stop: StopStrings = None
    ignore_eos: Flag = Field(False, description="Generate exactly max_new_tokens tokens.")
    top_k: TopK = 0
    min_p: MinP = 0.0
    min_new_tokens: MinTokens = 0
    add_generation_prompt: AddGenerationPrompt = None
    continue_final_message: ContinueFinalMessage = None

    @field_validator("messages", mode="before")
    @classmethod
    def _string_is_one_user_message(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [{"role": "user", "content": value}]
        return value

    @field_validator("messages")
    @classmethod
    def _not_empty(cls, value: list[ChatMessage]) -> list[ChatMessage]:
        if not value:
            raise ValueError("must contain at least one message")
        return value

    @field_validator("stop")
    @classmethod
    def _few_stop_strings(cls, value: str | list[str] | None) -> str | list[str] | None:
        return check_stop(value)


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int | None = None


class Timings(BaseModel):
    queue_s: float = Field(description="Waiting for the inference thread.")
    ttft_s: float = Field(description="Request received to first text sent.")
    total_s: float = Field(description="Request received to last text sent.")


class InstanceInfo(BaseModel):
    id: str = Field(description="Identifies the serving process.")
    started_at: float = Field(description="When the process started, Unix seconds.")


class ChatDone(BaseModel):
    """Data of the final ``event: done`` of /v1/chat."""

    finish_reason: Literal["stop", "length"]
    usage: Usage
    timings: Timings
    instance: InstanceInfo


def stop_tuple(stop: str | list[str] | None) -> tuple[str, ...]:
    if stop is None:
        return ()
    return (stop,) if isinstance(stop, str) else tuple(stop)


def check_stop(value: Any) -> Any:
    if isinstance(value, list) and len(value) > MAX_STOP_STRINGS:
        raise ValueError(f"at most {MAX_STOP_STRINGS} stop strings")
    if value == "":
        raise ValueError("a stop string must not be empty")
    return value

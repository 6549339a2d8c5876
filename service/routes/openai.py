"""OpenAI-compatible endpoints: POST /v1/chat/completions and GET /v1/models.

The official ``openai`` SDK works against these unmodified, streaming (with
``stream_options={"include_usage": True}``) or not.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Request

from service.chat_service import ChatService
from service.engine.base import Message, SamplingParams, TemplateOptions
from service.errors import APIError, ErrorCode
from service.generation import ChatGeneration
from service.openai_logprobs import ChatLogprobs, chat_logprobs
from service.openai_schemas import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Choice,
    ChunkChoice,
    Delta,
    FinishReason,
    ModelCard,
    ModelList,
    OpenAISampling,
    StreamOptions,
)
from service.openai_tools import template_tool_calls
from service.routes.cancellation import with_cancellation
from service.routes.deps import get_chat_service
from service.routes.sse import SSE_RESPONSE_DOC, GenerationStream, json_data
from service.schemas import ErrorResponse, Usage, stop_tuple
from service.tool_calls import AnswerWriter, answer_writer

router = APIRouter(tags=["openai"])


@router.get("/v1/models", summary="List the served model")
async def list_models(service: Annotated[ChatService, Depends(get_chat_service)]) -> ModelList:
    created = int(service.instance.started_at)
    return ModelList(data=[ModelCard(id=service.engine.model_name, created=created)])


@router.get("/v1/models/{model_id:path}", summary="The served model, by name")
async def retrieve_model(
    model_id: str, service: Annotated[ChatService, Depends(get_chat_service)]
) -> ModelCard:
    return ModelCard(id=served_model(service, model_id), created=int(service.instance.started_at))


def served_model(service: ChatService, requested: str | None) -> str:
    """The served model's name; 404 ``model_not_found`` (OpenAI's and vLLM's answer) for another."""
    model = service.engine.model_name
    if requested is not None and requested != model:
        raise ErrorCode.MODEL_NOT_FOUND.error(
            f"the model {requested!r} does not exist: this server serves {model!r}", param="model"
        )
    return model


def openai_sampling_params(
    service: ChatService,
    body: OpenAISampling,
    max_new_tokens: int | None,
    length_field: str,
    logprobs: int | None = None,
) -> SamplingParams:
    """The sampling parameters of either OpenAI endpoint's body. Raises :class:`APIError`."""
    return service.sampling_params(
        max_new_tokens=max_new_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        seed=body.seed,
        stop=stop_tuple(body.stop),
        ignore_eos=body.ignore_eos,
        param_name=length_field,
        top_k=body.top_k,
        min_p=body.min_p,
        min_new_tokens=body.min_tokens,
        min_param_name="min_tokens",
        logprobs=logprobs,
    )


@router.post(
    "/v1/chat/completions",
    summary="OpenAI-compatible chat completion, streaming or not",
    response_model=ChatCompletion,
    responses={**SSE_RESPONSE_DOC, "4XX": {"model": ErrorResponse}, "5XX": {"model": ErrorResponse}},
)
@with_cancellation
async def chat_completions(
    body: ChatCompletionRequest,
    service: Annotated[ChatService, Depends(get_chat_service)],
    request: Request,
) -> ChatCompletion | GenerationStream:
    model = served_model(service, body.model)
    messages = [
        Message(m.chat_role, m.text(), template_tool_calls(m.tool_calls), m.tool_call_id)
        for m in body.messages
    ]
    use_completion_tokens = body.max_completion_tokens is not None
    max_new_tokens = body.max_completion_tokens if use_completion_tokens else body.max_tokens
    length_field = "max_completion_tokens" if use_completion_tokens else "max_tokens"
    params = openai_sampling_params(service, body, max_new_tokens, length_field, body.logprobs_count)
    template = TemplateOptions(
        add_generation_prompt=body.add_generation_prompt,
        continue_final_message=body.continue_final_message,
    )
    generation = await service.start(
        messages,
        params,
        template,
        fit_to_context=max_new_tokens is None,
        param_name=length_field,
        tools=[tool.model_dump(exclude_none=True) for tool in body.tools or []],
        answer_schema=body.schema_text(),
        text_allowed=body.tool_mode() == "auto",
        schema_param="response_format" if body.tool_mode() == "none" else "tools",
    )
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    writer = answer_writer(body.tool_mode(), body.called_function())
    if body.stream:
        options = body.stream_options or StreamOptions()
        chunks = _chunks(
            generation,
            completion_id,
            model,
            logprobs=bool(body.logprobs),
            writer=writer,
            include_usage=options.include_usage,
            continuous_usage=options.include_usage and options.continuous_usage_stats,
        )
        return GenerationStream(chunks, generation, service.settings.sse_ping_interval)

    text, logprobs, done = await generation.whole_completion()
    message = AssistantMessage(content=text)
    if writer is not None:
        content, calls = writer.whole(text)
        message = AssistantMessage(content=content, tool_calls=calls)
    choice = Choice(
        message=message,
        finish_reason=_finish_reason(done.finish_reason, writer),
        logprobs=chat_logprobs(logprobs) if body.logprobs else None,
    )
    return ChatCompletion(id=completion_id, model=model, choices=[choice], usage=done.usage)


async def _chunks(
    generation: ChatGeneration,
    completion_id: str,
    model: str,
    *,
    logprobs: bool,
    writer: AnswerWriter | None,
    include_usage: bool,
    continuous_usage: bool,
) -> AsyncIterator[dict[str, str]]:
    created = int(time.time())

    def chunk(
        delta: Delta, finish_reason: str | None = None, logprobs: ChatLogprobs | None = None
    ) -> dict[str, str]:
        choice = ChunkChoice(delta=delta, finish_reason=finish_reason, logprobs=logprobs)  # type: ignore[arg-type]
        usage = None
        if continuous_usage:
            usage = Usage(
                prompt_tokens=generation.prompt_tokens,
                completion_tokens=generation.completion_tokens,
                total_tokens=generation.prompt_tokens + generation.completion_tokens,
            )
        body = ChatCompletionChunk(
            id=completion_id, created=created, model=model, choices=[choice], usage=usage
        )
        return {"data": body.model_dump_json(exclude_none=False)}

    # OpenAI sends the role first, in a chunk of its own with empty content.
    yield chunk(Delta(role="assistant", content=""))
    try:
        async for delta in generation.deltas():
            found = chat_logprobs(delta.logprobs) if logprobs else None
            if writer is None:
                yield chunk(Delta(content=delta.text), logprobs=found)
                continue
            content, calls = writer.feed(delta.text)
            if content or calls or found:
                yield chunk(Delta(content=content or None, tool_calls=calls or None), logprobs=found)
        if writer is not None:
            content, calls = writer.finish()  # what the writer held back: an array of calls
            if content or calls:
                yield chunk(Delta(content=content or None, tool_calls=calls or None))
    except APIError as exc:
        # As vLLM sends it: a plain data chunk with the error body, then [DONE]. The openai SDK raises
        # APIError for it (openai/_streaming.py: any chunk whose data has "error"), and parsers that
        # only read unnamed events (a browser's fetch reader) see it too.
        yield {"data": json_data(exc.body())}
        yield {"data": "[DONE]"}
        return
    done = generation.done
    assert done is not None
    yield chunk(Delta(), finish_reason=_finish_reason(done.finish_reason, writer))
    if include_usage:
        usage_chunk = ChatCompletionChunk(
            id=completion_id, created=created, model=model, choices=[], usage=done.usage
        )
        yield {"data": usage_chunk.model_dump_json()}
    yield {"data": "[DONE]"}


def _finish_reason(finish_reason: str, writer: AnswerWriter | None) -> FinishReason:
    """A tool call that ended as its grammar did ends with ``tool_calls``; cut short, with ``length``."""
    if writer is not None and writer.called and finish_reason == "stop":
        return "tool_calls"
    return finish_reason  # type: ignore[return-value]

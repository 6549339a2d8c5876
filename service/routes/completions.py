"""POST /v1/completions: OpenAI's legacy text completion, a prompt continued as it is.

llama-index's ``OpenAILike`` (its default), litellm's ``text_completion``, LangChain's
``OpenAI`` class and lm-evaluation-harness's ``local-completions`` call it. The prompt is
tokenized without the chat template; everything after that is the chat endpoints' path.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Request

from service.chat_service import ChatService
from service.errors import APIError
from service.generation import ChatGeneration
from service.openai_completion_schemas import Completion, CompletionChoice, CompletionRequest
from service.openai_logprobs import completion_logprobs
from service.openai_schemas import StreamOptions
from service.routes.cancellation import with_cancellation
from service.routes.deps import get_chat_service
from service.routes.openai import openai_sampling_params, served_model
from service.routes.sse import SSE_RESPONSE_DOC, GenerationStream, json_data
from service.schemas import ErrorResponse, Usage

router = APIRouter(tags=["openai"])


@router.post(
    "/v1/completions",
    summary="OpenAI-compatible text completion (no chat template), streaming or not",
    response_model=Completion,
    responses={**SSE_RESPONSE_DOC, "4XX": {"model": ErrorResponse}, "5XX": {"model": ErrorResponse}},
)
@with_cancellation
async def completions(
    body: CompletionRequest,
    service: Annotated[ChatService, Depends(get_chat_service)],
    request: Request,
) -> Completion | GenerationStream:
    model = served_model(service, body.model)
    params = openai_sampling_params(service, body, body.max_tokens, "max_tokens", body.logprobs)
    generation = await service.start_text(body.text, params, fit_to_context=body.max_tokens is None)
    completion_id = f"cmpl-{uuid.uuid4().hex}"
    echoed = body.text if body.echo else ""
    if body.stream:
        options = body.stream_options or StreamOptions()
        with_logprobs = body.logprobs is not None
        chunks = _chunks(
            generation,
            completion_id,
            model,
            echoed,
            logprobs=with_logprobs,
            include_usage=options.include_usage,
        )
        return GenerationStream(chunks, generation, service.settings.sse_ping_interval)
    text, logprobs, done = await generation.whole_completion()
    choice = CompletionChoice(
        text=echoed + text,
        finish_reason=done.finish_reason,
        logprobs=completion_logprobs(logprobs, len(echoed)) if body.logprobs is not None else None,
    )
    return Completion(id=completion_id, model=model, choices=[choice], usage=done.usage)


async def _chunks(
    generation: ChatGeneration,
    completion_id: str,
    model: str,
    echoed: str,
    *,
    logprobs: bool,
    include_usage: bool,
) -> AsyncIterator[dict[str, str]]:
    created = int(time.time())

    def chunk(choices: list[CompletionChoice], usage: Usage | None = None) -> dict[str, str]:
        body = Completion(id=completion_id, created=created, model=model, choices=choices, usage=usage)
        return {"data": body.model_dump_json()}

    if echoed:
        yield chunk([CompletionChoice(text=echoed)])
    try:
        text_offset = len(echoed)  # where the next token's text starts in the whole text
        async for delta in generation.deltas():
            found = completion_logprobs(delta.logprobs, text_offset) if logprobs else None
            text_offset += sum(len(item.token) for item in delta.logprobs)
            yield chunk([CompletionChoice(text=delta.text, logprobs=found)])
    except APIError as exc:  # as on /v1/chat/completions: the error body as data, then [DONE]
        yield {"data": json_data(exc.body())}
        yield {"data": "[DONE]"}
        return
    done = generation.done
    assert done is not None
    yield chunk([CompletionChoice(text="", finish_reason=done.finish_reason)])
    if include_usage:
        yield chunk([], usage=done.usage)
    yield {"data": "[DONE]"}

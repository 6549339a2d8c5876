"""POST /v1/chat: the native streaming endpoint.

Each piece of text is ``data: {"text": "..."}``; the stream ends with
``event: done`` (finish reason, usage, timings, instance) or ``event: error``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends

from service.chat_service import ChatService
from service.errors import APIError
from service.generation import ChatGeneration
from service.routes.deps import get_chat_service
from service.routes.sse import SSE_RESPONSE_DOC, GenerationStream, error_event, json_data
from service.schemas import ChatRequest, ErrorResponse

router = APIRouter(tags=["chat"])


@router.post(
    "/v1/chat",
    summary="Stream a chat completion as server-sent events",
    response_class=GenerationStream,
    status_code=200,
    responses={**SSE_RESPONSE_DOC, "4XX": {"model": ErrorResponse}, "5XX": {"model": ErrorResponse}},
)
async def chat(
    body: ChatRequest, service: Annotated[ChatService, Depends(get_chat_service)]
) -> GenerationStream:
    generation = await service.start_native(body)
    return GenerationStream(_events(generation), generation, service.settings.sse_ping_interval)


async def _events(generation: ChatGeneration) -> AsyncIterator[dict[str, str]]:
    try:
        async for text in generation.texts():
            yield {"data": json_data({"text": text})}
    except APIError as exc:
        yield error_event(exc)
        return
    assert generation.done is not None
    yield {"event": "done", "data": generation.done.model_dump_json()}

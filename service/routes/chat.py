"""POST /v1/chat: the native streaming endpoint.

Each piece of text is ``data: {"text": "..."}``; the stream ends with
``event: done`` (finish reason, usage, timings, instance) or ``event: error``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends

from service.chat_service import ChatGeneration, ChatService
from service.engine.base import Message
from service.errors import APIError
from service.routes.deps import get_chat_service
from service.routes.sse import SSE_RESPONSE_DOC, GenerationStream, error_event, json_data
from service.schemas import ChatRequest, ErrorResponse, stop_tuple

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
    messages = [Message(role=m.role, content=m.content) for m in body.messages]
    params = service.sampling_params(
        max_new_tokens=body.max_new_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        seed=body.seed,
        stop=stop_tuple(body.stop),
        ignore_eos=body.ignore_eos,
    )
    generation = await service.start(messages, params)
    return GenerationStream(_events(generation), generation)


async def _events(generation: ChatGeneration) -> AsyncIterator[dict[str, str]]:
    try:
        async for text in generation.texts():
            yield {"data": json_data({"text": text})}
    except APIError as exc:
        yield error_event(exc)
        return
    assert generation.done is not None
    yield {"event": "done", "data": generation.done.model_dump_json()}

"""Stop work for clients that left, as one decorator (vLLM's pattern).

Streaming responses need none of this: sse-starlette watches for the
disconnect and closes the stream, which stops the generation. A non-streaming
handler, though, would generate to the end for nobody; this decorator runs it
as a task and cancels it when the client disconnects.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from fastapi import Request, Response

P = ParamSpec("P")
T = TypeVar("T")

# nginx's code for "client closed request": nobody reads it, but logs show why.
CLIENT_CLOSED_REQUEST = 499


def with_cancellation(handler: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Awaitable[T | Response]]:
    """The handler must take the request as a keyword argument named ``request``."""

    @functools.wraps(handler)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T | Response:
        request = kwargs["request"]
        assert isinstance(request, Request)
        handler_task = asyncio.create_task(handler(*args, **kwargs))
        disconnect_task = asyncio.create_task(_wait_for_disconnect(request))
        done, pending = await asyncio.wait(
            {handler_task, disconnect_task}, return_when=asyncio.FIRST_COMPLETED
        )
        for task in pending:
            task.cancel()
        if handler_task in done:
            return handler_task.result()
        await asyncio.gather(handler_task, return_exceptions=True)  # let its cleanup finish
        return Response(status_code=CLIENT_CLOSED_REQUEST)

    return wrapper


async def _wait_for_disconnect(request: Request) -> Any:
    while (await request.receive())["type"] != "http.disconnect":
        pass

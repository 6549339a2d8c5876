"""Dependencies the routes receive from the app (built by ``create_app``)."""

from __future__ import annotations

from fastapi import Request

from service.chat_service import ChatService


async def get_chat_service(request: Request) -> ChatService:
    return request.app.state.chat_service

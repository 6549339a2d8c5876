"""API keys: ``Authorization: Bearer <key>`` on /v1/* when keys are configured.

A pure ASGI middleware rather than a route dependency, so that a stranger is
refused before anything else happens (FastAPI parses the JSON body before it
runs dependencies). Keys are compared in constant time and never logged.
"""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import APIError, ErrorCode

PROTECTED_PREFIX = "/v1/"


class ApiKeyAuth:
    def __init__(self, app: ASGIApp, api_keys: list[str]) -> None:
        self.app = app
        self._keys = [key.encode() for key in api_keys]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._keys and scope["type"] == "http" and scope["path"].startswith(PROTECTED_PREFIX):
            error = self._check(dict(scope["headers"]).get(b"authorization", b""))
            if error is not None:
                await error.to_response()(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _check(self, header: bytes) -> APIError | None:
        scheme, _, presented = header.partition(b" ")
        if scheme.lower() != b"bearer" or not presented.strip():
            return _unauthorized("missing API key: send 'Authorization: Bearer <key>'")
        presented = presented.strip()
        # Compare with every key, each in constant time: timing tells nothing about which matched.
        matches = [hmac.compare_digest(presented, key) for key in self._keys]
        return None if any(matches) else _unauthorized("invalid API key")


def _unauthorized(message: str) -> APIError:
    return ErrorCode.INVALID_API_KEY.error(message, headers={"WWW-Authenticate": "Bearer"})

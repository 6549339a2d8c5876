"""Errors as HTTP: one exception type, one body, central handlers.

Every error leaves the server through these handlers as
``{"error": {"message", "type", "param", "code"}}``. An error after a stream's
200 went out cannot change the status; the routes send it as an SSE event with
the same body (:func:`error_body`).
"""

from __future__ import annotations

import enum
import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.schemas import ErrorDetail, ErrorResponse

logger = logging.getLogger(__name__)

_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    503: "service_unavailable",
    504: "timeout",
}


class APIError(StarletteHTTPException):
    """An error a client sees: status code plus the fields of the error body.

    An HTTPException so that FastAPI lets it through where it wraps other
    exceptions (one raised while the body is read becomes a 400 otherwise).
    """

    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        error_type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status_code, message, headers)
        self.message = message
        self.param = param
        self.code = code
        self.error_type = error_type or _TYPE_BY_STATUS.get(status_code, "server_error")

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.error_type, self.param, self.code)

    def to_response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status_code, headers=self.headers)


class ErrorCode(enum.StrEnum):
    """Every ``code`` the service itself sends, with its status and when; :meth:`error` makes the
    exception. (Validation errors carry pydantic's own codes, such as ``literal_error``.)"""

    status: int
    when: str

    def __new__(cls, value: str, status: int, when: str) -> ErrorCode:
        member = str.__new__(cls, value)
        member._value_ = value
        member.status = status
        member.when = when
        return member

    JSON_INVALID = ("json_invalid", 400, "The body is not valid JSON.")
    UNSUPPORTED_CONTENT_TYPE = (
        "unsupported_content_type",
        400,
        "The body was sent with a content type other than JSON.",
    )
    INVALID_MESSAGES = ("invalid_messages", 400, "The chat template cannot render the messages.")
    MAX_NEW_TOKENS_TOO_LARGE = (
        "max_new_tokens_too_large",
        400,
        "More tokens asked for than `--max-new-tokens-limit`.",
    )
    MIN_TOKENS_ABOVE_MAX = (
        "min_tokens_above_max",
        400,
        "More tokens asked for at least than at most.",
    )
    CONTEXT_LENGTH_EXCEEDED = (
        "context_length_exceeded",
        400,
        "The prompt and the tokens asked for do not fit the model's context.",
    )
    INVALID_SCHEMA = (
        "invalid_schema",
        400,
        "The JSON schema (`response_format`, a tool's `parameters`) cannot constrain decoding.",
    )
    MAX_TOKENS_BELOW_SCHEMA = (
        "max_tokens_below_schema",
        400,
        "Fewer tokens asked for than the shortest answer the schema allows.",
    )
    INVALID_API_KEY = ("invalid_api_key", 401, "`--api-key` is set and the request has no or another key.")
    MODEL_NOT_FOUND = ("model_not_found", 404, "The request names a model other than the served one.")
    ROUTE_NOT_FOUND = ("route_not_found", 404, "No such route; the message lists the routes there are.")
    BODY_TOO_LARGE = ("body_too_large", 413, "The body is larger than `--max-body-bytes`.")
    HEADERS_TOO_LARGE = (
        "headers_too_large",
        431,
        "The request line and headers exceed 64 KiB; the connection is closed.",
    )
    OVERLOADED = ("overloaded", 429, "`--max-concurrency` generate and `--max-queue` wait already.")
    GENERATION_FAILED = ("generation_failed", 500, "The engine failed; it keeps serving other requests.")
    MODEL_NOT_READY = ("model_not_ready", 503, "The model is still loading (or failed to load).")
    SHUTTING_DOWN = ("shutting_down", 503, "The server is draining for shutdown, or stopping now.")
    QUEUE_TIMEOUT = ("queue_timeout", 503, "No generation slot within `--queue-timeout`.")
    REQUEST_TIMEOUT = ("request_timeout", 504, "The request ran past `--request-timeout`.")

    def error(
        self, message: str, *, param: str | None = None, headers: dict[str, str] | None = None
    ) -> APIError:
        return APIError(self.status, message, param=param, code=self.value, headers=headers)


def error_code_table() -> str:
    """The docs' table of error codes, made from :class:`ErrorCode` so the two cannot drift."""
    rows = [f"| `{code.value}` | {code.status} | {code.when} |" for code in ErrorCode]
    return "\n".join(["| Code | Status | When |", "| --- | --- | --- |", *rows])


def error_body(
    message: str, error_type: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return ErrorResponse(
        error=ErrorDetail(message=message, type=error_type, param=param, code=code)
    ).model_dump()


def _json_error(exc: APIError) -> JSONResponse:
    return exc.to_response()


async def _handle_api_error(_: Request, exc: APIError) -> JSONResponse:
    return _json_error(exc)


async def _handle_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    content_type = request.headers.get("content-type")
    if content_type is not None and not _is_json(content_type):
        # FastAPI reads such a body as bytes, and pydantic says "Input should be a valid dictionary".
        return _json_error(
            ErrorCode.UNSUPPORTED_CONTENT_TYPE.error(
                f"the body must be JSON, sent with 'Content-Type: application/json' (not {content_type!r})"
            )
        )
    return _json_error(validation_error_to_api_error(exc.errors()))


def _is_json(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or media_type.endswith("+json")


async def _handle_http_exception(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    if exc.status_code == 404 and exc.detail == HTTPStatus.NOT_FOUND.phrase:  # no route matched
        return _json_error(ErrorCode.ROUTE_NOT_FOUND.error(_no_route_message(request)))
    message = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    return _json_error(APIError(exc.status_code, message, headers=getattr(exc, "headers", None)))


def _no_route_message(request: Request) -> str:
    # The OpenAPI schema lists the app's own routes (FastAPI caches it after the first call).
    paths = request.app.openapi().get("paths", {})
    routes = sorted(f"{method.upper()} {path}" for path, methods in paths.items() for method in methods)
    return f"no route {request.method} {request.url.path}; this server has: {', '.join(routes)}"


async def _handle_unexpected(request: Request, exc: Exception) -> JSONResponse:
    request_id = request.scope.get("state", {}).get("request_id")
    logger.exception("unhandled error (request %s)", request_id, exc_info=exc)
    return _json_error(APIError(500, "internal server error", error_type="server_error"))


def validation_error_to_api_error(errors: Any) -> APIError:
    """Turn pydantic's error list into one 400 that names the field and what to fix."""
    errors = list(errors)
    if not errors:
        return APIError(400, "invalid request")
    first = errors[0]
    if first.get("type") == "json_invalid":
        detail = first.get("ctx", {}).get("error", "")
        return ErrorCode.JSON_INVALID.error(f"request body is not valid JSON: {detail}".rstrip(": "))
    location = [str(part) for part in first.get("loc", ()) if part != "body"]
    param = ".".join(location) or None
    message = first.get("msg", "invalid value")
    if param:
        message = f"{param}: {message}"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more error{'s' if len(errors) > 2 else ''})"
    return APIError(400, message, param=param, code=first.get("type"))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(APIError, _handle_api_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _handle_validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _handle_http_exception)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _handle_unexpected)

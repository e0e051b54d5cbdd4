"""The one JSON error envelope every refusal and failure is written in::

    {"error": {"type": ..., "message": ..., "request_id": ..., "fields": [...]}}

(``fields`` only for validation errors.) The front door renders errors with :func:`error_json`, the
HTTP protocol's prepared answers (the door's 503, the read deadline's 408) come from
:func:`raw_response`, the OpenAPI document describes it with :class:`ErrorEnvelope`, and
deploy/nginx.conf.template gets nginx's own error bodies from :func:`nginx_bodies`.
"""

from __future__ import annotations

import functools
from enum import StrEnum
from http import HTTPStatus
from typing import Any

import orjson
from pydantic import BaseModel, Field

from runtime.core.codes import ErrorType, RefusalReason
from runtime.core.errors import BallastError, Overloaded


class HttpErrorType(StrEnum):
    """``error.type`` of the errors the HTTP layer raises itself (the runtime's are
    :class:`runtime.ErrorType`)."""

    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    REQUEST_TIMEOUT = "request_timeout"
    SHUTTING_DOWN = "shutting_down"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    NOT_READY = "not_ready"
    """A document that needs the models (OpenAPI of a service whose inputs come from its model)
    before they are loaded."""


class HTTPError(BallastError):
    """An error of the HTTP layer (payload too large, wrong content type, wrong method, shutting
    down); its message names no internals, so a 5xx shows it too."""

    def __init__(
        self,
        status: int,
        type_: HttpErrorType | ErrorType,
        message: str,
        headers: tuple[tuple[bytes, bytes], ...] = (),
    ) -> None:
        self.status = status
        self.type = type_
        self.headers = headers
        """Response headers the error needs (``WWW-Authenticate``, ``Connection: close``)."""
        self.public_message = message
        super().__init__(message)


def envelope(body: dict[str, Any], request_id: str | None) -> dict[str, Any]:
    """``{"error": body + request_id}``."""
    return {"error": {**body, "request_id": request_id}}


def error_json(exc: BallastError, request_id: str | None) -> bytes:
    return orjson.dumps(envelope(exc.public_body(), request_id))


def internal_error_json(request_id: str | None) -> bytes:
    """The body of a 500 for an exception that is not a :class:`BallastError` (a bug)."""
    return orjson.dumps(envelope({"type": ErrorType.INTERNAL_ERROR, "message": "internal error"}, request_id))


def retry_after(exc: BallastError) -> int | None:
    """The ``Retry-After`` seconds an error's answer carries: every 503 has one."""
    if isinstance(exc, Overloaded):
        return exc.retry_after_header
    return 1 if exc.status == 503 else None


@functools.cache
def raw_response(exc: BallastError, keep_alive: bool = True) -> bytes:
    """A whole HTTP/1.1 answer of ``exc`` with no request id, for the HTTP protocol to write
    before any request cycle exists (errors are hashable by identity: cache only long-lived ones)."""
    body = error_json(exc, None)
    reason = HTTPStatus(exc.status).phrase.encode()
    seconds = retry_after(exc)
    headers = b"content-type: application/json\r\n"
    if seconds is not None:
        headers += b"retry-after: %d\r\n" % seconds
    if not keep_alive:
        headers += b"connection: close\r\n"
    return b"HTTP/1.1 %d %s\r\n%scontent-length: %d\r\n\r\n%s" % (exc.status, reason, headers, len(body), body)


def nginx_bodies(max_body_bytes: int) -> dict[str, str]:
    """The JSON bodies of nginx's own answers in deploy/nginx.conf.template, by placeholder."""

    def body(exc: BallastError) -> str:
        text = error_json(exc, None).decode()
        assert "'" not in text, "nginx's return directive quotes the body with '"
        return text

    too_large = HTTPError(413, HttpErrorType.PAYLOAD_TOO_LARGE, f"the body exceeds {max_body_bytes} bytes")
    unreachable = HTTPError(503, ErrorType.UNAVAILABLE, "the model server did not answer, retry later")
    return {
        "PROXY_BUSY_BODY": body(Overloaded(RefusalReason.PROXY_BUSY)),
        "TOO_LARGE_BODY": body(too_large),
        "UNREACHABLE_BODY": body(unreachable),
    }


# --- the envelope as a type, for the OpenAPI document ------------------------------------------


class FieldErrorBody(BaseModel):
    path: str = Field(examples=["[2].amount"], description="where in the request")
    rule: str = Field(examples=["range"], description="which rule: type, shape, required, range, ... or a check's name")
    message: str
    value: Any = Field(default=None, description="the offending value, shortened")


class ErrorBody(BaseModel):
    type: str = Field(examples=["validation_error"])
    message: str
    request_id: str | None
    fields: list[FieldErrorBody] | None = Field(default=None, description="every violation, for validation errors")


class ErrorEnvelope(BaseModel):
    """Every error answer."""

    error: ErrorBody

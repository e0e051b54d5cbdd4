"""Reading requests and writing answers: headers Ballast reads (request id, deadline, media types),
bodies (JSON, or NumPy's ``.npy`` where a route offers it; never pickle), and the ASGI messages of an
answer."""

from __future__ import annotations

import io
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import numpy as np
import orjson

from runtime.core.errors import BadRequest, BallastError

from .envelope import HTTPError, HttpErrorType, error_json, retry_after
from .routes import NpyResponse, Route

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

JSON = b"application/json"
NPY = b"application/x-npy"
_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._-]{1,64}$")


def header(headers: Headers, name: bytes) -> bytes | None:
    return next((v for k, v in headers if k == name), None)


def request_id(headers: Headers) -> str | None:
    """The caller's ``X-Request-ID`` when it is well formed (never refused: replaced otherwise)."""
    value = header(headers, b"x-request-id")
    return value.decode() if value is not None and _REQUEST_ID.match(value) else None


def routing_key(headers: Headers) -> str | None:
    """The caller's ``X-Routing-Key`` when well formed (ignored otherwise: the request id decides)."""
    value = header(headers, b"x-routing-key")
    return value.decode() if value is not None and _REQUEST_ID.match(value) else None


def no_cache(headers: Headers) -> bool:
    """Whether ``Cache-Control`` asks for an answer not taken from (nor put in) a cache."""
    value = (header(headers, b"cache-control") or b"").lower()
    return b"no-cache" in value or b"no-store" in value


def timeout(headers: Headers) -> float | None:
    """The caller's ``X-Request-Timeout-Ms``, in seconds."""
    value = header(headers, b"x-request-timeout-ms")
    if value is None:
        return None
    try:
        ms = float(value)
    except ValueError:
        raise BadRequest("X-Request-Timeout-Ms must be a number of milliseconds") from None
    if not 0 < ms < float("inf"):
        raise BadRequest("X-Request-Timeout-Ms must be a positive number of milliseconds")
    return max(ms / 1000, 5e-324)  # positive even where ms / 1000 underflows (ms < 5e-321)


def wants_npy(route: Route, headers: Headers) -> bool:
    return route.npy and any(k == b"accept" and NPY in v for k, v in headers)


class BodyReader:
    """Reads and decodes a request body within ``max_body_bytes``."""

    def __init__(self, max_body_bytes: int) -> None:
        self.max_body_bytes = max_body_bytes

    def media_type(self, route: Route, headers: Headers) -> bytes:
        """The body's media type, if the route takes it (415 otherwise); a declared
        ``Content-Length`` over the limit is refused before reading (413)."""
        content_type = header(headers, b"content-type") or b""
        media_type = content_type.split(b";", 1)[0].strip().lower()  # case-insensitive, parameters dropped
        if not (media_type == JSON or (route.npy and media_type == NPY)):
            offered = "application/json or application/x-npy" if route.npy else "application/json"
            raise HTTPError(415, HttpErrorType.UNSUPPORTED_MEDIA_TYPE, f"send the body as {offered}")
        declared = header(headers, b"content-length") or b""
        if declared.isdigit() and (len(declared) > 18 or int(declared) > self.max_body_bytes):
            raise self._too_large()
        return media_type

    async def raw(self, headers: Headers, receive: Receive) -> bytes:
        """The body's bytes as they are, within ``max_body_bytes`` (413 for a declared
        ``Content-Length`` over it before reading, or for more bytes while reading)."""
        declared = header(headers, b"content-length") or b""
        if declared.isdigit() and (len(declared) > 18 or int(declared) > self.max_body_bytes):
            raise self._too_large()
        return await self._read(receive)

    async def read(self, media_type: bytes, receive: Receive) -> Any:
        body = await self._read(receive)
        if media_type == NPY:
            try:  # never pickle: allow_pickle=False refuses object arrays
                return np.load(io.BytesIO(body), allow_pickle=False)
            except (ValueError, OSError, EOFError) as exc:
                raise BadRequest(f"the body is not a .npy array: {exc}") from None
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise BadRequest(f"the body is not valid JSON: {exc}") from None

    async def _read(self, receive: Receive) -> bytes:
        chunks = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise BadRequest("the client disconnected")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise self._too_large()
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)

    def _too_large(self) -> HTTPError:
        return HTTPError(413, HttpErrorType.PAYLOAD_TOO_LARGE, f"the body exceeds {self.max_body_bytes} bytes")


# --- answers -------------------------------------------------------------------------------------


async def respond(
    send: Send,
    status: int,
    body: bytes,
    request_id: str | None,
    headers: Headers | None = None,
    content_type: bytes = JSON,
) -> None:
    all_headers = [(b"content-type", content_type), (b"content-length", b"%d" % len(body)), *(headers or [])]
    if request_id:
        all_headers.append((b"x-request-id", request_id.encode()))
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": body})


async def respond_ok(send: Send, result: dict[str, Any] | NpyResponse, request_id: str) -> None:
    if isinstance(result, NpyResponse):
        buffer = io.BytesIO()
        np.save(buffer, result.array, allow_pickle=False)
        extra = [(k.encode(), v.encode()) for k, v in result.headers.items()]
        await respond(send, 200, buffer.getvalue(), request_id, extra, content_type=NPY)
        return
    await respond(send, 200, orjson.dumps(result, option=orjson.OPT_SERIALIZE_NUMPY), request_id)


async def respond_error(send: Send, exc: BallastError, request_id: str | None, headers: Headers | None = None) -> None:
    """The JSON error answer of ``exc``: its status, its public body, Retry-After on every 503."""
    extra = list(headers or [])
    seconds = retry_after(exc)
    if seconds is not None:
        extra.append((b"retry-after", b"%d" % seconds))
    if isinstance(exc, HTTPError):
        extra.extend(exc.headers)
    await respond(send, exc.status, error_json(exc, request_id), request_id, extra)

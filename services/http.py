"""Ballast's HTTP layer inside a BentoML service: parse, call the pipeline, map errors.

Why not ``@bentoml.api``: on this machine a constant JSON endpoint costs 1.9 ms of server CPU per
request through BentoML's API path, 0.8-0.9 ms as a Starlette app mounted in a BentoML service,
and 0.12 ms as bare Starlette (``python -m benchmarks.serving_path``, README). The difference is
BentoML's per-request middleware (OpenTelemetry, HTTP metrics, access log, timeout) and IO
descriptors. So a Ballast service stays a BentoML service for everything BentoML is good at --
packaging (``bentoml build``), the process model and workers, the model store, ``/livez``,
``/readyz``, ``/metrics``, lifecycle hooks -- while its prediction routes are dispatched before
BentoML's middleware stack, by :class:`BallastService`, which BentoML supports as the
``service_class`` of ``@bentoml.service``. Ballast does for those routes what the middleware
would: request ids, deadlines, per-request metrics, error bodies.
"""

from __future__ import annotations

import io
import logging
import os
import re
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import bentoml
import numpy as np
import orjson

from runtime import BadRequest, BallastError, Overloaded, RuntimeMetrics, default_metrics

from . import admission as admission_module
from .admission import Admission
from .settings import ServiceSettings
from .shutdown import Drain

if TYPE_CHECKING:
    from .auth import Credentials  # auth builds on this module's errors

log = logging.getLogger("ballast.http")

T = TypeVar("T")
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Handler = Callable[[Any, Any, "RequestInfo"], Awaitable[dict[str, Any]]]

_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._-]{1,64}$")
JSON = b"application/json"
NPY = b"application/x-npy"


@dataclass(frozen=True, slots=True)
class RequestInfo:
    request_id: str
    """The caller's ``X-Request-ID`` when well formed, else a new random one."""
    timeout_s: float | None
    """The caller's ``X-Request-Timeout-Ms``, as seconds, when given."""
    wants_npy: bool = False
    """The caller accepts ``application/x-npy`` (on routes that offer binary tensors)."""


@dataclass(frozen=True, slots=True)
class NpyResponse:
    """A handler's answer as one binary tensor (NumPy's .npy format), provenance in headers."""

    array: np.ndarray
    headers: dict[str, str]


@dataclass(frozen=True)
class Route:
    """A Ballast JSON endpoint declared on a service class with :func:`route`."""

    method: str
    path: str
    attribute: str
    summary: str
    request_schema: dict[str, Any]
    response_schema: dict[str, Any]
    request_example: Any
    response_example: dict[str, Any]
    errors: tuple[int, ...] = (400, 413, 415, 422, 503)
    npy: bool = False
    """Also takes ``application/x-npy`` bodies (the handler then gets an ndarray) and may answer
    with :class:`NpyResponse` when the caller accepts it."""
    admin: bool = False
    """Changes the server's state: needs the admin bearer token (see :mod:`services.auth`) instead
    of the API key."""


def route(
    method: str,
    path: str,
    *,
    summary: str,
    request_schema: dict[str, Any],
    response_schema: dict[str, Any],
    request_example: Any,
    response_example: dict[str, Any],
    npy: bool = False,
    admin: bool = False,
    errors: tuple[int, ...] = Route.errors,
) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Mark a service method ``async def m(self, payload, info) -> dict`` as a JSON endpoint
    (``npy=True``: binary tensor bodies too, see :class:`Route`; ``errors``: the error statuses
    its OpenAPI document lists besides 500)."""

    def mark(func: Callable[..., T]) -> Callable[..., T]:
        func.__ballast_route__ = Route(  # type: ignore[attr-defined]
            method,
            path,
            func.__name__,
            summary,
            request_schema,
            response_schema,
            request_example,
            response_example,
            errors,
            npy=npy,
            admin=admin,
        )
        return func

    return mark


def routes_of(cls: type) -> list[Route]:
    return [r for name in dir(cls) if (r := getattr(getattr(cls, name), "__ballast_route__", None))]


class HTTPError(BallastError):
    """An HTTP-level error (payload too large, wrong content type, wrong method, shutting down);
    its message names no internals, so a 5xx shows it too."""

    def __init__(self, status: int, type_: str, message: str, headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        self.status = status
        self.type = type_
        self.headers = headers
        """Response headers the error needs (``WWW-Authenticate``, ``Connection: close``)."""
        self.public_message = message
        super().__init__(message)


def error_body(exc: BallastError, request_id: str | None) -> dict[str, Any]:
    body = exc.public_body()
    body["request_id"] = request_id
    return {"error": body}


class FastPath:
    """The ASGI app a Ballast service hands to uvicorn: its own routes directly, everything else
    (lifespan, health, metrics, docs) to BentoML's app."""

    def __init__(
        self,
        routes: list[Route],
        bentoml_app: ASGIApp,
        *,
        max_body_bytes: int,
        instance: Callable[[], Any],
        extra: dict[str, Callable[[], dict[str, Any]]],
        credentials: Credentials | None = None,
        drain: Drain | None = None,
        admission: Admission | None = None,
        metrics: Callable[[], RuntimeMetrics] | None = None,
    ) -> None:
        self.routes = {r.path: r for r in routes}
        self.bentoml_app = bentoml_app
        self.max_body_bytes = max_body_bytes
        self.instance = instance
        self.extra = extra
        """Read-only JSON documents served at a path (the OpenAPI document)."""
        from .auth import Credentials

        self.credentials = credentials or Credentials()
        """Who may call which route; by default prediction routes are open and admin routes off."""
        self.drain = drain or Drain(0.0)
        self.metrics = metrics
        """Where refusals at the door are counted (``None``: not counted); called at the first one, as
        metric families must be built inside the worker (see runtime/metrics.py)."""
        self.admission = admission or Admission(0.0)
        """Sheds prediction requests that waited too long inside the server (services/admission.py);
        its ``retry_after_s`` is what those refusals advertise."""
        self.admission.guard(path for path, r in self.routes.items() if not r.admin)
        self.admission.on_refused = self._count_refused
        admission_module.install(self.admission)  # the protocol refuses at the door through it
        self._busy = Overloaded("server_busy", self.admission.retry_after_s)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if self.drain.draining and path not in _WHILE_DRAINING:
                await self._refuse(send, path, _SHUTTING_DOWN)
                return
            found = self.routes.get(path)
            if found is not None:
                if not found.admin and self.admission.refuses(scope):
                    await self._refuse(send, path, self._busy)
                    return
                self.drain.enter()
                try:
                    await self._serve(found, scope, receive, send)
                finally:
                    self.drain.leave()
                return
            document = self.extra.get(path)
            if document is not None and scope["method"] == "GET":
                await _respond(send, 200, orjson.dumps(document()), None)
                return
            if path == "/metrics" and self.metrics is not None:
                self.metrics().buffer.flush()  # buffered per-request series (runtime/metrics.py)
        elif scope["type"] == "lifespan":
            self.drain.install()
        await self.bentoml_app(scope, receive, send)

    async def _refuse(self, send: Send, path: str, exc: HTTPError | Overloaded) -> None:
        """Answer before any pipeline sees the request, and count it there, so that none is silent."""
        self._count_refused(path, exc.reason if isinstance(exc, Overloaded) else exc.type)
        await _error(send, exc, None)

    def _count_refused(self, path: str, reason: str) -> None:
        if self.metrics is not None:
            metrics = self.metrics()
            route = path if path in self.routes else "other"  # bounded label values
            metrics.series(metrics.refused, route, reason).inc()

    async def _serve(self, found: Route, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = _request_id(scope["headers"]) or os.urandom(8).hex()
        try:
            headers = scope["headers"]
            if scope["method"] != found.method:
                raise HTTPError(405, "method_not_allowed", f"use {found.method} for {found.path}")
            self.credentials.check(found, headers)  # before any other header or the body is read
            wants_npy = found.npy and any(k == b"accept" and NPY in v for k, v in headers)
            info = RequestInfo(request_id, _timeout(headers), wants_npy)
            payload = await self._body(found, headers, receive)
            service = self.instance()
            result = await getattr(service, found.attribute)(payload, info)
            if isinstance(result, NpyResponse):
                buffer = io.BytesIO()
                np.save(buffer, result.array, allow_pickle=False)
                extra = [(k.encode(), v.encode()) for k, v in result.headers.items()]
                await _respond(send, 200, buffer.getvalue(), request_id, extra, content_type=NPY)
                return
            await _respond(send, 200, orjson.dumps(result, option=orjson.OPT_SERIALIZE_NUMPY), request_id)
        except BallastError as exc:
            allow = [(b"allow", found.method.encode())] if exc.status == 405 else []
            await _error(send, exc, request_id, allow)
        except Exception:
            log.exception("unhandled error on %s (request %s)", found.path, request_id)
            body = {"error": {"type": "internal_error", "message": "internal error", "request_id": request_id}}
            await _respond(send, 500, orjson.dumps(body), request_id)

    async def _body(self, found: Route, headers: list[tuple[bytes, bytes]], receive: Receive) -> Any:
        content_type = next((v for k, v in headers if k == b"content-type"), b"")
        media_type = content_type.split(b";", 1)[0].strip().lower()  # case-insensitive, parameters dropped
        is_npy = found.npy and media_type == NPY
        if not (is_npy or media_type == JSON):
            offered = "application/json or application/x-npy" if found.npy else "application/json"
            raise HTTPError(415, "unsupported_media_type", f"send the body as {offered}")
        declared = next((v for k, v in headers if k == b"content-length"), b"")
        if declared.isdigit() and (len(declared) > 18 or int(declared) > self.max_body_bytes):  # before reading
            raise HTTPError(413, "payload_too_large", f"the body exceeds {self.max_body_bytes} bytes")
        body = await self._read(receive)
        if is_npy:
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
                raise HTTPError(413, "payload_too_large", f"the body exceeds {self.max_body_bytes} bytes")
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)


_WHILE_DRAINING = frozenset({"/livez", "/metrics"})
_SHUTTING_DOWN = HTTPError(
    503, "shutting_down", "the server is shutting down; retry", headers=((b"connection", b"close"),)
)


async def _error(
    send: Send, exc: BallastError, request_id: str | None, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """The JSON error answer of ``exc``: its status, its public body, Retry-After on every 503."""
    extra = list(headers or [])
    if isinstance(exc, Overloaded):
        extra.append((b"retry-after", b"%d" % exc.retry_after_header))
    elif exc.status == 503:
        extra.append((b"retry-after", b"1"))
    if isinstance(exc, HTTPError):
        extra.extend(exc.headers)
    await _respond(send, exc.status, orjson.dumps(error_body(exc, request_id)), request_id, extra)


def _request_id(headers: list[tuple[bytes, bytes]]) -> str | None:
    for key, value in headers:
        if key == b"x-request-id" and _REQUEST_ID.match(value):
            return value.decode()
    return None


def _timeout(headers: list[tuple[bytes, bytes]]) -> float | None:
    for key, value in headers:
        if key == b"x-request-timeout-ms":
            try:
                ms = float(value)
            except ValueError:
                raise BadRequest("X-Request-Timeout-Ms must be a number of milliseconds") from None
            if not 0 < ms < float("inf"):
                raise BadRequest("X-Request-Timeout-Ms must be a positive number of milliseconds")
            return max(ms / 1000, 5e-324)  # positive even where ms / 1000 underflows (ms < 5e-321)
    return None


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    request_id: str | None,
    headers: list[tuple[bytes, bytes]] | None = None,
    content_type: bytes = JSON,
) -> None:
    all_headers = [(b"content-type", content_type), (b"content-length", b"%d" % len(body)), *(headers or [])]
    if request_id:
        all_headers.append((b"x-request-id", request_id.encode()))
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": body})


class BallastService(bentoml.Service[T]):  # type: ignore[misc]  # bentoml ships no type stubs
    """A BentoML service whose ``@route`` methods are served by :class:`FastPath`.

    Use as ``@bentoml.service(service_class=BallastService, ...)``. The service class may set
    ``max_body_bytes``. The routes' OpenAPI document is served at ``/openapi.json``."""

    def to_asgi(self, is_main: bool = True) -> Any:
        bentoml_app = super().to_asgi(is_main)
        from .auth import Credentials
        from .openapi import document

        settings = ServiceSettings()
        credentials = Credentials.from_settings(settings)
        routes = routes_of(self.inner)
        spec = document(
            f"Ballast {self.name}", self.inner.__doc__ or "", routes, api_key=credentials.api_key is not None
        )
        return FastPath(
            routes,
            bentoml_app,
            max_body_bytes=getattr(self.inner, "max_body_bytes", settings.max_body_bytes),
            instance=bentoml.get_current_service,
            extra={"/openapi.json": lambda: spec},
            credentials=credentials,
            drain=Drain(settings.drain_s),
            admission=Admission(settings.shed_wait_ms / 1000, settings.retry_after_s, settings.max_inflight),
            metrics=default_metrics if settings.metrics_enabled else None,
        )

"""The front door: the ASGI app a Ballast worker hands to uvicorn.

Ballast's routes are served here, before BentoML's middleware (OpenTelemetry, HTTP metrics, access
log, timeout: about 650 us of CPU per request, docs/design/serving-path.md); everything else --
lifespan, ``/livez``, ``/readyz``, ``/metrics``, BentoML's UI -- goes on to BentoML's app. A request to
one of Ballast's routes passes these steps, in this order::

    drain        while draining after SIGTERM: 503 shutting_down (every path but /livez, /metrics)
    admission    waited too long inside the server already: 503 server_busy (prediction routes)
    method       405 with Allow
    credentials  API key or admin token: 401 / 403, before the body is read
    request id   the caller's X-Request-ID when well formed; X-Request-Timeout-Ms: 400 when bad
    body         media type 415, size 413 (declared or read), JSON / .npy 400
    handler      the route's own work; any BallastError is its status and the one error envelope,
                 anything else a 500 with only the request id

The steps are objects built once at start-up (:class:`FrontDoor`'s constructor); a request costs
their checks and nothing else. The HTTP protocol (:mod:`.protocol`) refuses earlier still, before a
request cycle exists, and reads its settings from this object (``admission``, ``read_timeout_s``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import orjson

from runtime.core.codes import RefusalReason
from runtime.core.errors import BallastError, Overloaded
from runtime.core.record import new_request_id

from .admission import Admission
from .auth import Credentials
from .codecs import (
    BodyReader,
    Receive,
    Scope,
    Send,
    no_cache,
    request_id,
    respond,
    respond_error,
    respond_ok,
    routing_key,
    timeout,
    wants_npy,
)
from .drain import Drain
from .envelope import HTTPError, HttpErrorType, internal_error_json
from .routes import RequestInfo, Route

log = logging.getLogger("ballast.http")

ASGIApp = Callable[[Scope, Receive, Send], Any]


class Mounted(Protocol):
    """An app that serves every path under its ``prefix`` (a protocol of its own, like the Open
    Inference Protocol's ``/v2``): it reads its bodies, checks its credentials and answers its errors."""

    prefix: str
    prediction_suffix: str
    """A path under ``prefix`` that ends so runs a model (``/infer``): refused like a prediction
    route when the server is behind, at the door too."""
    prediction_label: str
    """The ``route`` label its prediction paths are counted under (``/v2/models/{model}/infer``:
    the paths themselves, with any model and version in them, would make label values without end)."""

    def is_prediction(self, path: str) -> bool:
        """Whether ``path`` runs a model (refused like a prediction route when the server is behind)."""
        ...

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None: ...


Document = Callable[[], dict[str, Any]]
"""A read-only JSON document served at a path (OpenAPI, BentoML's schema); built on first use."""

WHILE_DRAINING = frozenset({"/livez", "/metrics"})
SHUTTING_DOWN = HTTPError(
    503, HttpErrorType.SHUTTING_DOWN, "the server is shutting down; retry", headers=((b"connection", b"close"),)
)


class FrontDoor:
    def __init__(
        self,
        routes: Sequence[Route],
        app: ASGIApp,
        *,
        max_body_bytes: int,
        read_timeout_s: float,
        credentials: Credentials,
        drain: Drain,
        admission: Admission,
        documents: Mapping[str, Document] | None = None,
        count_refusal: Callable[[str, str], None] | None = None,
        before_metrics: Callable[[], None] | None = None,
        mounted: Mounted | None = None,
    ) -> None:
        """``app`` serves every path that is not one of ``routes`` or ``documents``.
        ``count_refusal(route, reason)`` counts answers refused before any handler ran;
        ``before_metrics`` runs before each scrape of ``/metrics`` (buffered series); ``mounted``
        serves every path under its prefix, drained and admitted like the routes."""
        self.routes = {r.path: r for r in routes}
        if len(self.routes) != len(routes):
            raise ValueError(f"two routes share a path: {sorted(r.path for r in routes)}")
        self.app = app
        self.read_timeout_s = read_timeout_s
        self.credentials = credentials
        self.drain = drain
        self.admission = admission
        self.admission.guard(
            (path for path, r in self.routes.items() if not r.admin),
            under=None
            if mounted is None
            else (mounted.prefix + "/", mounted.prediction_suffix, mounted.prediction_label),
        )
        self.body = BodyReader(max_body_bytes)
        self.documents = dict(documents or {})
        self._count_refusal = count_refusal
        self._before_metrics = before_metrics
        self._busy = Overloaded(RefusalReason.SERVER_BUSY, admission.retry_after_s)
        self.mounted = mounted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if self.drain.draining and path not in WHILE_DRAINING:
                await self._refuse(send, path, SHUTTING_DOWN)
                return
            route = self.routes.get(path)
            if route is not None:
                if not route.admin and self.admission.refuses(scope):
                    await self._refuse(send, path, self._busy)
                    return
                self.drain.enter()
                try:
                    await self._serve(route, scope, receive, send)
                finally:
                    self.drain.leave()
                return
            mounted = self.mounted
            if mounted is not None and (path == mounted.prefix or path.startswith(mounted.prefix + "/")):
                if mounted.is_prediction(path) and self.admission.refuses(scope):
                    await self._refuse(send, path, self._busy)
                    return
                self.drain.enter()
                try:
                    await mounted(scope, receive, send)
                finally:
                    self.drain.leave()
                return
            document = self.documents.get(path)
            if document is not None and scope["method"] == "GET":
                await self._document(send, document)
                return
            if path == "/metrics" and self._before_metrics is not None:
                self._before_metrics()
        elif scope["type"] == "lifespan":
            self.drain.install()
        await self.app(scope, receive, send)

    def count_refusal(self, path: str, reason: str) -> None:
        if self._count_refusal is not None:  # bounded label values
            mounted = self.mounted
            if path not in self.routes:
                path = (
                    mounted.prediction_label
                    if mounted is not None and path.startswith(mounted.prefix + "/") and mounted.is_prediction(path)
                    else "other"
                )
            self._count_refusal(path, reason)

    async def _refuse(self, send: Send, path: str, exc: HTTPError | Overloaded) -> None:
        """Answer before any handler sees the request, and count it, so that none is silent."""
        self.count_refusal(path, exc.reason if isinstance(exc, Overloaded) else exc.type)
        await respond_error(send, exc, None)

    async def _serve(self, route: Route, scope: Scope, receive: Receive, send: Send) -> None:
        headers = scope["headers"]
        rid = request_id(headers) or new_request_id()
        try:
            if scope["method"] != route.method:
                raise HTTPError(405, HttpErrorType.METHOD_NOT_ALLOWED, f"use {route.method} for {route.path}")
            principal = self.credentials.check(route, headers)  # before any other header or the body is read
            who = principal.name if principal is not None else None
            info = RequestInfo(
                rid, timeout(headers), wants_npy(route, headers), routing_key(headers), who, no_cache(headers)
            )
            payload = (
                None if route.method == "GET" else await self.body.read(self.body.media_type(route, headers), receive)
            )
            result = await route.handler(payload, info)
            await respond_ok(send, result, rid)
        except BallastError as exc:
            allow = [(b"allow", route.method.encode())] if exc.status == 405 else []
            await respond_error(send, exc, rid, allow)
        except Exception:
            log.exception("unhandled error on %s (request %s)", route.path, rid)
            await respond(send, 500, internal_error_json(rid), rid)

    async def _document(self, send: Send, document: Document) -> None:
        try:
            body = orjson.dumps(document())
        except BallastError as exc:  # e.g. not ready yet
            await respond_error(send, exc, None)
            return
        await respond(send, 200, body, None)

"""A read deadline for every request, at the HTTP protocol level.

uvicorn times out idle keep-alive connections, but not a client that sends part of its headers, or
part of its body, and then stalls: each such connection is held for as long as the client likes,
and enough of them use up the server's file descriptors and memory. The ASGI app cannot help, as it
sees a request only once its headers are complete.

:class:`GuardedHttpToolsProtocol` is uvicorn's httptools protocol with one addition: from the moment
a connection opens, and from the first byte of each further request on it, the request (headers and
body) must arrive within ``read_timeout_s`` (``BALLAST_READ_TIMEOUT_S``). If it does not, the client
gets 408 with a JSON body, when no response has started yet, and the connection is closed. It also
stamps each request with the time its headers were read, for load shedding (:mod:`.admission`),
counts the worker's requests from headers read to answer complete (``Admission.inflight``), and when
the admission says so (the worker full, or the shedding window open) refuses a prediction request as
soon as its headers are read: a prepared 503 with Retry-After is written, the body is read and
dropped, and no request cycle or task is made (the cheapest refusal uvicorn allows; keep-alive as
the client asked).

Its settings come from the app it serves: the front door's ``admission`` and ``read_timeout_s``
(found through the middleware uvicorn wraps around the app), so one worker's protocol and front door
always agree. :func:`install` makes it uvicorn's ``auto`` protocol: BentoML builds the uvicorn
``Config`` itself and offers no way to choose the protocol class, so ``install`` replaces the entry of
uvicorn's protocol table (``uvicorn.config.HTTP_PROTOCOLS``) that ``Config.load`` looks up. The
BentoML integration calls it when it builds the worker's app (services/bento.py, ``to_asgi``), just
before the worker starts uvicorn.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from runtime.core.codes import RefusalReason
from runtime.core.errors import Overloaded

from .admission import Admission, mark_received
from .envelope import HTTPError, HttpErrorType, raw_response

log = logging.getLogger("ballast.protocol")

DEFAULT_READ_TIMEOUT_S = 10.0
_408 = raw_response(
    HTTPError(408, HttpErrorType.REQUEST_TIMEOUT, "the request did not arrive in time"), keep_alive=False
)


@functools.cache
def busy_response(reason: RefusalReason, retry_after_s: float, keep_alive: bool) -> bytes:
    """The door's 503: the envelope and Retry-After the front door gives any request refused as
    overloaded."""
    return raw_response(Overloaded(reason, retry_after_s), keep_alive)


def served_door(app: Any) -> tuple[Admission | None, float]:
    """The admission and read timeout of the front door inside ``app`` (uvicorn may wrap it in
    middleware, each holding the next as ``.app``); none, and the default timeout, for another app."""
    for _ in range(8):
        admission = getattr(app, "admission", None)
        if isinstance(admission, Admission):
            return admission, float(app.read_timeout_s)
        app = getattr(app, "app", None)
        if app is None:
            break
    return None, DEFAULT_READ_TIMEOUT_S


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.door, self.read_timeout_s = served_door(self.app)
        self._read_deadline: asyncio.TimerHandle | None = None
        self._refusing = False
        """The rest of a request refused at the door is still arriving."""
        self._unanswered = 0
        """This connection's share of ``inflight`` (more than one when the client pipelines)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        now = self.loop.time()
        door = self.door
        if (
            door is not None
            and (self.cycle is None or self.cycle.response_complete)  # never answer out of order
            and not self.parser.should_upgrade()
        ):
            reason = door.refuses_at_door(self.url.split(b"?", 1)[0], now, door.inflight)
            if reason is not None:
                self._refuse(reason, door.retry_after_s)
                return
        before = self.cycle
        super().on_headers_complete()  # builds the scope and schedules the app; it starts later
        if self.cycle is not before and door is not None:  # a request cycle: in until answered
            self._unanswered += 1
            door.inflight += 1
        if self.scope is not None:
            mark_received(self.scope, now)  # type: ignore[arg-type]

    def _refuse(self, reason: RefusalReason, retry_after_s: float) -> None:
        # a client waiting for "100 Continue" will not send the body: close, as for HTTP/1.0
        keep_alive = (
            self.parser.should_keep_alive() and self.parser.get_http_version() != "1.0" and not self.expect_100_continue
        )
        self.transport.write(busy_response(reason, retry_after_s, keep_alive))
        self._refusing = True  # what is left of the body is dropped
        if not keep_alive:
            self.transport.close()  # once the response is written

    def on_body(self, body: bytes) -> None:
        if not self._refusing:
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._disarm()
        if not self._refusing:
            super().on_message_complete()
            return
        self._refusing = False
        super().on_response_complete()  # as after any answer: keep-alive timer, resume reading (not if closing)

    def on_response_complete(self) -> None:
        """Called by uvicorn's request cycle once an answer is written (in request order)."""
        if self._unanswered and self.door is not None:
            self._unanswered -= 1
            self.door.inflight -= 1
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self.door is not None:
            self.door.inflight -= self._unanswered  # their clients are gone
        self._unanswered = 0
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._read_deadline is None:
            self._read_deadline = self.loop.call_later(self.read_timeout_s, self._timed_out)

    def _disarm(self) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
            self._read_deadline = None

    def _timed_out(self) -> None:
        self._read_deadline = None
        if self.transport.is_closing():
            return
        log.info("closing a connection from %s: no complete request within %.1f s", self.client, self.read_timeout_s)
        if self.cycle is None or not self.cycle.response_started:
            self.transport.write(_408)
        self.transport.close()


def install() -> None:
    """Make :class:`GuardedHttpToolsProtocol` the protocol uvicorn's ``http="auto"`` resolves to in
    this process."""
    from uvicorn import config

    config.HTTP_PROTOCOLS["auto"] = f"{__name__}:{GuardedHttpToolsProtocol.__name__}"

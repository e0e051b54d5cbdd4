"""A read deadline for every request, at the HTTP protocol level.

uvicorn times out idle keep-alive connections, but not a client that sends part of its headers, or
part of its body, and then stalls: each such connection is held for as long as the client likes,
and enough of them use up the server's file descriptors and memory. The ASGI app cannot help, as it
sees a request only once its headers are complete.

:class:`GuardedHttpToolsProtocol` is uvicorn's httptools protocol with one addition: from the moment
a connection opens, and from the first byte of each further request on it, the request (headers and
body) must arrive within ``read_timeout_s`` (``BALLAST_READ_TIMEOUT_S``). If it does not, the client
gets 408 with a JSON body, when no response has started yet, and the connection is closed. It also
stamps each request with the time its headers were read, for load shedding (services/admission.py),
counts the worker's requests from headers read to answer complete (``inflight``), and when the
admission says so (the worker full, or the shedding window open) refuses a prediction request as
soon as its headers are read: a prepared 503 with Retry-After is written, the body is read and
dropped, and no request cycle or task is made (the cheapest refusal uvicorn allows; keep-alive as
the client asked).

:func:`install` makes it uvicorn's ``auto`` protocol. BentoML builds the uvicorn ``Config`` itself
and offers no way to choose the protocol class, so ``install`` replaces the entry of uvicorn's
protocol table (``uvicorn.config.HTTP_PROTOCOLS``) that ``Config.load`` looks up; it must run before
the server starts, which the service decorator (services/base.py) does at import.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any, ClassVar

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from runtime import Overloaded

from . import admission

log = logging.getLogger("ballast.protocol")

_BODY = orjson.dumps(
    {"error": {"type": "request_timeout", "message": "the request did not arrive in time", "request_id": None}}
)
_408 = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b"content-length: %d\r\n\r\n%s" % (len(_BODY), _BODY)
)


@functools.cache
def busy_response(reason: str, retry_after_s: float, keep_alive: bool) -> bytes:
    """The door's 503: the JSON body and Retry-After FastPath gives any request refused as overloaded."""
    busy = Overloaded(reason, retry_after_s)
    body = orjson.dumps({"error": {**busy.public_body(), "request_id": None}})
    return (
        b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: %d\r\n"
        b"%scontent-length: %d\r\n\r\n%s"
        % (busy.retry_after_header, b"" if keep_alive else b"connection: close\r\n", len(body), body)
    )


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    read_timeout_s: ClassVar[float] = 10.0
    inflight: ClassVar[int] = 0
    """Requests of this worker (all connections) whose headers were read and whose answer is not
    yet complete: what the door's cap (``Admission.max_inflight``) counts."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
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
        door = admission.current()
        if (
            door is not None
            and (self.cycle is None or self.cycle.response_complete)  # never answer out of order
            and not self.parser.should_upgrade()
        ):
            reason = door.refuses_at_door(self.url.split(b"?", 1)[0], now, GuardedHttpToolsProtocol.inflight)
            if reason is not None:
                self._refuse(reason, door.retry_after_s)
                return
        before = self.cycle
        super().on_headers_complete()  # builds the scope and schedules the app; it starts later
        if self.cycle is not before:  # a request cycle (not an upgrade): in until its answer is complete
            self._unanswered += 1
            GuardedHttpToolsProtocol.inflight += 1
        if self.scope is not None:
            admission.mark_received(self.scope, now)  # type: ignore[arg-type]

    def _refuse(self, reason: str, retry_after_s: float) -> None:
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
        if self._unanswered:
            self._unanswered -= 1
            GuardedHttpToolsProtocol.inflight -= 1
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        GuardedHttpToolsProtocol.inflight -= self._unanswered  # their clients are gone
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


def install(read_timeout_s: float) -> None:
    """Make :class:`GuardedHttpToolsProtocol` (with this timeout) the protocol uvicorn's ``http="auto"``
    resolves to in this process."""
    from uvicorn import config

    GuardedHttpToolsProtocol.read_timeout_s = read_timeout_s
    config.HTTP_PROTOCOLS["auto"] = f"{__name__}:{GuardedHttpToolsProtocol.__name__}"

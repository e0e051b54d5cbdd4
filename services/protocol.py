"""A read deadline for every request, at the HTTP protocol level.

uvicorn times out idle keep-alive connections, but not a client that sends part of its headers, or
part of its body, and then stalls: each such connection is held for as long as the client likes,
and enough of them use up the server's file descriptors and memory. The ASGI app cannot help, as it
sees a request only once its headers are complete.

:class:`GuardedHttpToolsProtocol` is uvicorn's httptools protocol with one addition: from the moment
a connection opens, and from the first byte of each further request on it, the request (headers and
body) must arrive within ``read_timeout_s`` (``BALLAST_READ_TIMEOUT_S``). If it does not, the client
gets 408 with a JSON body, when no response has started yet, and the connection is closed. It also
stamps each request with the time its headers were read, for load shedding (services/admission.py).

:func:`install` makes it uvicorn's ``auto`` protocol. BentoML builds the uvicorn ``Config`` itself
and offers no way to choose the protocol class, so ``install`` replaces the entry of uvicorn's
protocol table (``uvicorn.config.HTTP_PROTOCOLS``) that ``Config.load`` looks up; it must run before
the server starts, which the service decorator (services/base.py) does at import.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from . import admission

log = logging.getLogger("ballast.protocol")

_BODY = orjson.dumps(
    {"error": {"type": "request_timeout", "message": "the request did not arrive in time", "request_id": None}}
)
_408 = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b"content-length: %d\r\n\r\n%s" % (len(_BODY), _BODY)
)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    read_timeout_s: ClassVar[float] = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        super().on_headers_complete()  # builds the scope and schedules the app; it starts later
        if self.scope is not None:
            admission.mark_received(self.scope, self.loop.time())  # type: ignore[arg-type]

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
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

"""Graceful shutdown of a worker: drain before uvicorn stops taking connections.

uvicorn, on SIGTERM, closes its listening socket at once and waits for open requests. A caller
arriving a moment later meets a refused or dropped connection, and a load balancer that polls
``/readyz`` never sees the server go unready first. :class:`Drain` sits in front of uvicorn's
handler:

    SIGTERM -> draining: /readyz 503, every new request 503 + Retry-After + Connection: close
            -> after ``drain_s``, once no Ballast request is in flight (or ``grace_s`` more passed)
            -> uvicorn's own handler: stop accepting, finish open requests, shut the app down

A second SIGTERM skips the wait. ``/livez`` and ``/metrics`` keep answering while draining.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from types import FrameType
from typing import Any

log = logging.getLogger("ballast.shutdown")

Handler = Callable[[int, FrameType | None], Any]


class Drain:
    def __init__(self, drain_s: float, grace_s: float = 30.0) -> None:
        self.drain_s = drain_s
        self.grace_s = grace_s
        """Longest to wait, after ``drain_s``, for requests in flight to finish."""
        self.draining = False
        self.in_flight = 0
        """Ballast requests being served (counted by the HTTP layer with :meth:`enter`, :meth:`leave`)."""
        self._idle = asyncio.Event()
        self._idle.set()
        self._installed = False
        self._task: asyncio.Task[None] | None = None

    def enter(self) -> None:
        self.in_flight += 1
        self._idle.clear()

    def leave(self) -> None:
        self.in_flight -= 1
        if not self.in_flight:
            self._idle.set()

    def install(self) -> None:
        """Put the drain in front of the current SIGTERM handler (uvicorn's, which it captures before
        the app's lifespan starts). Call from the event loop's thread; once per process."""
        if self._installed:
            return
        self._installed = True
        loop = asyncio.get_running_loop()
        previous = signal.getsignal(signal.SIGTERM)

        def on_sigterm(signum: int, frame: FrameType | None) -> None:
            loop.call_soon_threadsafe(self.begin, lambda: _call(previous, signum, frame))

        signal.signal(signal.SIGTERM, on_sigterm)

    def begin(self, stop: Callable[[], None]) -> None:
        """Start draining; ``stop`` (the previous handler) runs when the drain is over."""
        if self.draining:  # a second signal: stop now
            log.warning("second SIGTERM while draining: stopping now (%d request(s) in flight)", self.in_flight)
            if self._task is not None:
                self._task.cancel()
            stop()
            return
        self.draining = True
        log.info("SIGTERM: draining for %.1f s (readiness 503, new requests 503)", self.drain_s)
        self._task = asyncio.get_running_loop().create_task(self._finish(stop))

    async def _finish(self, stop: Callable[[], None]) -> None:
        await asyncio.sleep(self.drain_s)
        try:
            await asyncio.wait_for(self._idle.wait(), self.grace_s)
        except TimeoutError:
            log.warning("drain over with %d request(s) still in flight; uvicorn waits for them", self.in_flight)
        log.info("drain over: stopping")
        stop()


def _call(handler: Any, signum: int, frame: FrameType | None) -> None:
    if callable(handler):
        handler(signum, frame)
    elif handler == signal.SIG_DFL:  # nobody else handles it: the default action, ending the process
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.raise_signal(signal.SIGTERM)

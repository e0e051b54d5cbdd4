"""Load shedding at the door: refuse new prediction requests while the event loop is behind.

When the CPU, not the model, is the bottleneck, requests wait in socket buffers before the event
loop even reads them; the batcher's deadline-based shedding never sees that wait. The event loop's
lag does: a timer that should fire every ``interval_s`` fires late by about as long as a newly read
request has been waiting. While the lag (a decaying maximum, so that one quiet tick does not reopen
the door) exceeds ``max_lag_s``, :class:`LoopLag` reports ``overloaded`` and the HTTP layer answers
new prediction requests 503 + Retry-After before reading their bodies -- the cheapest answer there
is -- so the backlog drains and the requests that are served meet their deadline.
"""

from __future__ import annotations

import asyncio
import contextlib


class LoopLag:
    def __init__(self, max_lag_s: float, interval_s: float = 0.025, decay: float = 0.8) -> None:
        self.max_lag_s = max_lag_s
        """0 turns shedding off."""
        self.interval_s = interval_s
        self.decay = decay
        self.lag_s = 0.0
        self._task: asyncio.Task[None] | None = None

    @property
    def overloaded(self) -> bool:
        return self.max_lag_s > 0 and self.lag_s > self.max_lag_s

    def start(self) -> None:
        """Begin sampling on the running loop (idempotent; does nothing when shedding is off)."""
        if self.max_lag_s > 0 and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._sample())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _sample(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(self.interval_s)
            late = max(loop.time() - before - self.interval_s, 0.0)
            self.lag_s = max(late, self.lag_s * self.decay)

"""Drain: SIGTERM starts it, the previous handler runs once nothing is in flight."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from types import FrameType

from services.http.drain import Drain


async def test_stop_runs_after_drain_s_and_after_the_last_request() -> None:
    drain = Drain(0.1)
    stopped: list[float] = []
    drain.enter()
    started = time.monotonic()
    drain.begin(lambda: stopped.append(time.monotonic() - started))
    assert drain.draining
    await asyncio.sleep(0.3)
    assert stopped == []  # a request is still in flight
    drain.leave()
    await asyncio.sleep(0.05)
    assert len(stopped) == 1
    assert stopped[0] >= 0.3


async def test_requests_in_flight_are_waited_for_only_grace_s() -> None:
    drain = Drain(0.0, grace_s=0.1)
    stopped: list[bool] = []
    drain.enter()
    drain.begin(lambda: stopped.append(True))
    await asyncio.sleep(0.3)
    assert stopped == [True]


async def test_a_second_signal_stops_at_once() -> None:
    drain = Drain(60.0)
    stopped: list[bool] = []
    drain.begin(lambda: stopped.append(True))
    drain.begin(lambda: stopped.append(True))
    assert stopped == [True]


async def test_sigterm_is_caught_and_handed_on_after_the_drain() -> None:
    calls: list[int] = []

    def previous(signum: int, frame: FrameType | None) -> None:
        calls.append(signum)

    original = signal.signal(signal.SIGTERM, previous)
    try:
        drain = Drain(0.2)
        drain.install()
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.sleep(0.05)
        assert drain.draining
        assert calls == []
        await asyncio.sleep(0.3)
        assert calls == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, original)

"""The adaptive batcher: one queue per model, one dispatcher task that waits on events.

When to dispatch
    * nothing queued -> sleep on an event (an idle process uses no CPU);
    * every in-flight slot busy -> sleep until a batch finishes; rows pile up meanwhile, so
      batches grow exactly as fast as load does;
    * a slot is free and no batch is computing -> go now: waiting cannot help latency (when the
      queue is empty too, the caller's own task runs its request: no hop through the dispatcher);
    * a slot is free while another batch computes -> wait for more rows, but no longer than
      ``max_wait_s`` after the oldest request arrived, and never past the moment the oldest
      request could still finish by its deadline according to the latency model;
    * ``max_batch_size`` rows queued -> go now.

Admission and shedding
    A request is refused with :class:`Overloaded` when the queue holds ``max_queue_rows`` or when
    the latency model says it would finish after its deadline; at dispatch, requests whose caller
    went away are dropped and those that can no longer finish in time are shed.

Failure isolation
    When a batch raises, it is bisected and each half retried, so a poison row fails alone and its
    batchmates succeed: one poison row among n costs about 2 log2(n) extra runs, and a batch never
    costs more than 2n - 1 runs in all. A model that fails on everything is cut off by its circuit
    breaker after a few requests, not by the batcher.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ...core.codes import ShedReason
from ...core.errors import InvalidOutput, ModelFailed, Overloaded
from .collate import Arrays, BatchKey, batch_key, merge, split
from .cost import LatencyModel


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What one request gets back from the batcher."""

    outputs: Arrays
    queue_wait_s: float
    inference_s: float
    batch_rows: int


class BatchObserver(Protocol):
    """Told about every batch and every shed request (metrics implement it)."""

    def on_batch(self, rows: int, seconds: float, ok: bool) -> None: ...

    def on_shed(self, reason: ShedReason) -> None: ...


class _Pending:
    __slots__ = ("_key", "deadline", "enqueued", "future", "inputs", "on_start", "rows")

    def __init__(
        self,
        inputs: Mapping[str, np.ndarray],
        rows: int,
        deadline: float,
        future: asyncio.Future[BatchResult],
        enqueued: float,
        on_start: Callable[[], None] | None = None,
    ) -> None:
        self.inputs = inputs
        self.on_start = on_start
        self.rows = rows
        self._key: BatchKey | None = None
        self.deadline = deadline
        self.enqueued = enqueued
        self.future = future

    @property
    def key(self) -> BatchKey:
        """Which requests may share tensors with this one (computed only if it ever queues)."""
        if self._key is None:
            self._key = batch_key(self.inputs)
        return self._key


class AdaptiveBatcher:
    def __init__(
        self,
        run: Callable[[Arrays], Awaitable[Arrays]],
        *,
        max_batch_size: int,
        max_wait_s: float,
        max_in_flight: int,
        max_queue_rows: int,
        latency: LatencyModel | None = None,
        retry_after_s: float = 1.0,
        observer: BatchObserver | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``clock`` is what deadlines are measured on (``time.monotonic`` unless a test injects its
        own); batch durations are timed on it too."""
        for name, value, low in (
            ("max_batch_size", max_batch_size, 1),
            ("max_in_flight", max_in_flight, 1),
            ("max_queue_rows", max_queue_rows, max_batch_size),
        ):
            if not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if max_wait_s < 0:
            raise ValueError(f"max_wait_s must be >= 0, got {max_wait_s!r}")
        self._run_fn = run
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.max_in_flight = max_in_flight
        self.max_queue_rows = max_queue_rows
        self.latency = latency or LatencyModel()
        self.retry_after_s = retry_after_s
        self.observer = observer
        self._clock = clock
        self._queue: deque[_Pending] = deque()
        self._queued_rows = 0
        self._in_flight = 0
        self._wakeup = asyncio.Event()
        self._slot_free = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._dispatcher: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False

    # --- public ----------------------------------------------------------------------------

    @property
    def queued_rows(self) -> int:
        return self._queued_rows

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def estimate_wait(self, rows: int) -> float:
        """Predicted seconds until ``rows`` more rows would be answered, given the backlog."""
        total = self._queued_rows + rows
        per_batch = self.latency.predict(min(total, self.max_batch_size))
        waves = math.ceil(math.ceil(total / self.max_batch_size) / self.max_in_flight)
        if self._in_flight >= self.max_in_flight:
            waves += 1  # a running batch must finish before ours can start
        return waves * per_batch

    async def submit(
        self,
        inputs: Mapping[str, np.ndarray],
        rows: int,
        deadline: float,
        on_start: Callable[[], None] | None = None,
    ) -> BatchResult:
        """Queue ``rows`` rows and wait for their outputs. ``deadline`` is on the batcher's clock.
        ``on_start`` is called when the rows' batch starts computing: a caller that gives up before
        then knows the model never saw its request."""
        if self._closing:
            raise self._shed(ShedReason.SHUTTING_DOWN)
        if not 1 <= rows <= self.max_batch_size:
            raise ValueError(f"rows must be within [1, {self.max_batch_size}], got {rows!r}")
        if self._queued_rows + rows > self.max_queue_rows:
            raise self._shed(ShedReason.QUEUE_FULL)
        if self._clock() + self.estimate_wait(rows) > deadline:
            raise self._shed(ShedReason.DEADLINE)
        if self._dispatcher is None:
            self.start()
        future: asyncio.Future[BatchResult] = asyncio.get_running_loop().create_future()
        pending = _Pending(inputs, rows, deadline, future, self._clock(), on_start)
        if not self._queue and self._in_flight == 0:
            return await self._run_now(pending)
        self._queue.append(pending)
        self._queued_rows += rows
        self._idle.clear()
        self._wakeup.set()
        return await future  # a cancelled caller cancels the future; the dispatcher skips it

    async def _run_now(self, pending: _Pending) -> BatchResult:
        """Fast path for an idle batcher: the dispatcher would send this request alone at once,
        so the caller's own task runs it, saving two event-loop hops."""
        self._in_flight += 1
        self._idle.clear()
        if pending.on_start is not None:
            pending.on_start()
        try:
            await self._execute([pending])
        finally:
            self._finished()
        return pending.future.result()

    def start(self) -> None:
        if self._dispatcher is None:
            self._dispatcher = asyncio.get_running_loop().create_task(self._dispatch_loop(), name="ballast-batcher")

    async def close(self, drain: bool = True) -> None:
        """Refuse new requests; with ``drain``, finish what was admitted first."""
        self._closing = True
        if drain:
            await self._idle.wait()
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            await asyncio.gather(self._dispatcher, return_exceptions=True)
            self._dispatcher = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        while self._queue:
            self._fail(self._queue.popleft(), self._shed(ShedReason.SHUTTING_DOWN))
        self._queued_rows = 0

    # --- dispatching -----------------------------------------------------------------------

    async def _dispatch_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            if self._in_flight >= self.max_in_flight:
                self._slot_free.clear()
                await self._slot_free.wait()
                continue
            delay = self._linger()
            if delay > 0:
                self._wakeup.clear()
                try:
                    async with asyncio.timeout(delay):
                        await self._wakeup.wait()
                    continue  # something changed: decide again
                except TimeoutError:
                    pass
            batch = self._take()
            if not batch:
                if not self._queue and self._in_flight == 0:
                    self._idle.set()
                continue
            self._in_flight += 1
            task = loop.create_task(self._run(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _linger(self) -> float:
        """Seconds worth waiting for more rows before dispatching (0 = go now)."""
        if self._queued_rows >= self.max_batch_size or self._in_flight == 0 or self.max_wait_s == 0:
            return 0.0
        oldest = self._queue[0]
        until = min(
            oldest.enqueued + self.max_wait_s,
            oldest.deadline - self.latency.predict(min(self._queued_rows, self.max_batch_size)),
        )
        return max(0.0, until - self._clock())

    def _take(self) -> list[_Pending]:
        """Pop the next batch: the oldest live request and the queued requests that can share its
        tensors, up to ``max_batch_size`` rows, in arrival order."""
        now = self._clock()
        queue = self._queue
        batch: list[_Pending] = []
        skipped: list[_Pending] = []
        rows = 0
        key: BatchKey | None = None
        while queue:
            pending = queue[0]
            if pending.future.done():  # the caller was cancelled
                queue.popleft()
                self._queued_rows -= pending.rows
                continue
            if key is None:
                key = pending.key
            elif pending.key != key:
                skipped.append(queue.popleft())
                continue
            if rows + pending.rows > self.max_batch_size:
                break
            queue.popleft()
            self._queued_rows -= pending.rows
            if now + self.latency.predict(rows + pending.rows) > pending.deadline:
                self._fail(pending, self._shed(ShedReason.DEADLINE))
                continue
            batch.append(pending)
            rows += pending.rows
            if pending.on_start is not None:
                pending.on_start()
        queue.extendleft(reversed(skipped))
        return batch

    async def _run(self, batch: list[_Pending]) -> None:
        try:
            await self._execute(batch)
        except BaseException as exc:  # cancelled at close: leave no caller waiting
            for pending in batch:
                self._fail(pending, self._shed(ShedReason.SHUTTING_DOWN))
            if not isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            self._finished()

    def _finished(self) -> None:
        self._in_flight -= 1
        if self._queue:  # the dispatcher may be waiting for a slot or lingering
            self._slot_free.set()
            self._wakeup.set()
        elif self._in_flight == 0:
            self._idle.set()

    async def _execute(self, batch: list[_Pending]) -> None:
        """Run ``batch``; on failure bisect it and run each half."""
        rows = sum(p.rows for p in batch)
        started = self._clock()
        try:
            outputs = await self._run_fn(merge([p.inputs for p in batch]))
        except Exception as exc:
            self._observe(rows, self._clock() - started, ok=False)
            if len(batch) > 1:
                half = len(batch) // 2
                await self._execute(batch[:half])
                await self._execute(batch[half:])
                return
            for pending in batch:
                self._fail(pending, _model_failed(exc))
            return
        elapsed = self._clock() - started
        self.latency.observe(rows, elapsed)
        self._observe(rows, elapsed, ok=True)
        try:
            parts = split(outputs, [p.rows for p in batch])
        except InvalidOutput as exc:
            for pending in batch:
                self._fail(pending, InvalidOutput(str(exc)))
            return
        for pending, part in zip(batch, parts, strict=True):
            if not pending.future.done():
                pending.future.set_result(BatchResult(part, started - pending.enqueued, elapsed, rows))

    # --- helpers ---------------------------------------------------------------------------

    def _shed(self, reason: ShedReason) -> Overloaded:
        if self.observer is not None:
            self.observer.on_shed(reason)
        return Overloaded(reason, self.retry_after_s)

    def _observe(self, rows: int, seconds: float, ok: bool) -> None:
        if self.observer is not None:
            self.observer.on_batch(rows, seconds, ok)

    @staticmethod
    def _fail(pending: _Pending, exc: BaseException) -> None:
        if not pending.future.done():
            pending.future.set_exception(exc)


def _model_failed(exc: Exception) -> ModelFailed:
    failed = ModelFailed(f"{type(exc).__name__}: {exc}")
    failed.__cause__ = exc
    return failed

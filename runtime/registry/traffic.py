"""How a rollout meets the traffic: which requests the candidate answers, the shadow's copies, and the
evidence one worker gathers for the gates (runtime/registry/gates.py).

* :func:`place` puts a routing key (a caller's header, else the request id) at a fixed point of
  ``[0, 1)``; a request goes to the candidate when its point is below the stage's share, so a caller
  who sends the same key sticks to one version, on every worker, and a stage that grows keeps the
  callers it had.
* :class:`ShadowMirror` hands the candidate a copy of a request after production answered it: copies
  wait in a bounded queue (beyond ``max_in_flight``, dropped and counted) and run together, in
  batches, on the candidate's model. The shadow never changes an answer: it runs after the answer
  was sent, and its failures are only counted.
* :class:`Evidence` adds up, per worker, what the gates read: requests and failures on each side,
  latency histograms, the shadow's agreement; and, for the record, how far the shadow's outputs were
  from production's (:func:`distance`) and what its compute cost. A worker writes it out in batches,
  never per request.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import numpy as np

from .gates import latency_bucket

log = logging.getLogger(__name__)


def place(key: str) -> float:
    """A routing key's point in ``[0, 1)``: the same key, the same point, in every process."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def agrees(production: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray], tolerance: float) -> bool:
    """Whether two answers to the same request agree: integer outputs (labels, classes) equal, the
    arg-max of 2-D float outputs (probabilities) equal, and every float within ``tolerance``."""
    for name, ours in production.items():
        theirs = candidate.get(name)
        if theirs is None or theirs.shape != ours.shape:
            return False
        if ours.dtype.kind in "iub":
            if not np.array_equal(ours, theirs):
                return False
            continue
        if ours.ndim == 2 and ours.shape[1] > 1 and not np.array_equal(ours.argmax(axis=1), theirs.argmax(axis=1)):
            return False
        if not np.allclose(ours, theirs, rtol=0.0, atol=tolerance, equal_nan=False):
            return False
    return True


def distance(production: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray]) -> float:
    """How far two answers' outputs are: the largest mean absolute difference of a float output, and
    the share of differing elements of an integer one (0: the same answer)."""
    found = 0.0
    for name, ours in production.items():
        theirs = candidate.get(name)
        if theirs is None or theirs.shape != ours.shape or ours.size == 0:
            return 1.0
        if ours.dtype.kind == "f":
            found = max(found, float(np.mean(np.abs(ours.astype(np.float64) - theirs))))
        else:
            found = max(found, float(np.mean(ours != theirs)))
    return found


@dataclass(frozen=True, slots=True)
class Comparison:
    """The shadow's answer to one copy, against production's."""

    agreed: bool
    failed: bool
    distance: float = 0.0
    """:func:`distance` of the outputs (when both answered)."""
    inference_s: float = 0.0
    """The candidate's compute for the copy's rows (its share of the batch it ran in)."""


@dataclass(frozen=True, slots=True)
class Copy:
    """A request production answered, for the shadow: its validated inputs and production's answer."""

    inputs: Mapping[str, np.ndarray]
    outputs: Mapping[str, np.ndarray]
    degraded: bool
    rows: int
    request_id: str = ""


Run = Callable[[Mapping[str, np.ndarray]], Awaitable[Mapping[str, np.ndarray]]]
"""The candidate's model on a batch of inputs."""
Judge = Callable[[Copy, "Mapping[str, np.ndarray] | None", float], Comparison]
"""A copy, the candidate's outputs for its rows (``None``: it failed) and their compute -> the comparison."""


class Evidence:
    """One worker's counts for the current stage of a rollout (see :mod:`.rollout` for the names)."""

    def __init__(self) -> None:
        self._counts: defaultdict[str, float] = defaultdict(float)

    def answered(self, side: str, failed: bool, seconds: float) -> None:
        """A request ``side`` (``production`` or ``candidate``) answered, or failed to."""
        counts = self._counts
        counts[f"{side}_trials"] += 1
        if failed:
            counts[f"{side}_failures"] += 1
        counts[f"{side}_latency_{latency_bucket(seconds)}"] += 1

    def shadowed(self, comparison: Comparison) -> None:
        counts = self._counts
        counts["shadow_compared"] += 1
        counts["shadow_agreed"] += comparison.agreed
        counts["shadow_failures"] += comparison.failed
        if not comparison.failed:
            counts["shadow_answered"] += 1
            counts["shadow_distance_sum"] += comparison.distance
            counts["shadow_inference_sum"] += comparison.inference_s

    def dropped(self) -> None:
        self._counts["shadow_dropped"] += 1

    def take(self) -> dict[str, float]:
        """What was counted since the last call (and start again from zero)."""
        taken, self._counts = dict(self._counts), defaultdict(float)
        return taken


class ShadowMirror:
    """Runs copies of answered requests on the candidate, together: copies wait in a bounded queue and
    one task runs as many as ``max_batch_rows`` allow in one call of the candidate's model, with no
    validation, batcher, chain or hooks (production validated the inputs; the candidate's signature
    fits). One copy at a time through the candidate's whole pipeline cost about as much CPU as the
    request itself and tripled production's p95 at half of capacity (benchmarks/shadow_cost.py).
    A copy that would make more than ``max_in_flight`` wait or run is dropped and counted; a batch
    that raises is run again copy by copy, so that one bad copy fails alone."""

    def __init__(self, max_in_flight: int, evidence: Evidence, max_batch_rows: int = 64) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be an integer >= 1, got {max_in_flight!r}")
        self.max_in_flight = max_in_flight
        self.max_batch_rows = max_batch_rows
        self.evidence = evidence
        self._pending: deque[tuple[Copy, Run, Judge, int]] = deque()
        self._running = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def in_flight(self) -> int:
        """Copies waiting or running."""
        return len(self._pending) + self._running

    def mirror(self, copy: Copy, run: Run, judge: Judge, max_rows: int | None = None) -> bool:
        """Queue ``copy`` for ``run`` (the candidate), to be judged against production's answer, in
        batches of at most ``max_rows`` (``max_batch_rows`` when not given), unless ``max_in_flight``
        copies are held; a copy that cannot wait is dropped and counted."""
        if self.in_flight >= self.max_in_flight:
            self.evidence.dropped()
            return False
        self._pending.append((copy, run, judge, min(max_rows or self.max_batch_rows, self.max_batch_rows)))
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._drain(), name="ballast-shadow")
        return True

    async def _drain(self) -> None:
        try:
            while self._pending:
                first = self._pending.popleft()
                batch, rows = [first], first[0].rows
                while self._pending and self._pending[0][1] is first[1] and rows + self._pending[0][0].rows <= first[3]:
                    batch.append(self._pending.popleft())
                    rows += batch[-1][0].rows
                self._running = len(batch)
                try:
                    await self._run([c for c, _, _, _ in batch], first[1], first[2])
                finally:
                    self._running = 0
                await asyncio.sleep(0)  # a run on the loop's thread does not yield: let requests in
        finally:
            self._task = None

    async def _run(self, copies: list[Copy], run: Run, judge: Judge) -> None:
        started = time.perf_counter()
        try:
            if len(copies) == 1:
                outputs = await run(copies[0].inputs)
            else:
                outputs = await run({n: np.concatenate([c.inputs[n] for c in copies]) for n in copies[0].inputs})
        except asyncio.CancelledError:
            raise
        except Exception:  # a shadow's failure is evidence, never an error of a request
            log.debug("shadow batch of %d failed", len(copies), exc_info=True)
            if len(copies) > 1:
                for copy in copies:
                    await self._run([copy], run, judge)
            else:
                self.evidence.shadowed(judge(copies[0], None, time.perf_counter() - started))
            return
        per_row = (time.perf_counter() - started) / max(1, sum(c.rows for c in copies))
        at = 0
        for copy in copies:
            mine = {name: array[at : at + copy.rows] for name, array in outputs.items()}
            at += copy.rows
            self.evidence.shadowed(judge(copy, mine, per_row * copy.rows))

    async def wait(self) -> None:
        """Until the copies held now have run."""
        while self._task is not None:
            await asyncio.shield(self._task)

    async def close(self) -> None:
        """Stop: the copies still held are not run (nor counted)."""
        self._pending.clear()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

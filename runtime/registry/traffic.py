"""How a rollout meets the traffic: which requests the candidate answers, the shadow's copies, and the
evidence one worker gathers for the gates (runtime/registry/gates.py).

* :func:`place` puts a routing key (a caller's header, else the request id) at a fixed point of
  ``[0, 1)``; a request goes to the candidate when its point is below the stage's share, so a caller
  who sends the same key sticks to one version, on every worker, and a stage that grows keeps the
  callers it had.
* :class:`ShadowMirror` hands the candidate a copy of a request after production answered it, in at
  most ``max_in_flight`` tasks; beyond that the copy is dropped and counted. The shadow never changes
  an answer: it runs after the answer was sent, and its failures are only counted.
* :class:`Evidence` adds up, per worker, what the gates read: requests and failures on each side,
  latency histograms, the shadow's agreement; and, for the record, how far the shadow's outputs were
  from production's (:func:`distance`) and how much longer it took. A worker writes it out in
  batches, never per request.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import defaultdict
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
    latency_delta_s: float = 0.0
    """The shadow's time minus production's (when both answered)."""


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
            counts["shadow_latency_delta_sum"] += comparison.latency_delta_s

    def dropped(self) -> None:
        self._counts["shadow_dropped"] += 1

    def take(self) -> dict[str, float]:
        """What was counted since the last call (and start again from zero)."""
        taken, self._counts = dict(self._counts), defaultdict(float)
        return taken


class ShadowMirror:
    """Runs copies of answered requests on the candidate, at most ``max_in_flight`` at a time."""

    def __init__(self, max_in_flight: int, evidence: Evidence) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be an integer >= 1, got {max_in_flight!r}")
        self.max_in_flight = max_in_flight
        self.evidence = evidence
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def mirror(self, run: Callable[[], Awaitable[Comparison]]) -> bool:
        """Start ``run`` (the candidate's answer compared with production's) unless
        ``max_in_flight`` copies are running; a copy that cannot start is dropped and counted."""
        if len(self._tasks) >= self.max_in_flight:
            self.evidence.dropped()
            return False
        task = asyncio.get_running_loop().create_task(self._compare(run))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _compare(self, run: Callable[[], Awaitable[Comparison]]) -> None:
        try:
            comparison = await run()
        except asyncio.CancelledError:
            raise
        except Exception:  # a shadow's failure is evidence, never an error of the request
            log.debug("shadow run failed", exc_info=True)
            comparison = Comparison(agreed=False, failed=True)
        self.evidence.shadowed(comparison)

    async def wait(self) -> None:
        """Until the copies running now have finished."""
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def close(self) -> None:
        """Stop the copies still running (they are not counted)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

"""The request hook that writes the audit trail: one row per answered request, one per shadow run.

A prediction's row says who asked (``principal``), which model, version and file answered, how
(``route``: production or canary; in ``factors``, whether a fallback, the rule stage or the result
cache did), on what (the HMAC of the validated input, never the input), what (the outputs when
small, their hash, each row's ``confidence``), what the service makes of it (``describe``: its
answers, say a decision, the compliance checks that held, the rules that fired) and how long it
took. Refused requests (422, 503) are not predictions: the metrics count them.

On the request path the hook only takes the time and queues the record; the row is built on the
writer's thread (digests, the service's description), so that a prediction pays for neither.
A sampled share of requests (``payload_share``, by a hash of the request id, so that a retried id
gets the same decision) also leaves its payload, redacted (runtime/audit/redact.py), in a table of
its own; payloads are the first thing shed when the writer falls behind.
"""

from __future__ import annotations

import itertools
import os
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.codes import Outcome
from ..core.record import RequestRecord
from .chain import Keyed, arrays_digest
from .redact import Redactor
from .writer import AuditWriter, Row

MAX_LISTED = 64
"""Outputs with at most this many elements are written out in the row; larger ones only hashed."""

Describe = Callable[[RequestRecord], Mapping[str, Any]]
"""What the service says about an answer, for its row (e.g. ``answers``, ``checks``, ``rules``)."""


def listed(outputs: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """The outputs small enough to keep, as JSON values."""
    return {name: array.tolist() for name, array in sorted(outputs.items()) if array.size <= MAX_LISTED}


def confidence(outputs: Mapping[str, Any]) -> list[float] | None:
    """Each row's highest class probability, when the listed outputs hold probabilities."""
    for name, rows in outputs.items():
        if "prob" in name and rows and isinstance(rows[0], list) and rows[0] and isinstance(rows[0][0], float):
            return [round(max(row), 6) for row in rows]
    return None


_PROCESS = os.urandom(2).hex()
_SERIAL = itertools.count()


def time_ordered_id(at: float) -> str:
    """Microseconds since the epoch, this process's random tag and its serial number: ordered by
    time, unique across processes (``os.urandom`` per row cost a system call each)."""
    return f"{int(at * 1e6):014x}{_PROCESS}{next(_SERIAL) & 0xFFFF:04x}"


def sampled(request_id: str, share: float) -> bool:
    return share > 0 and zlib.crc32(request_id.encode()) < share * 2**32


@dataclass(frozen=True, slots=True)
class ShadowRun:
    """A candidate's answer (``None``: it failed) to a copy of a request production answered."""

    request_id: str
    service: str
    model: str
    version: str
    artifact: str | None
    inputs: Mapping[str, np.ndarray]
    outputs: Mapping[str, np.ndarray] | None
    agreed: bool
    distance: float
    seconds: float


class AuditHook:
    def __init__(
        self,
        writer: AuditWriter,
        key: bytes,
        *,
        describe: Describe | None = None,
        payload_share: float = 0.0,
        redactor: Redactor | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not 0.0 <= payload_share <= 1.0:
            raise ValueError(f"payload_share must be within [0, 1], got {payload_share!r}")
        self.writer = writer
        self._digest = Keyed(key)
        self.describe = describe
        self.payload_share = payload_share
        self.redactor = redactor or Redactor(None, key)
        self._clock = clock

    def on_request(self, outcome: Outcome, record: RequestRecord) -> None:
        if outcome not in (Outcome.SUCCESS, Outcome.FALLBACK) or record.outputs is None or record.inputs is None:
            return
        at = self._clock()
        payload = sampled(record.request_id, self.payload_share)
        if payload and not self.writer.room_for_payloads:
            payload = False
            self.writer.count_dropped("payload_shed")
        self.writer.offer(lambda: self.rows(record, outcome is Outcome.FALLBACK, at, payload))

    def rows(self, record: RequestRecord, degraded: bool, at: float, payload: bool) -> list[Row]:
        """The rows of one answered request (built on the writer's thread)."""
        assert record.outputs is not None
        assert record.inputs is not None
        factors: dict[str, Any] = {"cached": record.cached}
        outputs = listed(record.outputs)
        if record.fallbacks:
            factors["fallbacks"] = [[a, b, str(reason)] for a, b, reason in record.fallbacks]
        row: dict[str, Any] = {
            "id": time_ordered_id(at),
            "kind": "prediction",
            "at": at,
            "request_id": record.request_id,
            "principal": record.principal,
            "service": record.pipeline,
            "deployment": record.version,
            "model": record.served_by,
            "version": record.model_version,
            "artifact": record.artifact,
            "route": record.route,
            "degraded": degraded,
            "rows": record.rows,
            "input_hmac": self._digest(record.inputs),
            "output_hash": arrays_digest(record.outputs),
            "outputs": outputs,
            "confidence": confidence(outputs),
            "factors": factors,
            "latency_ms": round(record.total_s * 1000, 3),
        }
        if self.describe is not None:
            row.update(self.describe(record))
        rows: list[Row] = [row]
        if payload:
            rows.append(self.payload(record, at))
        return rows

    def payload(self, record: RequestRecord, at: float) -> Row:
        """The request's input and output in full, redacted: records by their fields' classes,
        tensors as numbers."""
        assert record.outputs is not None
        assert record.inputs is not None
        if record.records is not None:
            inputs: Any = [self.redactor.record(r) for r in record.records]
        else:
            inputs = {name: array.tolist() for name, array in sorted(record.inputs.items())}
        return {
            "kind": "payload",
            "at": at,
            "request_id": record.request_id,
            "service": record.pipeline,
            "version": record.model_version,
            "inputs": inputs,
            "outputs": {name: array.tolist() for name, array in sorted(record.outputs.items())},
        }

    def on_shadow(self, run: ShadowRun) -> None:
        """A row for a shadow's run of a copy (``kind`` and ``route`` ``shadow``, the same request id)."""
        at = self._clock()
        self.writer.offer(lambda: [self.shadow_row(run, at)])

    def shadow_row(self, run: ShadowRun, at: float) -> Row:
        outputs = listed(run.outputs) if run.outputs is not None else None
        return {
            "id": time_ordered_id(at),
            "kind": "shadow",
            "at": at,
            "request_id": run.request_id,
            "service": run.service,
            "deployment": run.version,
            "model": run.model,
            "version": run.version,
            "artifact": run.artifact,
            "route": "shadow",
            "failed": run.outputs is None,
            "agreed": run.agreed,
            "distance": round(run.distance, 6),
            "input_hmac": self._digest(run.inputs),
            "output_hash": arrays_digest(run.outputs) if run.outputs is not None else None,
            "outputs": outputs,
            "confidence": confidence(outputs) if outputs is not None else None,
            "latency_ms": round(run.seconds * 1000, 3),
        }

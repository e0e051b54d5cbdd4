"""The request hook that writes the audit trail: one row per answered request.

A row says which model and version answered, how (``route``: production or canary, and in
``factors`` whether a fallback, the rule stage or the result cache did), on what (the HMAC of the
validated input, never the input), what (the outputs, when small, and their hash), and how long it
took. Refused requests (422, 503) are not predictions: the metrics count them. Building a row costs
a digest of the input and of the outputs; writing it happens on the writer's thread.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..core.codes import Outcome
from ..core.record import RequestRecord
from .chain import arrays_digest, keyed_digest
from .writer import AuditWriter

MAX_LISTED = 64
"""Outputs with at most this many elements are written out in the row; larger ones only hashed."""


def listed(outputs: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """The outputs small enough to keep, as JSON values."""
    return {name: array.tolist() for name, array in sorted(outputs.items()) if array.size <= MAX_LISTED}


class AuditHook:
    def __init__(self, writer: AuditWriter, key: bytes, clock: Callable[[], float] = time.time) -> None:
        self.writer = writer
        self.key = key
        self._clock = clock

    def on_request(self, outcome: Outcome, record: RequestRecord) -> None:
        if outcome not in (Outcome.SUCCESS, Outcome.FALLBACK) or record.outputs is None or record.inputs is None:
            return
        at = self._clock()
        factors: dict[str, Any] = {"cached": record.cached}
        if record.fallbacks:
            factors["fallbacks"] = [[a, b, str(reason)] for a, b, reason in record.fallbacks]
        self.writer.offer(
            {
                "id": f"{int(at * 1e6):014x}{os.urandom(4).hex()}",  # time-ordered
                "kind": "prediction",
                "at": at,
                "request_id": record.request_id,
                "service": record.pipeline,
                "deployment": record.version,
                "model": record.served_by,
                "version": record.model_version,
                "route": record.route,
                "degraded": outcome is Outcome.FALLBACK,
                "rows": record.rows,
                "input_hmac": keyed_digest(record.inputs, self.key),
                "output_hash": arrays_digest(record.outputs),
                "outputs": listed(record.outputs),
                "factors": factors,
                "latency_ms": round(record.total_s * 1000, 3),
            }
        )

"""The request hook that feeds the audit trail: one row per answered request, one per shadow run.

A prediction's row says who asked (``principal``), which model, version and file answered, how
(``route``: production or canary; in ``factors``, whether a fallback, the rule stage or the result
cache did), on what (the HMAC of the validated input, never the input), what (the outputs when
small, their hash, each row's ``confidence``), what the service makes of it (``describe``: its
answers, say a decision, the compliance checks that held, the rules that fired) and how long it
took. Refused requests (422, 503) are not predictions: the metrics count them.

On the request path the hook takes what the row needs as plain values, its tensors as bytes, and
the service's description as JSON (runtime/audit/rows.py: ``Answered``), and queues it: a few
microseconds. The writer digests, serialises, chains and stores it, by default in a process of its
own (runtime/audit/sink.py), so that the request path pays for neither the hashing, nor the JSON,
nor the database. A sampled share of requests (``payload_share``, by a hash of the request id, so
that a retried id gets the same decision) also leaves its payload, redacted
(runtime/audit/redact.py), in a table of its own; payloads are the first thing shed when the writer
falls behind.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from ..core.codes import Outcome
from ..core.record import RequestRecord
from .chain import message_of, pack
from .redact import Redactor
from .rows import Answered, Row, Shadowed
from .writer import AuditWriter

log = logging.getLogger(__name__)

_ANSWERED = frozenset((Outcome.SUCCESS, Outcome.FALLBACK))
_FALLBACK = Outcome.FALLBACK
"""(Read once: an enum's members are slow to read from its class on every request.)"""

Describe = Callable[[RequestRecord], Mapping[str, Any]]
"""What the service says about an answer, for its row (e.g. ``answers``, ``checks``, ``rules``)."""


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
        """``key``: the secret of the payloads' redaction digests (the writer digests the inputs)."""
        if not 0.0 <= payload_share <= 1.0:
            raise ValueError(f"payload_share must be within [0, 1], got {payload_share!r}")
        self.writer = writer
        self.describe = describe
        self.payload_share = payload_share
        self.redactor = redactor or Redactor(None, key)
        self._clock = clock

    def on_request(self, outcome: Outcome, record: RequestRecord) -> None:
        if outcome not in _ANSWERED or record.outputs is None or record.inputs is None:
            return
        at = self._clock()
        try:
            facts = self.describe(record) if self.describe is not None else None
            item = self.answered(record, outcome is _FALLBACK, at, orjson.dumps(facts) if facts else None)
        except Exception:  # a bug in a description must not fail the request: count the row, go on
            log.exception("the audit row of request %s could not be made", record.request_id)
            self.writer.count_dropped("build_failed")
            return
        if not self.writer.offer(item):
            return
        if not self.payload_share or not sampled(record.request_id, self.payload_share):
            return
        if self.writer.room_for_payloads:
            self.writer.offer(self.payload(record, at))
        else:
            self.writer.count_dropped("payload_shed")

    @staticmethod
    def answered(record: RequestRecord, degraded: bool, at: float, facts: bytes | None = None) -> Answered:
        """What the row of one answered request needs (``facts``: its description, as a JSON object)."""
        assert record.outputs is not None
        assert record.inputs is not None
        return Answered(
            at,
            record.request_id,
            record.principal,
            record.pipeline,
            record.version,
            record.served_by,
            record.model_version,
            record.artifact,
            record.route,
            degraded,
            record.rows,
            record.cached,
            [[a, b, str(reason)] for a, b, reason in record.fallbacks] if record.fallbacks else None,
            record.total_s,
            message_of(record.inputs),
            pack(record.outputs),
            facts,
        )

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
        self.writer.offer(
            Shadowed(
                self._clock(),
                run.request_id,
                run.service,
                run.model,
                run.version,
                run.artifact,
                message_of(run.inputs),
                pack(run.outputs) if run.outputs is not None else None,
                run.agreed,
                run.distance,
                run.seconds,
            )
        )

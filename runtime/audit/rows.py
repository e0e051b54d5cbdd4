"""What leaves the request path for the audit trail, and the rows the writer makes of it.

A request's answer leaves the request path as an :class:`Answered` (plain values, its tensors
packed as bytes), sealed into one bytes object (:func:`seal`). The writer (a process of its own by
default: runtime/audit/sink.py) turns it into the row: a time-ordered id, the HMAC of the input
under the trail's key, the hash of the outputs, the outputs themselves when small, each row's
confidence. A shadow's run leaves as a :class:`Shadowed`, made into a row the same way. Anything
else offered (a payload, a row made elsewhere) is a row already and is stored as it is.
"""

from __future__ import annotations

import itertools
import marshal
import os
import pickle
from collections.abc import Mapping
from typing import Any, NamedTuple, TypeAlias

import numpy as np

from .chain import Keyed, Packed, digest

MAX_LISTED = 64
"""Outputs with at most this many elements are written out in the row; larger ones only hashed."""

Row: TypeAlias = Mapping[str, Any]


class Answered(NamedTuple):
    """One answered request, as the request path leaves it."""

    at: float
    request_id: str
    principal: str | None
    service: str
    deployment: str
    model: str | None
    version: str | None
    artifact: str | None
    route: str
    degraded: bool
    rows: int
    cached: bool
    fallbacks: list[list[str]] | None
    """``[from stage, to stage, reason]`` for each move down the chain, if any."""
    latency_s: float
    inputs: Packed
    outputs: Packed
    facts: Mapping[str, Any] | None
    """What the service said about the answer (its answers, the checks that held, the rules)."""


class Shadowed(NamedTuple):
    """A candidate's run (``outputs`` ``None``: it failed) of a copy of a request production answered."""

    at: float
    request_id: str
    service: str
    model: str
    version: str
    artifact: str | None
    inputs: Packed
    outputs: Packed | None
    agreed: bool
    distance: float
    latency_s: float


_ANSWERED, _SHADOWED = 0, 1


def seal(item: Answered | Shadowed) -> bytes:
    """``item`` as one bytes object, taken on the request path: the queue then holds no objects
    the garbage collector must walk (a queue of records and dicts made it collect several times as
    often), a queued row's memory is its size, and nothing the request made is shared with the
    writer. ``marshal`` (format 2, which keeps no back-references: the fastest here) for plain
    values; ``pickle`` for a description holding anything else."""
    try:
        values: tuple[Any, ...] = tuple(item)
        return b"m" + marshal.dumps((_SHADOWED if type(item) is Shadowed else _ANSWERED, values), 2)
    except ValueError:
        return b"p" + pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)


def unseal(sealed: bytes) -> Answered | Shadowed:
    if sealed[:1] == b"p":
        item: Answered | Shadowed = pickle.loads(sealed[1:])
        return item
    kind, values = marshal.loads(memoryview(sealed)[1:])
    return Shadowed._make(values) if kind == _SHADOWED else Answered._make(values)


Item: TypeAlias = bytes | Answered | Shadowed | Row
"""What the audit writer takes: a sealed :class:`Answered` or :class:`Shadowed` (or one as it is),
or a row."""


_PROCESS = os.urandom(2).hex()
_SERIAL = itertools.count()


def time_ordered_id(at: float) -> str:
    """Microseconds since the epoch, this process's random tag and its serial number: ordered by
    time, unique across processes (``os.urandom`` per row cost a system call each)."""
    return f"{int(at * 1e6):014x}{_PROCESS}{next(_SERIAL) & 0xFFFF:04x}"


def listed(packed: Packed) -> dict[str, Any]:
    """The outputs small enough to keep, as JSON values."""
    kept: dict[str, Any] = {}
    for name, dtype, shape, raw in packed:
        array = np.frombuffer(raw, dtype=dtype).reshape(shape)
        if array.size <= MAX_LISTED:
            kept[name] = array.tolist()
    return kept


def confidence(outputs: Mapping[str, Any]) -> list[float] | None:
    """Each row's highest class probability, when the listed outputs hold probabilities."""
    for name, rows in outputs.items():
        if "prob" in name and rows and isinstance(rows[0], list) and rows[0] and isinstance(rows[0][0], float):
            return [round(max(row), 6) for row in rows]
    return None


class RowBuilder:
    """Rows from what the request path left, the input digested under ``key``."""

    def __init__(self, key: bytes | None) -> None:
        self._digest = Keyed(key) if key else None

    def __call__(self, item: Item) -> Row:
        if isinstance(item, bytes):
            item = unseal(item)
        if isinstance(item, Answered):
            return self.answered(item)
        if isinstance(item, Shadowed):
            return self.shadowed(item)
        if isinstance(item, Mapping):
            return item
        raise TypeError(f"not an audit item: {type(item).__name__}")

    def _input_hmac(self, packed: Packed) -> str:
        if self._digest is None:
            raise ValueError("an audit key is needed to digest inputs")
        return self._digest.packed(packed)

    def answered(self, a: Answered) -> Row:
        outputs = listed(a.outputs)
        factors: dict[str, Any] = {"cached": a.cached}
        if a.fallbacks:
            factors["fallbacks"] = a.fallbacks
        row = {
            "id": time_ordered_id(a.at),
            "kind": "prediction",
            "at": a.at,
            "request_id": a.request_id,
            "principal": a.principal,
            "service": a.service,
            "deployment": a.deployment,
            "model": a.model,
            "version": a.version,
            "artifact": a.artifact,
            "route": a.route,
            "degraded": a.degraded,
            "rows": a.rows,
            "input_hmac": self._input_hmac(a.inputs),
            "output_hash": digest(a.outputs),
            "outputs": outputs,
            "confidence": confidence(outputs),
            "factors": factors,
            "latency_ms": round(a.latency_s * 1000, 3),
        }
        if a.facts:
            row.update(a.facts)
        return row

    def shadowed(self, s: Shadowed) -> Row:
        outputs = listed(s.outputs) if s.outputs is not None else None
        return {
            "id": time_ordered_id(s.at),
            "kind": "shadow",
            "at": s.at,
            "request_id": s.request_id,
            "service": s.service,
            "deployment": s.version,
            "model": s.model,
            "version": s.version,
            "artifact": s.artifact,
            "route": "shadow",
            "failed": s.outputs is None,
            "agreed": s.agreed,
            "distance": round(s.distance, 6),
            "input_hmac": self._input_hmac(s.inputs),
            "output_hash": digest(s.outputs) if s.outputs is not None else None,
            "outputs": outputs,
            "confidence": confidence(outputs) if outputs is not None else None,
            "latency_ms": round(s.latency_s * 1000, 3),
        }

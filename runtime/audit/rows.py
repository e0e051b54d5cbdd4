"""What leaves the request path for the audit trail, and the rows the writer makes of it.

A request's answer leaves the request path as an :class:`Answered`: plain values (strings,
numbers, bytes, tuples of them; nothing the garbage collector has to walk for long), its tensors
packed as bytes, the service's description of it already as JSON. The writer (a process of its own
by default: runtime/audit/sink.py) turns it into the row: a time-ordered id, the HMAC of the input
under the trail's key, the hash of the outputs, the outputs themselves when small, each row's
confidence, as JSON ready to chain and store (a :class:`~runtime.audit.store.Line`). A shadow's
run leaves as a :class:`Shadowed`, made into a row the same way. Anything else offered (a payload,
a row made elsewhere) is a row already and is stored as it is.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, TypeAlias

import numpy as np
import orjson

from .chain import Keyed, Packed, canonical, digest
from .store import Line

log = logging.getLogger(__name__)

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
    inputs: bytes
    """The validated input as its digest covers it (runtime/audit/chain.py: ``message_of``)."""
    outputs: Packed
    facts: bytes | None
    """What the service said about the answer (its answers, the checks that held, the rules), as a
    JSON object."""


class Shadowed(NamedTuple):
    """A candidate's run (``outputs`` ``None``: it failed) of a copy of a request production answered."""

    at: float
    request_id: str
    service: str
    model: str
    version: str
    artifact: str | None
    inputs: bytes
    """As :attr:`Answered.inputs`."""
    outputs: Packed | None
    agreed: bool
    distance: float
    latency_s: float


Item: TypeAlias = Answered | Shadowed | Row
"""What the audit writer takes: an :class:`Answered` or :class:`Shadowed`, or a row."""


def plain(item: Item) -> Any:
    """``item`` in a form ``marshal`` writes (for the pipe to the writer process): a tuple tagged
    with its kind, or the row."""
    if isinstance(item, Answered):
        return (_ANSWERED, *item)
    if isinstance(item, Shadowed):
        return (_SHADOWED, *item)
    return item


def from_plain(value: Any) -> Item:
    if isinstance(value, tuple):
        return (Shadowed if value[0] == _SHADOWED else Answered)._make(value[1:])
    return value  # type: ignore[no-any-return]


_ANSWERED, _SHADOWED = 0, 1


_PROCESS = os.urandom(2).hex()
_SERIAL = itertools.count()


def time_ordered_id(at: float) -> str:
    """Microseconds since the epoch, this process's random tag and its serial number: ordered by
    time, unique across processes (``os.urandom`` per row cost a system call each)."""
    return f"{int(at * 1e6):014x}{_PROCESS}{next(_SERIAL) & 0xFFFF:04x}"


def listed(packed: Packed) -> dict[str, Any]:
    """The outputs small enough to keep, as JSON values."""
    return listed_all([packed])[0][0]


def confidence(outputs: Mapping[str, Any]) -> list[float] | None:
    """Each row's highest class probability, when the listed outputs hold probabilities."""
    for name, rows in outputs.items():
        if "prob" in name and rows and isinstance(rows[0], list) and rows[0] and isinstance(rows[0][0], float):
            return [round(max(row), 6) for row in rows]
    return None


_ITEMSIZE: dict[str, int] = {}


def _itemsize(dtype: str) -> int:
    found = _ITEMSIZE.get(dtype)
    if found is None:
        found = _ITEMSIZE[dtype] = np.dtype(dtype).itemsize
    return found


def listed_all(packeds: Sequence[Packed]) -> tuple[list[dict[str, Any]], list[list[float] | None]]:
    """For each of several requests' outputs, those small enough to keep, as JSON values, and each
    row's confidence (what :func:`listed` and :func:`confidence` give one at a time). The tensors
    of one name, type and row shape are decoded together, whatever the requests: a batch's
    outputs cost a few NumPy calls, not a few per request."""
    kept: list[dict[str, Any]] = [{} for _ in packeds]
    confident: list[list[float] | None] = [None] * len(packeds)
    groups: dict[tuple[str, str, tuple[int, ...]], list[tuple[int, int, bytes]]] = {}
    for i, packed in enumerate(packeds):
        for name, dtype, shape, raw in packed:
            if len(raw) > MAX_LISTED * _itemsize(dtype):
                continue
            if shape:
                groups.setdefault((name, dtype, shape[1:]), []).append((i, shape[0], raw))
            else:  # a scalar: on its own
                kept[i][name] = np.frombuffer(raw, dtype=dtype)[0].item()
    for (name, dtype, rest), members in groups.items():
        array = np.frombuffer(b"".join([raw for _, _, raw in members]), dtype=dtype).reshape(-1, *rest)
        values = array.tolist()
        at = 0
        if "prob" in name and array.ndim == 2 and array.shape[1] > 0 and array.dtype.kind == "f":
            best = np.round(array.max(axis=1).astype(np.float64), 6).tolist()
            for i, rows, _ in members:
                kept[i][name] = values[at : at + rows]
                if confident[i] is None and rows:
                    confident[i] = best[at : at + rows]
                at += rows
        else:
            for i, rows, _ in members:
                kept[i][name] = values[at : at + rows]
                at += rows
    return kept, confident


class RowBuilder:
    """Rows from what the request path left, the input digested under ``key``: chained rows as
    :class:`Line`, payloads as they are."""

    def __init__(self, key: bytes | None) -> None:
        self._digest = Keyed(key) if key else None

    def __call__(self, item: Item) -> Line | Row:
        if isinstance(item, Answered):
            return self.answered(item)
        if isinstance(item, Shadowed):
            return self.shadowed(item)
        if isinstance(item, Mapping):
            return item if item.get("kind") == "payload" else Line.of(item)
        raise TypeError(f"not an audit item: {type(item).__name__}")

    def batch(self, items: Sequence[Item]) -> tuple[list[Line | Row], int]:
        """The rows of ``items``, in order, and how many could not be made (a bug: logged, counted).
        The answers' outputs are decoded together (:func:`listed_all`)."""
        answered = [item for item in items if isinstance(item, Answered)]
        try:
            outputs = dict(
                zip(map(id, answered), zip(*listed_all([a.outputs for a in answered]), strict=True), strict=True)
            )
        except Exception:
            log.exception("audit outputs could not be decoded together; one at a time")
            outputs = {}
        rows: list[Line | Row] = []
        failed = 0
        for item in items:
            try:
                known = outputs.get(id(item))
                rows.append(self.answered(item, *known) if known is not None else self(item))  # type: ignore[arg-type]
            except Exception:
                log.exception("an audit row could not be made")
                failed += 1
        return rows, failed

    def _input_hmac(self, text: bytes) -> str:
        if self._digest is None:
            raise ValueError("an audit key is needed to digest inputs")
        return self._digest.of(text)

    def answered(
        self, a: Answered, outputs: dict[str, Any] | None = None, confident: list[float] | None = None
    ) -> Line:
        """``a``'s row (``outputs`` and ``confident``: its listed outputs and confidence, when
        decoded already)."""
        if outputs is None:
            outputs = listed(a.outputs)
            confident = confidence(outputs)
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
            "confidence": confident,
            "factors": factors,
            "latency_ms": round(a.latency_s * 1000, 3),
        }
        text = orjson.dumps(row)
        if a.facts and a.facts != b"{}":  # the description's fields after the row's own
            text = text[:-1] + b"," + a.facts[1:]
        return Line(a.request_id, a.at, "prediction", a.service, a.version, text)

    def shadowed(self, s: Shadowed) -> Line:
        outputs = listed(s.outputs) if s.outputs is not None else None
        row = {
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
        return Line(s.request_id, s.at, "shadow", s.service, s.version, canonical(row))

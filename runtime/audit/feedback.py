"""Labelled feedback: the true outcome of a prediction, sent later by the caller, joined to the
prediction's audit row, and what it says about each model version over a rolling window.

A label names a request id and gives one outcome per row of that request (a number, or a list for a
batch). It is attributed to the prediction's time, not its own: a label that arrives hours late
counts in the window the prediction fell in. Each request id takes one label: the same label again
is a duplicate (accepted, nothing changes); a different one is a conflict (the first is kept and the
caller told); an id with no prediction row is unknown (told, not stored: the row may not be written
yet, a fraction of a second after the answer; send it again). What is stored per row is the
prediction's score (the positive class's probability, for two classes), its class and the label,
so that the window's figures need no join.

Per version over the window (by prediction time): predictions, labelled predictions (coverage), the
accuracy of the predicted class, and ROC AUC of the score when the labels are 0/1 and both occur
(Mann-Whitney U over the number of pairs).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from scipy.stats import mannwhitneyu

from .store import AuditStore

Outcome = float | int | bool
Pair = tuple[float | None, float | None, float]
"""One row's (score, predicted class, label); ``None`` where the row's outputs were not kept."""
LabelledRows = dict[tuple[str, str], list[tuple[float, float | None, float | None, float]]]
"""Per (service, version): labelled rows as ``(predicted_at, score, predicted class, label)``."""


@dataclass(frozen=True, slots=True)
class Label:
    request_id: str
    outcome: Outcome | Sequence[Outcome]


@dataclass
class Received:
    """What became of each label sent."""

    accepted: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    """Ids whose label count is not the prediction's row count."""
    delays_s: list[float] = field(default_factory=list)
    """For each accepted label: how long after its prediction it came."""


@dataclass(frozen=True, slots=True)
class Performance:
    """One version's figures over the window."""

    service: str
    version: str
    predictions: int
    labelled: int
    accuracy: float | None
    roc_auc: float | None
    rows: int
    """Labelled rows the figures come from."""

    @property
    def coverage(self) -> float:
        return self.labelled / self.predictions if self.predictions else 0.0


def pairs_of(row: Mapping[str, Any], labels: Sequence[float]) -> list[Pair]:
    """Each row's (score, predicted class, label) from the prediction's kept outputs."""
    outputs = row.get("outputs") or {}
    probabilities = outputs.get("probabilities")
    classes = outputs.get("label")
    found: list[Pair] = []
    for index, label in enumerate(labels):
        score = predicted = None
        if probabilities is not None:
            p = probabilities[index]
            score = float(p[1]) if len(p) == 2 else None
            predicted = float(max(range(len(p)), key=p.__getitem__))
        if classes is not None:
            predicted = float(classes[index])
        found.append((score, predicted, float(label)))
    return found


def roc_auc(pairs: Sequence[Pair]) -> float | None:
    scored = [(s, y) for s, _, y in pairs if s is not None]
    positives = [s for s, y in scored if y == 1.0]
    negatives = [s for s, y in scored if y == 0.0]
    if not positives or not negatives or len(positives) + len(negatives) != len(scored):
        return None
    u = mannwhitneyu(positives, negatives, alternative="two-sided").statistic
    return float(u) / (len(positives) * len(negatives))


class Feedback:
    def __init__(self, store: AuditStore, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self._clock = clock

    def record(self, labels: Sequence[Label]) -> Received:
        """Store ``labels`` in one transaction; what became of each."""
        received = Received()
        now = self._clock()
        with self.store.transaction() as db:
            for label in labels:
                outcome = label.outcome
                values = [float(v) for v in outcome] if isinstance(outcome, Sequence) else [float(outcome)]
                text = json.dumps(values)
                known = db.execute("SELECT label FROM feedback WHERE request_id = ?", (label.request_id,)).fetchone()
                if known is not None:
                    (received.duplicates if known[0] == text else received.conflicts).append(label.request_id)
                    continue
                row = self.store.prediction(label.request_id, db)
                if row is None:
                    received.unknown.append(label.request_id)
                    continue
                if row.get("rows") != len(values):
                    received.mismatched.append(label.request_id)
                    continue
                db.execute(
                    "INSERT INTO feedback (request_id, label, pairs, service, version, predicted_at, received_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        label.request_id,
                        text,
                        json.dumps(pairs_of(row, values)),
                        row.get("service"),
                        row.get("version"),
                        row["at"],
                        now,
                    ),
                )
                received.accepted.append(label.request_id)
                received.delays_s.append(max(0.0, now - row["at"]))
        return received

    def performance(self, window_s: float) -> list[Performance]:
        """Each version's figures over predictions made in the last ``window_s`` (by prediction time)."""
        since = self._clock() - window_s
        made = self.store.predictions(since)
        with self.store.reading() as db:
            labelled = db.execute(
                "SELECT service, version, pairs FROM feedback WHERE predicted_at >= ?", (since,)
            ).fetchall()
        by_version: dict[tuple[str, str], list[list[Pair]]] = {}
        for service, version, pairs in labelled:
            by_version.setdefault((service, version), []).append([(p[0], p[1], p[2]) for p in json.loads(pairs)])
        found = []
        for (service, version), count in made.items():
            requests = by_version.get((service, version), [])
            rows = [pair for request in requests for pair in request]
            judged = [(p, y) for _, p, y in rows if p is not None]
            accuracy = sum(p == y for p, y in judged) / len(judged) if judged else None
            auc = roc_auc(rows)
            found.append(
                Performance(
                    service,
                    version,
                    int(count),
                    len(requests),
                    accuracy,
                    None if auc is None or math.isnan(auc) else auc,
                    len(rows),
                )
            )
        return found

    def labelled(self, window_s: float) -> LabelledRows:
        """Per (service, version), the labelled rows of predictions made in the last ``window_s``:
        ``(predicted_at, score, predicted class, label)``, in no particular order."""
        since = self._clock() - window_s
        with self.store.reading() as db:
            found = db.execute(
                "SELECT service, version, predicted_at, pairs FROM feedback WHERE predicted_at >= ?", (since,)
            ).fetchall()
        rows: LabelledRows = {}
        for service, version, at, pairs in found:
            rows.setdefault((service, version), []).extend((at, p[0], p[1], p[2]) for p in json.loads(pairs))
        return rows

    def accuracy(self, version: str, since: float, until: float) -> tuple[int, int]:
        """(correct, labelled rows) of ``version``'s predictions made from ``since`` until ``until``."""
        with self.store.reading() as db:
            found = db.execute(
                "SELECT pairs FROM feedback WHERE version = ? AND predicted_at >= ? AND predicted_at < ?",
                (version, since, until),
            ).fetchall()
        judged = [(p, y) for (pairs,) in found for _, p, y in json.loads(pairs) if p is not None]
        return sum(p == y for p, y in judged), len(judged)

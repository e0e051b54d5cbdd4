"""Labelled feedback: idempotent per request id, unknown and mismatched ids reported, attributed to
the prediction's time, and figures per version that match scikit-learn's over the window."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from runtime.audit import AuditStore
from runtime.audit.feedback import Feedback, Label

HOUR = 3600.0


def prediction(request_id: str, at: float, version: str, p: float, rows: int = 1) -> dict[str, Any]:
    return {
        "kind": "prediction",
        "request_id": request_id,
        "at": at,
        "service": "fraud",
        "version": version,
        "rows": rows,
        "outputs": {"label": [int(p >= 0.5)] * rows, "probabilities": [[1 - p, p]] * rows},
    }


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> AuditStore:
    return AuditStore(tmp_path / "audit.sqlite")


def test_labels_are_idempotent_and_every_id_is_accounted_for(store: AuditStore) -> None:
    store.append([prediction("a", 1000.0, "v1", 0.9), prediction("b", 1000.0, "v1", 0.1, rows=2)])
    clock = Clock(1000.0 + 5 * HOUR)
    feedback = Feedback(store, clock)
    first = feedback.record([Label("a", 1), Label("b", [0, 1]), Label("nope", 1), Label("b", [0, 0])])
    assert (first.accepted, first.unknown, first.conflicts) == (["a", "b"], ["nope"], ["b"])
    assert first.delays_s == [5 * HOUR, 5 * HOUR]  # from the prediction, not the label
    again = feedback.record([Label("a", 1), Label("a", 0)])
    assert (again.accepted, again.duplicates, again.conflicts) == ([], ["a"], ["a"])
    late = feedback.record([Label("late", [1, 1])])
    assert late.unknown == ["late"]
    store.append([prediction("late", 2000.0, "v1", 0.5, rows=3)])
    assert feedback.record([Label("late", [1, 1])]).mismatched == ["late"]


def test_figures_are_by_prediction_time_per_version_and_match_sklearn(store: AuditStore) -> None:
    rng = np.random.default_rng(5)
    now = 100 * HOUR
    labels: list[Label] = []
    truth: dict[str, tuple[list[float], list[int]]] = {"v1": ([], []), "v2": ([], [])}
    for i in range(400):
        version = "v1" if i % 2 else "v2"
        y = int(rng.random() < 0.3)
        p = float(np.clip(rng.normal(0.35 + 0.3 * y if version == "v1" else 0.45 + 0.1 * y, 0.2), 0.01, 0.99))
        at = now - (30 * HOUR if i < 40 else rng.uniform(0, 20 * HOUR))  # 40 predictions fall outside the window
        store.append([prediction(f"r{i}", at, version, p)])
        if i % 4 != 3:  # three in four get a label
            labels.append(Label(f"r{i}", y))
            if i >= 40:
                truth[version][0].append(p)
                truth[version][1].append(y)
    feedback = Feedback(store, Clock(now + 48 * HOUR))  # labels arrive two days later
    assert len(feedback.record(labels).accepted) == len(labels)
    feedback = Feedback(store, Clock(now))
    figures = {f.version: f for f in feedback.performance(24 * HOUR)}
    for version, (scores, ys) in truth.items():
        found = figures[version]
        assert found.predictions == 180
        assert found.labelled == len(ys)
        assert found.coverage == pytest.approx(len(ys) / 180)
        assert found.roc_auc == pytest.approx(roc_auc_score(ys, scores))
        assert found.accuracy == pytest.approx(np.mean([(s >= 0.5) == y for s, y in zip(scores, ys, strict=True)]))
    better, worse = figures["v1"].roc_auc, figures["v2"].roc_auc
    assert better is not None
    assert worse is not None
    assert better > worse  # the better model shows as better

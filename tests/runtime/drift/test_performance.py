"""Labelled performance against held-out figures, over many seeded worlds: a calibrated binary
classifier whose labels are drawn from its own scores (so its held-out figures are known), then the
same world with 10 % of the labels flipped. Rates are printed (pytest -s) and bounded."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import mannwhitneyu

from runtime.drift.performance import (
    Calibration,
    Labelled,
    PerformancePolicy,
    Standing,
    auc_stderr,
    estimate_accuracy,
    judge,
    roc_auc,
)

POLICY = PerformancePolicy()
IDENTITY = Calibration((0.0, 1.0), (0.0, 1.0))
"""The world's scores are its probabilities: calibrated by construction."""


def world(rng: np.random.Generator, n: int, flipped: float = 0.0) -> Labelled:
    score = 1 / (1 + np.exp(-rng.normal(-1.0, 2.0, n)))
    label = (rng.random(n) < score).astype(float)
    flip = rng.random(n) < flipped
    label[flip] = 1 - label[flip]
    predicted = (score >= 0.5).astype(float)
    return Labelled(np.arange(n, dtype=float), score, predicted, label)


def held_out() -> dict[str, float]:
    big = world(np.random.default_rng(12345), 400_000)
    return {"roc_auc": roc_auc(big.score, big.label), "accuracy": float((big.predicted == big.label).mean())}


HELD_OUT = held_out()


def test_roc_auc_equals_the_mann_whitney_statistic_with_ties() -> None:
    rng = np.random.default_rng(0)
    score, label = rng.integers(0, 20, 500).astype(float), (rng.random(500) < 0.3).astype(float)
    u = mannwhitneyu(score[label == 1], score[label == 0]).statistic
    assert roc_auc(score, label) == pytest.approx(u / ((label == 1).sum() * (label == 0).sum()))


def test_the_auc_standard_error_matches_the_spread_over_samples() -> None:
    rng = np.random.default_rng(1)
    aucs, counts = [], []
    for _ in range(400):
        w = world(rng, 800)
        aucs.append(roc_auc(w.score, w.label))
        counts.append(int(w.label.sum()))
    expected = auc_stderr(HELD_OUT["roc_auc"], int(np.mean(counts)), 800 - int(np.mean(counts)))
    assert float(np.std(aucs)) == pytest.approx(expected, rel=0.15)


def test_the_same_world_raises_no_alarm_and_flipped_labels_do() -> None:
    runs = 200
    quiet = [judge(world(np.random.default_rng(s), 1000), HELD_OUT, POLICY) for s in range(runs)]
    flipped = [judge(world(np.random.default_rng(10_000 + s), 1000, 0.1), HELD_OUT, POLICY) for s in range(runs)]
    false_alarms = sum(r.standing is Standing.DROPPED for r in quiet) / runs
    detected = sum(r.standing is Standing.DROPPED for r in flipped) / runs
    by_figure = {
        f: sum(c.standing is Standing.DROPPED for r in flipped for c in r.checks if c.figure == f) / runs
        for f in ("roc_auc", "accuracy")
    }
    print(f"\nsame world, {runs} runs of 1,000 labels: performance alarm in {false_alarms:.1%}")
    print(f"10 % of labels flipped, {runs} runs: alarm in {detected:.1%} (per figure {by_figure})")
    assert false_alarms <= 0.01
    assert all(r.standing is Standing.HELD for r in quiet if r.standing is not Standing.DROPPED)
    assert detected >= 0.95


def test_too_few_labels_is_said_as_such_never_as_a_pass() -> None:
    for n in (0, 50, 199):
        report = judge(world(np.random.default_rng(n), n), HELD_OUT, POLICY)
        assert report.standing is Standing.NOT_ENOUGH_LABELS
        assert all(c.observed is None and c.standing is Standing.NOT_ENOUGH_LABELS for c in report.checks)
    # enough rows, but one class too rare for an AUC: that figure waits, the verdict with it
    rng = np.random.default_rng(3)
    w = world(rng, 1000)
    rare = Labelled(w.predicted_at, w.score, np.zeros(1000), np.r_[np.ones(5), np.zeros(995)])
    report = judge(rare, HELD_OUT, POLICY)
    assert {c.figure: c.standing for c in report.checks}["roc_auc"] is Standing.NOT_ENOUGH_LABELS
    assert report.standing is not Standing.HELD
    # no held-out figure at all: nothing to hold to
    assert judge(w, {}, POLICY).standing is Standing.NOT_ENOUGH_LABELS


def test_a_small_significant_drop_is_below_the_floor() -> None:
    # 100,000 labels see a drop of 0.02 in accuracy as significant; 0.02 is under max_drop (0.05)
    rng = np.random.default_rng(4)
    w = world(rng, 100_000, flipped=0.025)
    [auc, accuracy] = judge(w, HELD_OUT, POLICY).checks
    assert accuracy.p_value is not None
    assert accuracy.p_value < 1e-6
    assert accuracy.standing is Standing.HELD
    assert auc.standing is Standing.HELD


def test_the_calibrated_estimate_tracks_accuracy_and_is_flagged_when_the_relation_moves() -> None:
    runs = 200
    misses, flagged, flagged_flipped = [], 0, 0
    for s in range(runs):
        w = world(np.random.default_rng(20_000 + s), 1000)
        found = estimate_accuracy(w.score, IDENTITY)
        assert found is not None
        estimate, stderr = found
        misses.append(abs(float((w.predicted == w.label).mean()) - estimate) / stderr)
        flagged += judge(w, HELD_OUT, POLICY, IDENTITY).estimate_unreliable
        moved = world(np.random.default_rng(30_000 + s), 1000, flipped=0.1)
        flagged_flipped += judge(moved, HELD_OUT, POLICY, IDENTITY).estimate_unreliable
    print(
        f"\ncalibrated estimate, {runs} runs: median miss {np.median(misses):.2f} standard errors; "
        f"flagged unreliable {flagged / runs:.1%}; with 10 % of labels flipped {flagged_flipped / runs:.1%}"
    )
    assert np.median(misses) < 1.0
    assert flagged / runs <= 0.02
    assert flagged_flipped / runs >= 0.9


def test_the_error_stream_change_is_found_after_it_happens() -> None:
    found = []
    for s in range(50):
        rng = np.random.default_rng(40_000 + s)
        w = world(rng, 4000)
        label = w.label.copy()
        late = np.arange(4000) >= 2000
        flip = late & (rng.random(4000) < 0.3)
        label[flip] = 1 - label[flip]
        changed = judge(Labelled(w.predicted_at, w.score, w.predicted, label), HELD_OUT, POLICY).error_change_at
        found.append(changed)
    quiet = [judge(world(np.random.default_rng(50_000 + s), 4000), HELD_OUT, POLICY).error_change_at for s in range(50)]
    delays = [c - 2000 for c in found if c is not None]
    print(
        f"\nerror rate up at row 2,000 of 4,000, 50 runs: change found in {len(delays) / 50:.0%}, "
        f"median {np.median(delays):.0f} rows later; stationary: {sum(q is not None for q in quiet) / 50:.0%}"
    )
    assert len(delays) >= 48
    assert min(delays) >= 0
    assert sum(q is not None for q in quiet) <= 2


def test_labelled_rows_are_put_in_prediction_order() -> None:
    rows = Labelled.of([(3.0, 0.9, 1.0, 1.0), (1.0, None, None, 0.0), (2.0, 0.2, 0.0, 1.0)])
    assert rows.predicted_at.tolist() == [1.0, 2.0, 3.0]
    assert np.isnan(rows.score[0])
    assert rows.label.tolist() == [0.0, 1.0, 1.0]


def test_a_calibration_reads_between_its_points_and_is_checked() -> None:
    calibration = Calibration.of({"scores": [0.0, 0.5, 1.0], "rates": [0.0, 0.2, 1.0]})
    assert calibration is not None
    assert calibration.right(np.array([0.25, 0.75])) == pytest.approx([0.9, 0.6])
    assert Calibration.of(None) is None
    with pytest.raises(ValueError, match="increasing"):
        Calibration((0.5, 0.1), (0.0, 1.0))

"""Drift on the fraud model's real input columns, over many seeded windows: stationary traffic
raises no confirmed alarm; each kind of shift is confirmed within two windows, naming the feature
that moved. The rates are printed (pytest -s) and bounded by the assertions."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import numpy as np
import pytest

from models import fraud
from runtime import RecordSchema, Validator, columns_of
from runtime.drift import DriftMonitor, DriftPolicy, Feature, FeatureKind, Reference, WindowReport

WINDOW = 1000
RUNS = 25
FEATURES = tuple(
    Feature(c.name, FeatureKind.CATEGORICAL if c.kind in ("category", "boolean") else FeatureKind.NUMERIC)
    for c in columns_of(fraud.Transaction)
)
INDEX = {f.name: i for i, f in enumerate(FEATURES)}


def encoded(n: int, seed: int) -> np.ndarray:
    records, _ = fraud.generate(n, seed=seed)
    schema = RecordSchema(fraud.Transaction, input_name="input", max_rows=n)
    return Validator(schema, ()).validate(records).inputs["input"].astype(np.float64)


@cache
def reference() -> Reference:
    return Reference(encoded(2000, seed=1), FEATURES)  # what models/store.py keeps: 2,000 training rows


@cache
def traffic() -> np.ndarray:
    """Live traffic from the same process as the reference (other seeds)."""
    return encoded(40_000, seed=2)


def monitor(reports: list[WindowReport]) -> DriftMonitor:
    return DriftMonitor(
        reference(),
        DriftPolicy(window_rows=WINDOW, min_rows=500),
        submit=lambda judge: judge(),
        on_report=reports.append,
    )


def windows(rng: np.random.Generator, count: int) -> list[np.ndarray]:
    pool = traffic()
    return [pool[rng.integers(0, len(pool), size=WINDOW)] for _ in range(count)]


def test_stationary_traffic_raises_no_confirmed_alarm_over_500_windows(capsys: pytest.CaptureFixture[str]) -> None:
    reports: list[WindowReport] = []
    watcher = monitor(reports)
    for window in windows(np.random.default_rng(7), 500):
        watcher.add(window)
    drifted = sum(bool(r.drifted) for r in reports)
    confirmed = sum(bool(r.confirmed) for r in reports)
    with capsys.disabled():
        print(f"\ndrift, stationary, 500 windows of {WINDOW}: a feature drifted in {drifted}, confirmed in {confirmed}")
    assert len(reports) == 500
    assert all(r.decided for r in reports)
    assert confirmed == 0
    assert drifted <= 10  # a window's false discovery rate is 1 %, its distance must pass chance too


def shifted_mean(w: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    w = w.copy()
    w[:, INDEX["hour"]] += 0.25 * reference().scale[INDEX["hour"]]
    return w


def widened(w: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    w = w.copy()
    column = w[:, INDEX["hour"]]
    w[:, INDEX["hour"]] = column.mean() + (column - column.mean()) * np.sqrt(1.5)
    return w


def swapped(w: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Ten points of the most common currency (EUR, 55 %) go to the second (USD, 20 %)."""
    w = w.copy()
    column = w[:, INDEX["currency"]]
    eur = np.flatnonzero(column == 0)
    column[rng.choice(eur, size=int(0.10 * len(w)), replace=False)] = 1
    return w


def new_category(w: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """5 % of rows in a merchant category the reference never saw."""
    w = w.copy()
    w[rng.choice(len(w), size=int(0.05 * len(w)), replace=False), INDEX["merchant_category"]] = 8
    return w


@pytest.mark.parametrize(
    ("shift", "feature", "move"),
    [
        ("mean +0.25 sd", "hour", shifted_mean),
        ("variance x1.5", "hour", widened),
        ("category 55/20 -> 45/30", "currency", swapped),
        ("5 % new category", "merchant_category", new_category),
    ],
)
def test_a_shift_is_confirmed_within_two_windows_naming_its_feature(
    shift: str, feature: str, move: Callable[[np.ndarray, np.random.Generator], np.ndarray],
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    delays, others = [], 0
    for run in range(RUNS):
        rng = np.random.default_rng([11, run])
        reports: list[WindowReport] = []
        watcher = monitor(reports)
        for window in windows(rng, 3):
            watcher.add(move(window, rng))
        confirmed_at = [i + 1 for i, r in enumerate(reports) if feature in r.confirmed]
        delays.append(confirmed_at[0] if confirmed_at else None)
        others += sum(len(set(r.confirmed) - {feature}) for r in reports)
    detected = [d for d in delays if d is not None and d <= 2]
    rate = len(detected) / RUNS
    with capsys.disabled():
        print(
            f"\ndrift, {shift} on {feature}, {RUNS} runs: confirmed within two windows in {rate:.0%} "
            f"(windows to confirm: {sorted(d for d in delays if d is not None)}), other features confirmed {others}"
        )
    assert rate >= 0.9
    assert others == 0


def test_a_new_category_raises_the_unseen_alarm_in_its_first_window() -> None:
    reports: list[WindowReport] = []
    watcher = monitor(reports)
    rng = np.random.default_rng(3)
    [window] = windows(rng, 1)
    watcher.add(new_category(window, rng))
    [report] = reports
    assert report.unseen == ("merchant_category",)
    [found] = [f for f in report.features if f.name == "merchant_category"]
    assert (found.direction, round(found.unseen_share, 3)) == ("unseen", 0.05)


def test_a_window_closed_by_time_with_too_few_rows_decides_nothing() -> None:
    now = [0.0]
    reports: list[WindowReport] = []
    watcher = DriftMonitor(
        reference(),
        DriftPolicy(window_rows=WINDOW, window_s=60, min_rows=500),
        clock=lambda: now[0],
        submit=lambda judge: judge(),
        on_report=reports.append,
    )
    watcher.add(traffic()[:100])
    watcher.tick()
    assert reports == []  # not yet: neither full nor due
    now[0] = 61
    watcher.tick()
    [report] = reports
    assert (report.rows, report.decided, report.features) == (100, False, ())


def test_rows_fill_windows_across_requests_and_a_large_request_spans_windows() -> None:
    reports: list[WindowReport] = []
    watcher = monitor(reports)
    watcher.add(traffic()[:600])
    watcher.add(traffic()[600:2700])  # closes two windows, leaves 700 rows open
    assert [r.rows for r in reports] == [WINDOW, WINDOW]
    assert watcher.windows == 2


def test_the_policy_checks_its_values() -> None:
    with pytest.raises(ValueError, match="min_rows"):
        DriftPolicy(window_rows=100, min_rows=200)
    with pytest.raises(ValueError, match="alpha"):
        DriftPolicy(alpha=0)


def test_outputs_given_as_arrays_side_by_side_fill_the_window_as_stacked_rows() -> None:
    rng = np.random.default_rng(4)
    features = (
        Feature("label", FeatureKind.CATEGORICAL),
        Feature("p[0]", FeatureKind.NUMERIC),
        Feature("p[1]", FeatureKind.NUMERIC),
    )
    label, probabilities = rng.integers(0, 2, 2500), rng.random((2500, 2))
    sample = np.column_stack([label[:500], probabilities[:500]])
    windows: list[np.ndarray] = []

    class Kept(DriftMonitor):
        """Keeps each closed window instead of judging it."""

        def _judge(self, window: np.ndarray, closed_at: float) -> None:
            windows.append(window)

    policy = DriftPolicy(window_rows=1000, min_rows=500)
    watcher = Kept(Reference(sample, features), policy, submit=lambda judge: judge())
    for start in range(0, 2300, 7):  # requests of 7 rows: some span two windows
        stop = min(start + 7, 2300)
        watcher.add_columns((label[start:stop], probabilities[start:stop]), stop - start)
    watcher.add_columns((label[2300:], probabilities[2300:]), 200)  # ends a window, starts the next
    watcher.add_columns((label[:2200], probabilities[:2200]), 2200)  # ends one window, fills one, opens one
    assert [len(w) for w in windows] == [1000, 1000, 1000, 1000]
    stacked = np.column_stack([label, probabilities])
    np.testing.assert_array_equal(np.vstack(windows), np.vstack([stacked, stacked])[:4000])
    assert watcher._filled == 700  # the rest waits in the open window
    assert all(w.dtype == np.float64 for w in windows)

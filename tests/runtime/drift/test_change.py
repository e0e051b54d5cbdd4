"""ADWIN on a monitor's score column, window by window, over seeded runs: a stationary score raises
few changes; a mean moved by a quarter of its spread is seen within the window it happens in."""

from __future__ import annotations

import numpy as np

from runtime.drift import DriftMonitor, DriftPolicy, Feature, FeatureKind, Reference
from runtime.drift.change import ScoreChange, error_change


def scores(rng: np.random.Generator, n: int, mean: float = 0.3) -> np.ndarray:
    return np.clip(rng.normal(mean, 0.1, (n, 1)), 0, 1)


def test_a_stationary_score_rarely_changes_and_a_moved_one_does_within_its_window() -> None:
    runs, windows = 40, 20
    quiet = first = second = 0.0
    for seed in range(runs):
        rng = np.random.default_rng(seed)
        change = ScoreChange(0)
        quiet += sum(change(scores(rng, 1000))["score_change"] for _ in range(windows))
        later = ScoreChange(0)
        for _ in range(5):
            later(scores(rng, 1000))
        seen = later(scores(rng, 1000, mean=0.325))["score_change"]
        first += seen
        second += seen or later(scores(rng, 1000, mean=0.325))["score_change"]
    print(
        f"\nADWIN on the score: {quiet / (runs * windows):.2%} of stationary windows of 1,000 show a change; "
        f"a mean moved by 0.25 standard deviations is seen in its window in {first / runs:.0%} of {runs} runs, "
        f"by the next in {second / runs:.0%}"
    )
    assert quiet / (runs * windows) <= 0.01
    assert first / runs >= 0.7
    assert second / runs >= 0.95


def test_the_summary_reaches_each_window_report_in_order() -> None:
    rng = np.random.default_rng(7)
    reference = Reference(scores(rng, 2000), [Feature("probabilities[1]", FeatureKind.NUMERIC)])
    change = ScoreChange(0)
    monitor = DriftMonitor(
        reference, DriftPolicy(window_rows=500, min_rows=100), submit=lambda f: f(), summarise=change
    )
    monitor.add(scores(rng, 500))
    assert monitor.latest is not None
    assert monitor.latest.summary["score_change"] == 0.0
    assert abs(monitor.latest.summary["score_mean"] - 0.3) < 0.02
    monitor.add(scores(rng, 500, mean=0.6))
    assert monitor.latest.summary["score_change"] == 1.0
    assert change.changes == 1


def test_the_error_stream_skips_unknown_rows() -> None:
    stream = [(float(i), float("nan") if i % 3 == 0 else float(i >= 300)) for i in range(600)]
    found = error_change(stream)
    assert found is not None
    assert 300 <= found < 400
    assert error_change([(float(i), 0.0) for i in range(1000)]) is None

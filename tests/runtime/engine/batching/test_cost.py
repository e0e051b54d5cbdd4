from __future__ import annotations

import numpy as np
import pytest

from runtime import LatencyModel


def test_fits_a_line_through_noisy_batches() -> None:
    rng = np.random.default_rng(0)
    model = LatencyModel(decay=0.99)
    for _ in range(500):
        rows = int(rng.integers(1, 65))
        model.observe(rows, 2e-5 * rows + 1e-3 + float(rng.normal(0, 1e-5)))
    assert model.a == pytest.approx(2e-5, rel=0.05)
    assert model.b == pytest.approx(1e-3, rel=0.05)
    assert model.predict(32) == pytest.approx(2e-5 * 32 + 1e-3, rel=0.02)
    assert 0 < model.resid_std < 3e-5
    assert model.predict(32, margin_std=2) > model.predict(32)


def test_follows_a_machine_that_slows_down() -> None:
    model = LatencyModel(decay=0.9)
    for rows in (1, 64) * 50:
        model.observe(rows, 1e-5 * rows + 1e-4)
    for rows in (1, 64) * 50:
        model.observe(rows, 4e-5 * rows + 1e-4)
    assert model.a == pytest.approx(4e-5, rel=0.05)


def test_one_batch_size_only_moves_the_intercept_and_keeps_the_slope() -> None:
    model = LatencyModel(prior_a=1e-4, prior_b=0.0)
    for _ in range(20):
        model.observe(8, 0.01)
    assert model.a == pytest.approx(1e-4)
    assert model.predict(8) == pytest.approx(0.01)


def test_slope_is_never_negative() -> None:
    model = LatencyModel()
    model.observe(1, 0.01)
    model.observe(64, 0.001)
    assert model.a == 0.0
    assert model.b >= 0.0


def test_decay_must_be_in_range() -> None:
    with pytest.raises(ValueError, match="decay must be within"):
        LatencyModel(decay=1.0)


def test_stalls_on_30_percent_of_batches_barely_move_the_prediction() -> None:
    rng = np.random.default_rng(1)
    model = LatencyModel()
    model.observe(1, 1e-3)
    model.observe(64, 2e-3)
    for _ in range(500):
        stalled = rng.random() < 0.3
        model.observe(8, 0.6 if stalled else 1e-3)  # 600 ms stalls on a 1 ms model
    assert model.predict(8) < 1.75 * 1.2e-3 * 1.2  # unclipped, the mean would be ~180 ms


def test_a_lasting_slowdown_is_still_followed() -> None:
    model = LatencyModel()
    model.observe(1, 1e-3)
    model.observe(64, 1e-3)
    for _ in range(300):
        model.observe(1, 0.02)  # 20x slower from now on
    assert model.predict(1) == pytest.approx(0.02, rel=0.05)


def test_clip_ratio_must_exceed_one() -> None:
    with pytest.raises(ValueError, match="clip_ratio"):
        LatencyModel(clip_ratio=1.0)

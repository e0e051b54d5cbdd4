from __future__ import annotations

import time

import numpy as np
import pytest

from runtime import DrillSettings, FaultInjector, InjectedFault


def test_off_by_default() -> None:
    assert FaultInjector.from_settings(DrillSettings()) is None


def test_fails_about_the_configured_share_of_rows_and_always_the_same_rows() -> None:
    faults = FaultInjector(error_rate=0.3, seed=1)
    rows = np.random.default_rng(0).normal(size=(2000, 4)).astype(np.float32)
    failed = []
    for i in range(len(rows)):
        try:
            faults.before_run({"x": rows[i : i + 1]})
            failed.append(False)
        except InjectedFault:
            failed.append(True)
    assert 0.26 < sum(failed) / len(rows) < 0.34
    batch = rows[:8]
    expect_failure = any(failed[:8])
    try:
        faults.before_run({"x": batch})
        assert not expect_failure
    except InjectedFault:
        assert expect_failure


def test_an_error_rate_of_one_fails_every_call() -> None:
    with pytest.raises(InjectedFault):
        FaultInjector(error_rate=1.0).before_run({"x": np.zeros((1, 2), np.float32)})


def test_slow_calls_sleep() -> None:
    faults = FaultInjector.from_settings(DrillSettings(fault_slow_rate=1.0, fault_slow_ms=30))
    assert faults is not None
    started = time.perf_counter()
    faults.before_run({"x": np.zeros((1, 2), np.float32)})
    assert time.perf_counter() - started >= 0.03


def test_rates_are_checked() -> None:
    with pytest.raises(ValueError, match="error_rate must be within"):
        FaultInjector(error_rate=1.5)

from __future__ import annotations

import time

import pytest

from runtime import FaultInjector, InjectedFault, Settings


def test_off_by_default() -> None:
    assert FaultInjector.from_settings(Settings()) is None


def test_fails_about_the_configured_share_of_calls() -> None:
    faults = FaultInjector(error_rate=0.3, seed=1)
    failed = 0
    for _ in range(2000):
        try:
            faults.before_run()
        except InjectedFault:
            failed += 1
    assert 0.25 < failed / 2000 < 0.35


def test_slow_calls_sleep() -> None:
    faults = FaultInjector.from_settings(Settings(fault_slow_rate=1.0, fault_slow_ms=30))
    assert faults is not None
    started = time.perf_counter()
    faults.before_run()
    assert time.perf_counter() - started >= 0.03


def test_rates_are_checked() -> None:
    with pytest.raises(ValueError, match="error_rate must be within"):
        FaultInjector(error_rate=1.5)

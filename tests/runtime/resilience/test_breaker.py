from __future__ import annotations

import pytest

from runtime import BreakerState, CircuitBreaker


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(clock: FakeClock, changes: list[tuple[str, BreakerState]] | None = None) -> CircuitBreaker:
    return CircuitBreaker(
        "primary",
        failure_threshold=3,
        recovery_s=10.0,
        clock=clock,
        on_change=(lambda name, state: changes.append((name, state))) if changes is not None else None,
    )


def test_opens_after_the_configured_consecutive_failures() -> None:
    clock = FakeClock()
    breaker = make(clock)
    for _ in range(2):
        assert breaker.allow()
        breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED
    breaker.record_success()  # a success resets the count
    for _ in range(3):
        assert breaker.allow()
        breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow()


def test_half_open_lets_exactly_one_probe_through_and_closes_on_success() -> None:
    clock = FakeClock()
    changes: list[tuple[str, BreakerState]] = []
    breaker = make(clock, changes)
    for _ in range(3):
        breaker.record_failure()
    clock.now += 9.9
    assert not breaker.allow()
    clock.now += 0.2
    assert breaker.allow()  # the probe
    assert breaker.state is BreakerState.HALF_OPEN
    assert not breaker.allow()  # nobody else while it is out
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allow()
    assert changes == [
        ("primary", BreakerState.OPEN),
        ("primary", BreakerState.HALF_OPEN),
        ("primary", BreakerState.CLOSED),
    ]


def test_a_failed_probe_reopens_and_restarts_the_wait() -> None:
    clock = FakeClock()
    breaker = make(clock)
    for _ in range(3):
        breaker.record_failure()
    clock.now += 10
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    clock.now += 5
    assert not breaker.allow()
    clock.now += 5
    assert breaker.allow()


def test_an_ignored_probe_frees_the_slot_for_another() -> None:
    clock = FakeClock()
    breaker = make(clock)
    for _ in range(3):
        breaker.record_failure()
    clock.now += 10
    assert breaker.allow()
    breaker.record_ignored()
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow()


def test_reset_closes_an_open_breaker() -> None:
    clock = FakeClock()
    breaker = make(clock)
    for _ in range(3):
        breaker.record_failure()
    breaker.reset()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allow()


def test_bad_thresholds_are_refused() -> None:
    with pytest.raises(ValueError, match="failure_threshold must be an integer >= 1, got 0"):
        CircuitBreaker("x", failure_threshold=0, recovery_s=1)
    with pytest.raises(ValueError, match="recovery_s must be > 0, got 0"):
        CircuitBreaker("x", failure_threshold=1, recovery_s=0)

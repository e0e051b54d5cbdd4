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
        failure_rate=0.5,
        window=4,
        min_calls=4,
        recovery_s=10.0,
        clock=clock,
        on_change=(lambda name, state: changes.append((name, state))) if changes is not None else None,
    )


def test_opens_once_the_window_holds_enough_calls_and_failures() -> None:
    clock = FakeClock()
    breaker = make(clock)
    for _ in range(3):
        assert breaker.allow()
        breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED  # 3 calls < min_calls
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow()


def test_a_failure_rate_below_the_threshold_never_opens() -> None:
    breaker = CircuitBreaker("p", failure_rate=0.5, window=30, min_calls=10, recovery_s=1.0, clock=FakeClock())
    for _ in range(40):  # one failure in three: 33 % < 50 %
        breaker.record_failure()
        breaker.record_success()
        breaker.record_success()
    assert breaker.state is BreakerState.CLOSED


def test_old_outcomes_leave_the_window() -> None:
    breaker = make(FakeClock())
    for outcome in (True, True, False, False, False, False, True):
        breaker.record_failure() if outcome else breaker.record_success()
    assert breaker.state is BreakerState.CLOSED  # window [F, F, F, T]... only 1 of the last 4 failed
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN  # 2 of the last 4


def test_half_open_lets_exactly_one_probe_through_and_closes_on_success() -> None:
    clock = FakeClock()
    changes: list[tuple[str, BreakerState]] = []
    breaker = make(clock, changes)
    for _ in range(4):
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
    for _ in range(4):
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
    for _ in range(4):
        breaker.record_failure()
    clock.now += 10
    assert breaker.allow()
    breaker.record_ignored()
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow()


def test_reset_closes_an_open_breaker() -> None:
    clock = FakeClock()
    breaker = make(clock)
    for _ in range(4):
        breaker.record_failure()
    breaker.reset()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allow()


def test_bad_thresholds_are_refused() -> None:
    with pytest.raises(ValueError, match=r"failure_rate must be within \(0, 1\], got 0"):
        CircuitBreaker("x", failure_rate=0, window=4, min_calls=2, recovery_s=1)
    with pytest.raises(ValueError, match=r"min_calls must be an integer within \[1, window=4\], got 5"):
        CircuitBreaker("x", failure_rate=0.5, window=4, min_calls=5, recovery_s=1)
    with pytest.raises(ValueError, match="recovery_s must be > 0, got 0"):
        CircuitBreaker("x", failure_rate=0.5, window=4, min_calls=2, recovery_s=0)

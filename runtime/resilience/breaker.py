"""A circuit breaker per model stage: a three-state machine on a monotonic clock.

    closed --(failure_threshold consecutive failures)--> open
    open --(recovery_s elapsed; the next call is the single probe)--> half_open
    half_open --(probe succeeds)--> closed
    half_open --(probe fails)--> open (the recovery wait starts again)

Every call that :meth:`allow` let through must end in exactly one of :meth:`record_success`,
:meth:`record_failure` or :meth:`record_ignored` (a call that ended for reasons that say nothing
about the model's health, such as shedding or cancellation: it frees the probe slot).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import Enum


class BreakerState(Enum):
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int,
        recovery_s: float,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[str, BreakerState], None] | None = None,
    ) -> None:
        if not isinstance(failure_threshold, int) or failure_threshold < 1:
            raise ValueError(f"failure_threshold must be an integer >= 1, got {failure_threshold!r}")
        if recovery_s <= 0:
            raise ValueError(f"recovery_s must be > 0, got {recovery_s!r}")
        self.name = name
        self.failure_threshold = failure_threshold
        self.recovery_s = recovery_s
        self._clock = clock
        self._on_change = on_change
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probing = False

    @property
    def state(self) -> BreakerState:
        return self._state

    def allow(self) -> bool:
        """Whether a call may go to the model now."""
        if self._state is BreakerState.CLOSED:
            return True
        if self._state is BreakerState.OPEN:
            if self._clock() - self._opened_at < self.recovery_s:
                return False
            self._set(BreakerState.HALF_OPEN)
        if self._probing:
            return False
        self._probing = True
        return True

    def record_success(self) -> None:
        self._failures = 0
        if self._state is BreakerState.HALF_OPEN:
            self._probing = False
            self._set(BreakerState.CLOSED)

    def record_failure(self) -> None:
        if self._state is BreakerState.HALF_OPEN:
            self._probing = False
            self._open()
        elif self._state is BreakerState.CLOSED:
            self._failures += 1
            if self._failures >= self.failure_threshold:
                self._open()

    def record_ignored(self) -> None:
        if self._state is BreakerState.HALF_OPEN:
            self._probing = False

    def reset(self) -> None:
        """Close the breaker by hand (an operator's action)."""
        self._failures = 0
        self._probing = False
        self._set(BreakerState.CLOSED)

    def _open(self) -> None:
        self._opened_at = self._clock()
        self._failures = 0
        self._set(BreakerState.OPEN)

    def _set(self, state: BreakerState) -> None:
        if state is not self._state:
            self._state = state
            if self._on_change is not None:
                self._on_change(self.name, state)

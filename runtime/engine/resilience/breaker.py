"""A circuit breaker per model stage: a three-state machine on a monotonic clock.

    closed --(failure share >= failure_rate over the last `window` calls, at least min_calls)--> open
    open --(recovery_s elapsed; the next call is the single probe)--> half_open
    half_open --(probe succeeds)--> closed
    half_open --(probe fails)--> open (the recovery wait starts again)

Every call that :meth:`allow` let through must end in exactly one of :meth:`record_success`,
:meth:`record_failure` or :meth:`record_ignored` (a call that ended for reasons that say nothing
about the model's health, such as shedding or cancellation: it frees the probe slot).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from ...core.codes import BreakerState


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        *,
        failure_rate: float,
        window: int,
        min_calls: int,
        recovery_s: float,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[str, BreakerState], None] | None = None,
    ) -> None:
        """Opens when, among the last ``window`` calls (and at least ``min_calls`` of them), the
        share of failures reaches ``failure_rate``. A rate rather than a run of consecutive
        failures: a model that fails on a few poisoned rows keeps serving the others, while a
        model that fails on everything is cut off within ``min_calls`` calls."""
        if not 0.0 < failure_rate <= 1.0:
            raise ValueError(f"failure_rate must be within (0, 1], got {failure_rate!r}")
        if not isinstance(window, int) or window < 1:
            raise ValueError(f"window must be an integer >= 1, got {window!r}")
        if not isinstance(min_calls, int) or not 1 <= min_calls <= window:
            raise ValueError(f"min_calls must be an integer within [1, window={window}], got {min_calls!r}")
        if recovery_s <= 0:
            raise ValueError(f"recovery_s must be > 0, got {recovery_s!r}")
        self.name = name
        self.failure_rate = failure_rate
        self.min_calls = min_calls
        self.recovery_s = recovery_s
        self._clock = clock
        self._on_change = on_change
        self._state = BreakerState.CLOSED
        self._outcomes: deque[bool] = deque(maxlen=window)  # True = failure
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
        if self._state is BreakerState.HALF_OPEN:
            self._probing = False
            self._set(BreakerState.CLOSED)
        elif self._state is BreakerState.CLOSED:
            self._record(False)

    def record_failure(self) -> None:
        if self._state is BreakerState.HALF_OPEN:
            self._probing = False
            self._open()
        elif self._state is BreakerState.CLOSED:
            self._record(True)
            calls = len(self._outcomes)
            if calls >= self.min_calls and self._failures >= self.failure_rate * calls:
                self._open()

    def _record(self, failed: bool) -> None:
        outcomes = self._outcomes
        if len(outcomes) == outcomes.maxlen and outcomes[0]:
            self._failures -= 1
        outcomes.append(failed)
        self._failures += failed

    def record_ignored(self) -> None:
        if self._state is BreakerState.HALF_OPEN:
            self._probing = False

    def reset(self) -> None:
        """Close the breaker by hand (an operator's action)."""
        self._probing = False
        self._forget()
        self._set(BreakerState.CLOSED)

    def _open(self) -> None:
        self._opened_at = self._clock()
        self._forget()  # after recovery the window starts empty
        self._set(BreakerState.OPEN)

    def _forget(self) -> None:
        self._outcomes.clear()
        self._failures = 0

    def _set(self, state: BreakerState) -> None:
        if state is not self._state:
            self._state = state
            if self._on_change is not None:
                self._on_change(self.name, state)

"""Fault injection for drills: make a model's runs fail or slow down on a chosen share of calls.

Off unless configured (``BALLAST_FAULT_*``). The fault happens inside the worker thread, just
before onnxruntime runs, so the rest of the runtime sees exactly what a real failure looks like.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

from .settings import Settings


class InjectedFault(RuntimeError):
    """Raised in place of a model run by the fault injector."""


@dataclass(slots=True)
class FaultInjector:
    error_rate: float = 0.0
    slow_rate: float = 0.0
    slow_s: float = 0.0
    seed: int | None = None
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("error_rate", "slow_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {value!r}")
        if self.slow_s < 0:
            raise ValueError(f"slow_s must be >= 0, got {self.slow_s!r}")
        self._rng = random.Random(self.seed)

    @classmethod
    def from_settings(cls, settings: Settings) -> FaultInjector | None:
        """The injector the settings ask for, or ``None`` when fault injection is off."""
        if settings.fault_error_rate == 0 and settings.fault_slow_rate == 0:
            return None
        return cls(
            error_rate=settings.fault_error_rate,
            slow_rate=settings.fault_slow_rate,
            slow_s=settings.fault_slow_ms / 1000,
            seed=settings.fault_seed,
        )

    def before_run(self) -> None:
        if self.slow_rate and self._rng.random() < self.slow_rate:
            time.sleep(self.slow_s)
        if self.error_rate and self._rng.random() < self.error_rate:
            raise InjectedFault("injected fault")

"""Fault injection for drills: make a model fail on a chosen share of requests, or slow down on a
chosen share of calls.

Off unless configured (``BALLAST_FAULT_*``). The fault happens inside the worker thread, just
before onnxruntime runs, so the rest of the runtime sees exactly what a real failure looks like.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from ..core.settings import DrillSettings


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
    def unless_off(cls, error_rate: float, slow_rate: float, slow_s: float, seed: int | None) -> FaultInjector | None:
        """An injector, or ``None`` when both rates are 0 (fault injection off)."""
        if error_rate == 0 and slow_rate == 0:
            return None
        return cls(error_rate, slow_rate, slow_s, seed)

    @classmethod
    def from_settings(cls, settings: DrillSettings) -> FaultInjector | None:
        """The injector the ``BALLAST_FAULT_*`` settings ask for, or ``None``."""
        return cls.unless_off(
            settings.fault_error_rate, settings.fault_slow_rate, settings.fault_slow_ms / 1000, settings.fault_seed
        )

    def describe(self) -> dict[str, float | int | None]:
        return {
            "error_rate": self.error_rate,
            "slow_rate": self.slow_rate,
            "slow_ms": self.slow_s * 1000,
            "seed": self.seed,
        }

    def before_run(self, inputs: Mapping[str, np.ndarray]) -> None:
        """Called in the worker thread before each run. Slowness is drawn per call; errors per
        *row*: a row fails when a hash of its values (and the seed) falls below ``error_rate``.
        The same row fails again when a batch is bisected, so exactly the poisoned rows fail,
        and the share of failed requests is ``error_rate`` whatever the batch sizes."""
        if self.slow_rate and self._rng.random() < self.slow_rate:
            time.sleep(self.slow_s)
        if self.error_rate >= 1.0 or (self.error_rate and self._poisoned(inputs)):
            raise InjectedFault("injected fault")

    def _poisoned(self, inputs: Mapping[str, np.ndarray]) -> bool:
        arrays = [np.ascontiguousarray(inputs[name]) for name in sorted(inputs)]
        salt = str(self.seed).encode()
        for row in range(len(arrays[0])):
            digest = hashlib.blake2b(salt, digest_size=8)
            for array in arrays:
                digest.update(array[row].tobytes())
            if int.from_bytes(digest.digest(), "big") / 2.0**64 < self.error_rate:
                return True
        return False

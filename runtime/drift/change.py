"""Change detection on a stream, by ADWIN (river): a fast signal beside the windows' tests.

ADWIN keeps a window of the stream that grows while its mean stays put and drops its older part
when two parts of it differ by more than chance allows (at confidence ``delta``). It needs no
reference and no window size, and it sees an abrupt change within a few hundred values: sooner than
a drift is confirmed (two full windows). It sees a change, not a distance from the reference: a
signal to look, which the windows' tests then qualify.

* :class:`ScoreChange` reads a prediction column (a binary classifier's score) row by row as each
  window closes, and says whether its mean changed within that window.
* :func:`error_change` reads labelled rows' errors in prediction order: when the error rate changed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np
from river.drift import ADWIN


class ScoreChange:
    """ADWIN on one column of a monitor's windows, fed in window order (one judging thread)."""

    def __init__(self, column: int, delta: float = 0.002) -> None:
        self.column = column
        self._detector = ADWIN(delta=delta)
        self.changes = 0
        """Changes seen so far."""

    def __call__(self, window: np.ndarray) -> Mapping[str, float]:
        """``score_change``: 1 when the mean changed within ``window``; ``score_mean``: its mean."""
        detector, changed = self._detector, False
        values = window[:, self.column]
        for value in values.tolist():
            detector.update(value)
            changed = changed or detector.drift_detected
        self.changes += changed
        return {"score_change": float(changed), "score_mean": float(values.mean())}


def error_change(errors: Iterable[tuple[float, float]], delta: float = 0.002) -> float | None:
    """The time of the first change ADWIN finds in ``(time, error)`` pairs (error 0 or 1, in time
    order; NaN skipped), or ``None``."""
    detector = ADWIN(delta=delta)
    for at, error in errors:
        if math.isnan(error):
            continue
        detector.update(error)
        if detector.drift_detected:
            return at
    return None

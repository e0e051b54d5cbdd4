"""An online model of batch latency, ``seconds = a * rows + b``, used to decide how long a batch
may wait and whether a request can still meet its deadline.

BentoML's dispatcher refits a line over a window of recent batches with ``np.polyfit``. This
model keeps exponentially decayed sums instead: O(1) per batch, no window to store, it follows a
drifting machine within ``1 / (1 - decay)`` batches, and it keeps the spread of its residuals so
that a prediction can be asked for with a safety margin. Warm-up timings at two batch sizes
seed it, so the slope is known before the first request.

Outliers are clipped: once seeded, an observation counts for at most ``clip_ratio`` times the
current prediction. A model that is slow on 30 % of its calls (a stall, a GC pause, a noisy
neighbour) would otherwise drag the mean so high that the batcher sheds requests the model could
serve; with ``clip_ratio = 2`` such outliers raise the prediction by 1.75x at most, while a lasting
slowdown is still followed, the prediction growing by up to 2 % per batch (doubling in ~35).
"""

from __future__ import annotations

import math


class LatencyModel:
    def __init__(
        self, decay: float = 0.98, prior_a: float = 1e-4, prior_b: float = 1e-3, clip_ratio: float = 2.0
    ) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be within (0, 1), got {decay!r}")
        if clip_ratio <= 1.0:
            raise ValueError(f"clip_ratio must be > 1, got {clip_ratio!r}")
        self.decay = decay
        self.clip_ratio = clip_ratio
        self._w = self._n = self._nn = self._y = self._ny = self._yy = 0.0
        self.a = prior_a
        """Seconds per row."""
        self.b = prior_b
        """Seconds per batch, whatever its size."""
        self.resid_std = 0.0
        self.observations = 0

    def observe(self, rows: int, seconds: float) -> None:
        if self.observations >= 2:  # seeded (warm-up gives two): clip outliers
            seconds = min(seconds, self.clip_ratio * self.predict(rows))
        d = self.decay
        self._w = self._w * d + 1.0
        self._n = self._n * d + rows
        self._nn = self._nn * d + rows * rows
        self._y = self._y * d + seconds
        self._ny = self._ny * d + rows * seconds
        self._yy = self._yy * d + seconds * seconds
        self.observations += 1
        self._fit()

    def _fit(self) -> None:
        w = self._w
        mean_n, mean_y = self._n / w, self._y / w
        var_n = self._nn / w - mean_n * mean_n
        if var_n > 1e-9 * max(1.0, mean_n * mean_n):
            a = (self._ny / w - mean_n * mean_y) / var_n
            a = max(a, 0.0)  # more rows never make a batch faster
        else:  # every batch had one size: keep the slope we had, move the intercept
            a = self.a
        b = max(mean_y - a * mean_n, 0.0)
        # residual variance from the decayed sums: E[(y - a n - b)^2]
        resid = self._yy / w - 2 * a * self._ny / w - 2 * b * mean_y + a * a * self._nn / w + 2 * a * b * mean_n + b * b
        self.a, self.b = a, b
        self.resid_std = math.sqrt(max(resid, 0.0))

    def predict(self, rows: int, margin_std: float = 0.0) -> float:
        """Expected seconds for a batch of ``rows``, plus ``margin_std`` residual deviations."""
        return self.a * rows + self.b + margin_std * self.resid_std

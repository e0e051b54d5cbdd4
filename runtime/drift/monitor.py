"""Windows of live rows for one model version, judged against its reference when they close.

On the request path :meth:`DriftMonitor.add` copies a request's rows into the open window (a numpy
slice assignment: constant work per row, no statistics). A window closes when it holds
``window_rows`` rows, or when ``window_s`` has passed since it opened (checked by ``add`` and by
:meth:`DriftMonitor.tick`, which the service calls now and then); it is then handed to ``submit``
(by default one worker thread, so windows are judged in order) and compared with the reference
(compare.py). A window closed by time with fewer than ``min_rows`` rows decides nothing.

A feature's drift is *confirmed* when it drifted in ``confirm_windows`` consecutive decided
windows; one window that does not show it resets the count. A categorical feature whose share of
codes the reference never saw passes ``unseen_share`` raises its own alarm at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from .compare import FeatureReport, compare
from .reference import FeatureKind, Reference


@dataclass(frozen=True)
class DriftPolicy:
    window_rows: int = 1000
    window_s: float = 3600.0
    min_rows: int = 500
    alpha: float = 0.01
    """False discovery rate across a window's features."""
    min_effect: float = 0.05
    """The smallest distance that counts (numeric: standard deviations; categorical: Jensen-Shannon)."""
    confirm_windows: int = 2
    unseen_share: float = 0.01

    def __post_init__(self) -> None:
        if self.window_rows < 1 or not 1 <= self.min_rows <= self.window_rows:
            raise ValueError(
                f"window_rows must be >= 1 and min_rows in [1, window_rows], got {self.window_rows}, {self.min_rows}"
            )
        if self.window_s <= 0 or self.confirm_windows < 1:
            raise ValueError(
                f"window_s must be > 0 and confirm_windows >= 1, got {self.window_s}, {self.confirm_windows}"
            )
        if not 0 < self.alpha < 1 or self.min_effect < 0 or not 0 < self.unseen_share <= 1:
            raise ValueError(
                f"alpha must be in (0, 1), min_effect >= 0, unseen_share in (0, 1]; "
                f"got {self.alpha}, {self.min_effect}, {self.unseen_share}"
            )


@dataclass(frozen=True)
class WindowReport:
    closed_at: float
    rows: int
    decided: bool
    """False: closed by time with fewer than ``min_rows`` rows (no feature judged)."""
    features: tuple[FeatureReport, ...]
    drifted: tuple[str, ...]
    """Features that drifted in this window."""
    confirmed: tuple[str, ...]
    """Features that drifted in ``confirm_windows`` consecutive decided windows, this one included."""
    unseen: tuple[str, ...]
    """Categorical features whose share of codes the reference never saw passed ``unseen_share``."""
    summary: Mapping[str, float] = field(default_factory=dict)
    """What the monitor's ``summarise`` made of the window's rows (decided or not)."""


Submit = Callable[[Callable[[], None]], object]
Summarise = Callable[[np.ndarray], Mapping[str, float]]
"""A closed window's rows (rows x features) -> figures for its report; called in window order."""


class DriftMonitor:
    def __init__(
        self,
        reference: Reference,
        policy: DriftPolicy | None = None,
        *,
        clock: Callable[[], float] = time.time,
        submit: Submit | None = None,
        on_report: Callable[[WindowReport], None] | None = None,
        summarise: Summarise | None = None,
    ) -> None:
        """``clock``: seconds since the epoch (a report says when its window closed);
        ``submit``: runs a window's judgement (default: one worker thread of this monitor);
        ``on_report``: told of each window's report, from there; ``summarise``: more figures of
        each closed window (an estimate, a change detector fed its rows), from there too."""
        self.reference = reference
        self.policy = policy or DriftPolicy()
        self._clock = clock
        self._executor: ThreadPoolExecutor | None = None
        if submit is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ballast-drift")
            submit = self._executor.submit
        self._submit = submit
        self.on_report = on_report
        self.summarise = summarise
        self._parts: list[tuple[np.ndarray, ...]] = []
        """The open window's requests, as they came: each a tuple of arrays side by side (copied into
        one window when it closes, in the judging thread)."""
        self._filled = 0
        self._closes_at = clock() + self.policy.window_s
        self._streaks = dict.fromkeys((f.name for f in reference.features), 0)
        self.latest: WindowReport | None = None
        self.windows = 0
        """Windows closed so far (decided or not)."""

    def add(self, rows: np.ndarray) -> None:
        """The rows (rows x features) a request was answered for (from the event loop's thread)."""
        self.add_columns((rows,), len(rows))

    def add_columns(self, arrays: tuple[np.ndarray, ...], n: int) -> None:
        """``n`` rows given as arrays of columns side by side, each of ``n`` rows (1-D for one column):
        a request's outputs, without stacking them. The window keeps the arrays, never copies them
        here (a request's arrays are never written after it is answered): a list append per request."""
        self._parts.append(arrays)
        self._filled += n
        if self._filled >= self.policy.window_rows:
            self._spill()
        elif self._clock() >= self._closes_at:
            self._close()

    def _spill(self) -> None:
        """Close full windows; rows beyond the last one open the next."""
        size = self.policy.window_rows
        while self._filled >= size:
            excess = self._filled - size
            carried: list[tuple[np.ndarray, ...]] = []
            if excess:
                last = self._parts[-1]
                keep = len(last[0]) - excess
                self._parts[-1] = tuple(a[:keep] for a in last)
                carried.append(tuple(a[keep:] for a in last))
            self._filled -= excess
            self._close()
            self._parts, self._filled = carried, excess

    def tick(self) -> None:
        """Close the window if its time is up (for a service that receives no request; from the
        event loop's thread, like :meth:`add`)."""
        if self._clock() >= self._closes_at:
            self._close()

    def _close(self) -> None:
        parts, closed_at = self._parts, self._clock()
        self._parts, self._filled, self._closes_at = [], 0, closed_at + self.policy.window_s
        self.windows += 1
        self._submit(lambda: self._judge(_stacked(parts, len(self.reference.features)), closed_at))

    def _judge(self, window: np.ndarray, closed_at: float) -> None:
        summary = dict(self.summarise(window)) if self.summarise is not None and len(window) else {}
        if len(window) < self.policy.min_rows:
            report = WindowReport(closed_at, len(window), False, (), (), (), (), summary)
        else:
            features = compare(self.reference, window, alpha=self.policy.alpha, min_effect=self.policy.min_effect)
            for f in features:
                self._streaks[f.name] = self._streaks[f.name] + 1 if f.drifted else 0
            report = WindowReport(
                closed_at,
                len(window),
                True,
                tuple(features),
                tuple(f.name for f in features if f.drifted),
                tuple(n for n, streak in self._streaks.items() if streak >= self.policy.confirm_windows),
                tuple(
                    f.name
                    for f in features
                    if f.kind is FeatureKind.CATEGORICAL and f.unseen_share > self.policy.unseen_share
                ),
                summary,
            )
        self.latest = report
        if self.on_report is not None:
            self.on_report(report)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)


def _stacked(parts: Sequence[tuple[np.ndarray, ...]], columns: int) -> np.ndarray:
    """One window (rows x ``columns``, float64) from the requests' arrays side by side."""
    if not parts:
        return np.empty((0, columns))
    blocks = [np.concatenate([part[i] for part in parts]) for i in range(len(parts[0]))]
    window = np.column_stack(blocks) if len(blocks) > 1 or blocks[0].ndim == 1 else blocks[0]
    return np.asarray(window, dtype=np.float64)

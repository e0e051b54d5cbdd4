"""A model version's reference: the sample of its training inputs (or of its outputs) kept with the
version, per feature, and how far a window of ``n`` rows drawn from that same distribution strays
from it by chance.

That chance spread is what makes a distance meaningful: a window of 200 rows is never at distance 0
from the reference, and a window of 20,000 rows shows a shift of a hundredth of a standard
deviation as significant. So each feature's distance is compared with the 99th percentile of the
distances of windows of the same size bootstrapped from the reference itself (computed once per
window size, seeded), and with a floor (``min_effect``) below which no shift is worth an alarm.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np


class FeatureKind(StrEnum):
    NUMERIC = "numeric"
    """Numbers and counts: Kolmogorov-Smirnov, and the Wasserstein distance in reference scale units."""
    CATEGORICAL = "categorical"
    """Codes of categories and flags: chi-square, and the Jensen-Shannon distance."""


@dataclass(frozen=True)
class Feature:
    name: str
    kind: FeatureKind
    labels: tuple[str, ...] = ()
    """Categorical: the name of each code (code 0 first), for reports; empty: codes are shown."""

    def label(self, code: float) -> str:
        """What a report calls category ``code``."""
        index = int(code)
        return self.labels[index] if index == code and 0 <= index < len(self.labels) else f"{code:g}"


def ecdf_gap(ours: np.ndarray, theirs: np.ndarray) -> tuple[float, float]:
    """The Kolmogorov-Smirnov statistic (the largest gap between the two empirical distribution
    functions) and the Wasserstein-1 distance (the area between them) of two sorted samples, in one
    pass (``scipy.stats`` computes each separately, behind wrappers that cost more than the sums).

    A stable sort of the two sorted runs is one merge; counting ours along it gives both functions
    at every point, read at the last of each run of equal values (right-continuous)."""
    both = np.concatenate([ours, theirs])
    order = np.argsort(both, kind="stable")
    points = both[order]
    last = np.empty(len(points), dtype=bool)
    last[:-1] = points[1:] != points[:-1]
    last[-1] = True
    mine = np.cumsum(order < len(ours))[last]
    seen = np.arange(1, len(points) + 1)[last]
    gap = np.abs(mine / len(ours) - (seen - mine) / len(theirs))
    return float(gap.max()), float(np.dot(gap[:-1], np.diff(points[last])))


def js_distance(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon distance (base 2, in [0, 1]) of two distributions over the same categories."""
    return float(js_distances(p, q))


def js_distances(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """:func:`js_distance` of each row of ``p`` (distributions over the last axis) and ``q``."""
    m = (p + q) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_p = np.where(p > 0, p * np.log2(p / m), 0.0).sum(axis=-1)
        kl_q = np.where(q > 0, q * np.log2(q / m), 0.0).sum(axis=-1)
    found: np.ndarray = np.sqrt(np.maximum((kl_p + kl_q) / 2, 0.0))
    return found


def distribution(codes: np.ndarray, categories: np.ndarray) -> np.ndarray:
    """Shares of each of ``categories`` among ``codes``, and last the share of codes outside them."""
    counts = np.array([np.count_nonzero(codes == c) for c in categories] + [0], dtype=np.float64)
    counts[-1] = len(codes) - counts[:-1].sum()
    return counts / max(len(codes), 1)


class Reference:
    def __init__(
        self,
        sample: np.ndarray,
        features: Sequence[Feature],
        *,
        bootstraps: int = 200,
        quantile: float = 0.99,
        seed: int = 0,
    ) -> None:
        """``sample``: rows by features (the columns in ``features``' order)."""
        sample = np.asarray(sample, dtype=np.float64)
        if sample.ndim != 2 or sample.shape[1] != len(features):
            raise ValueError(f"the sample must be rows x {len(features)} features, got shape {sample.shape}")
        if len(sample) < 100:
            raise ValueError(f"a reference needs at least 100 rows, got {len(sample)}")
        if bootstraps < 20 or not 0.5 < quantile < 1:
            raise ValueError(f"bootstraps must be >= 20 and quantile in (0.5, 1), got {bootstraps}, {quantile}")
        self.features = tuple(features)
        self.sample = sample
        self.bootstraps = bootstraps
        self.quantile = quantile
        self.seed = seed
        self.scale = np.array([_scale(sample[:, i]) for i in range(sample.shape[1])])
        """Per numeric feature, the unit of its distance: the standard deviation (or 1 when constant)."""
        self.categories = {
            i: np.unique(sample[:, i]) for i, f in enumerate(self.features) if f.kind is FeatureKind.CATEGORICAL
        }
        """Per categorical feature, the codes seen in the reference."""
        self.shares = {i: distribution(sample[:, i], cats) for i, cats in self.categories.items()}
        self.sorted = {i: np.sort(sample[:, i]) for i, f in enumerate(self.features) if f.kind is FeatureKind.NUMERIC}
        """Per numeric feature, the reference's values in order (both tests read them)."""
        self._codes = [np.unique(sample[:, i], return_inverse=True) for i in range(sample.shape[1])]
        """Per feature, its distinct values in order and each sample row's index among them."""
        self._spread: dict[int, np.ndarray] = {}

    @property
    def rows(self) -> int:
        return len(self.sample)

    def distance(self, index: int, values: np.ndarray) -> float:
        """How far ``values`` of feature ``index`` are from the reference: Wasserstein in scale units,
        or the Jensen-Shannon distance (base 2, in [0, 1]) of the category shares."""
        if self.features[index].kind is FeatureKind.NUMERIC:
            return ecdf_gap(np.sort(values), self.sorted[index])[1] / float(self.scale[index])
        return js_distance(distribution(values, self.categories[index]), self.shares[index])

    def chance_distance(self, rows: int) -> np.ndarray:
        """Per feature, the distance a window of ``rows`` rows drawn from the reference exceeds only
        with probability ``1 - quantile`` (bootstrapped once per window size, seeded)."""
        found = self._spread.get(rows)
        if found is None:
            rng = np.random.default_rng([self.seed, rows])
            drawn = rng.integers(0, self.rows, size=(self.bootstraps, rows))
            distances = np.column_stack([self._bootstrap_distances(i, drawn) for i in range(len(self.features))])
            found = self._spread[rows] = np.quantile(distances, self.quantile, axis=0)
        return found

    def _bootstrap_distances(self, index: int, drawn: np.ndarray) -> np.ndarray:
        """:meth:`distance` of feature ``index`` for each row of ``drawn`` (bootstraps x window rows,
        indices into the sample), all at once.

        A window drawn from the reference only holds the reference's values, so its distribution is
        its counts of each of them: one ``bincount`` for every window. Numeric: the area between the
        two distribution functions, which are steps at the reference's distinct values. Categorical:
        the Jensen-Shannon distance of the shares (no code outside the reference can be drawn)."""
        values, codes = self._codes[index]
        windows, rows = drawn.shape
        slots = len(values)
        counts = np.bincount(
            (codes[drawn] + np.arange(windows)[:, None] * slots).ravel(), minlength=windows * slots
        ).reshape(windows, slots)
        if self.features[index].kind is FeatureKind.NUMERIC:
            ours = np.cumsum(counts, axis=1)[:, :-1] / rows
            theirs = np.searchsorted(self.sorted[index], values[:-1], side="right") / self.rows
            found: np.ndarray = np.abs(ours - theirs) @ np.diff(values) / float(self.scale[index])
            return found
        return js_distances(counts / rows, self.shares[index][:-1])


def _scale(column: np.ndarray) -> float:
    std = float(column.std())
    return std if std > 0 else 1.0

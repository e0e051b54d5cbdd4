"""One closed window against the reference, feature by feature.

A feature has drifted when both hold:

- its test rejects "same distribution" after the Benjamini-Hochberg correction across the window's
  features at false discovery rate ``alpha`` (numeric: two-sample Kolmogorov-Smirnov, its asymptotic
  p-value, conservative where values repeat; categorical:
  chi-square on a 2 x categories table of reference and window counts, categories expected fewer
  than 5 times pooled, codes the reference never saw in their own ``unseen`` column);
- its distance (reference.py) exceeds what a window of the same size drawn from the reference
  reaches by chance, and ``min_effect``: with thousands of rows a test alone flags shifts too small
  to matter.

Runs in a worker thread when a window closes (a few milliseconds per feature), never per request.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import chdtrc, kolmogorov
from scipy.stats import false_discovery_control

from .reference import FeatureKind, Reference, distribution, ecdf_gap, js_distance


@dataclass(frozen=True)
class FeatureReport:
    name: str
    kind: FeatureKind
    test: str
    """``ks`` or ``chi2``."""
    p_value: float
    adjusted_p: float
    """After the Benjamini-Hochberg correction across the window's features."""
    distance: float
    threshold: float
    """The distance beyond which a shift counts: chance at this window size, or ``min_effect``."""
    drifted: bool
    direction: str
    """Numeric: ``up`` or ``down`` (the window's mean against the reference's, in scale units);
    categorical: the code whose share grew most (``unseen`` for codes the reference never saw)."""
    shift: float
    """Numeric: the mean's shift in scale units; categorical: the growth of that code's share."""
    unseen_share: float = 0.0
    """Categorical: the share of the window's rows with a code the reference never saw."""


def compare(
    reference: Reference, window: np.ndarray, *, alpha: float = 0.01, min_effect: float = 0.05
) -> list[FeatureReport]:
    """Per feature of ``reference``, how ``window`` (rows x features) compares with it."""
    window = np.asarray(window, dtype=np.float64)
    if window.ndim != 2 or window.shape[1] != len(reference.features):
        raise ValueError(f"the window must be rows x {len(reference.features)} features, got shape {window.shape}")
    chance = reference.chance_distance(len(window))
    found = [_test(reference, i, window[:, i]) for i in range(len(reference.features))]
    adjusted = false_discovery_control([p for _, p, *_ in found])
    reports = []
    for i, ((test, p, distance, direction, shift, unseen), q) in enumerate(zip(found, adjusted, strict=True)):
        feature = reference.features[i]
        threshold = max(float(chance[i]), min_effect)
        reports.append(
            FeatureReport(
                name=feature.name,
                kind=feature.kind,
                test=test,
                p_value=p,
                adjusted_p=float(q),
                distance=distance,
                threshold=threshold,
                drifted=bool(q < alpha and distance > threshold),
                direction=direction,
                shift=shift,
                unseen_share=unseen,
            )
        )
    return reports


def _test(reference: Reference, index: int, values: np.ndarray) -> tuple[str, float, float, str, float, float]:
    """The feature's test: its name, p-value, distance, direction, shift and unseen share."""
    if reference.features[index].kind is FeatureKind.NUMERIC:
        theirs = reference.sorted[index]
        statistic, area = ecdf_gap(np.sort(values), theirs)
        effective = len(values) * len(theirs) / (len(values) + len(theirs))
        p = float(kolmogorov(np.sqrt(effective) * statistic))  # the asymptotic two-sample p-value
        shift = float((values.mean() - theirs.mean()) / reference.scale[index])
        return "ks", p, area / float(reference.scale[index]), "up" if shift >= 0 else "down", shift, 0.0
    categories = reference.categories[index]
    ours, theirs = distribution(values, categories), reference.shares[index]
    p = _chi2_p(np.vstack([theirs * reference.rows, ours * len(values)]))
    growth = ours - theirs
    top = int(np.argmax(growth))
    direction = "unseen" if top == len(categories) else reference.features[index].label(float(categories[top]))
    return "chi2", p, js_distance(ours, theirs), direction, float(growth[top]), float(ours[-1])


def _chi2_p(table: np.ndarray) -> float:
    """Chi-square p-value of a 2 x k table of counts, columns expected fewer than 5 times pooled."""
    table = table[:, table.sum(axis=0) > 0]
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
    rare = (expected < 5).any(axis=0)
    if rare.any():
        table = np.hstack([table[:, ~rare], table[:, rare].sum(axis=1, keepdims=True)])
        expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
    if table.shape[1] < 2:
        return 1.0
    statistic = float(((table - expected) ** 2 / expected).sum())
    return float(chdtrc(table.shape[1] - 1, statistic))

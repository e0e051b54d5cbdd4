"""Performance drift: is a version doing worse on labelled traffic than it did on held-out data, and,
where no labels come, what its calibrated probabilities say its accuracy should be.

With labels (the feedback window's rows, by prediction time):

* each held-out figure the version carries (``roc_auc``, ``accuracy``) is measured again on the
  labelled rows and tested one-sided for a drop: ROC AUC with Hanley and McNeil's standard error
  at the held-out value, accuracy with an exact binomial test. A figure *dropped* when it fell by
  at least ``max_drop`` and the test says so at ``alpha``: a significant drop too small to matter
  raises nothing, and neither does a large one on a handful of labels.
* fewer than ``min_labels`` labelled rows (or, for ROC AUC, fewer than ``min_per_class`` of either
  class) is *not enough labels*, said as such: never a pass.
* ADWIN (river, change.py) reads the error stream (1 for a wrong class, 0 for a right one) in prediction order
  and says whether the error rate changed within the window, and when.

Without labels: a binary classifier's score, mapped through the calibration made at build time
(held-out scores to the observed positive rate, isotonic), gives each row's chance of being right,
``max(c, 1 - c)``; their mean estimates the accuracy and the sum of ``a (1 - a)`` its variance (a
sum of independent Bernoullis). Where labels exist the same estimate on the labelled rows is
compared with the accuracy they show: more than three standard errors apart marks the estimate
unreliable (the calibration no longer holds: the relation between score and outcome moved).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from scipy.special import ndtr
from scipy.stats import binomtest, rankdata

from .change import error_change

FIGURES = ("roc_auc", "accuracy")
"""The held-out figures a version's labelled performance is checked against, when it carries them."""


@dataclass(frozen=True)
class PerformancePolicy:
    max_drop: float = 0.05
    """The fall of a figure (ROC AUC or accuracy, absolute) worth an alarm."""
    alpha: float = 0.01
    """Of the one-sided test for a drop."""
    min_labels: int = 200
    """Labelled rows needed before any verdict."""
    min_per_class: int = 20
    """For ROC AUC: labelled rows of each class needed."""
    adwin_delta: float = 0.002
    """ADWIN's confidence parameter (river's default)."""

    def __post_init__(self) -> None:
        if not 0 < self.max_drop < 1 or not 0 < self.alpha < 1 or not 0 < self.adwin_delta < 1:
            raise ValueError(
                f"max_drop, alpha and adwin_delta must be within (0, 1), got "
                f"{self.max_drop}, {self.alpha}, {self.adwin_delta}"
            )
        if self.min_labels < 1 or self.min_per_class < 1:
            raise ValueError(f"min_labels and min_per_class must be >= 1, got {self.min_labels}, {self.min_per_class}")


class Standing(StrEnum):
    HELD = "held"
    DROPPED = "dropped"
    NOT_ENOUGH_LABELS = "not_enough_labels"


@dataclass(frozen=True)
class FigureCheck:
    figure: str
    held_out: float
    observed: float | None
    """``None``: not enough labels to measure it."""
    p_value: float | None
    """Of a drop from the held-out figure (one-sided)."""
    labels: int
    standing: Standing


@dataclass(frozen=True)
class Labelled:
    """A version's labelled rows in the window, in prediction order."""

    predicted_at: np.ndarray
    score: np.ndarray
    """The positive class's probability (NaN where the outputs had none)."""
    predicted: np.ndarray
    label: np.ndarray

    @classmethod
    def of(cls, rows: Sequence[tuple[float, float | None, float | None, float]]) -> Labelled:
        """From ``(predicted_at, score, predicted class, label)`` rows, in any order."""
        ordered = sorted(rows, key=lambda r: r[0])
        nan = float("nan")
        return cls(
            np.array([r[0] for r in ordered], dtype=np.float64),
            np.array([nan if r[1] is None else r[1] for r in ordered], dtype=np.float64),
            np.array([nan if r[2] is None else r[2] for r in ordered], dtype=np.float64),
            np.array([r[3] for r in ordered], dtype=np.float64),
        )

    def __len__(self) -> int:
        return len(self.label)


@dataclass(frozen=True)
class PerformanceReport:
    labels: int
    checks: tuple[FigureCheck, ...]
    error_change_at: float | None
    """When (prediction time) ADWIN saw the error rate change within the window; ``None``: no change."""
    estimated_accuracy: float | None = None
    """The calibrated estimate on the labelled rows (binary classifiers with a calibration)."""
    estimate_stderr: float | None = None
    estimate_unreliable: bool = False
    """Realised accuracy and the estimate more than three standard errors apart."""

    @property
    def standing(self) -> Standing:
        """Dropped if any figure dropped; held only when every figure could be measured."""
        found = {c.standing for c in self.checks}
        if Standing.DROPPED in found:
            return Standing.DROPPED
        if not found or Standing.NOT_ENOUGH_LABELS in found:
            return Standing.NOT_ENOUGH_LABELS
        return Standing.HELD


def roc_auc(score: np.ndarray, label: np.ndarray) -> float:
    """ROC AUC of ``score`` for the 0/1 ``label`` (ties count half), by the rank sum."""
    ranks = rankdata(score)
    positives = int(label.sum())
    negatives = len(label) - positives
    return float((ranks[label == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def auc_stderr(auc: float, positives: int, negatives: int) -> float:
    """Hanley and McNeil's (1982) standard error of an ROC AUC over these class counts."""
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    variance = (auc * (1 - auc) + (positives - 1) * (q1 - auc * auc) + (negatives - 1) * (q2 - auc * auc)) / (
        positives * negatives
    )
    return math.sqrt(max(variance, 1e-12))


def check_auc(score: np.ndarray, label: np.ndarray, held_out: float, policy: PerformancePolicy) -> FigureCheck:
    known = ~np.isnan(score)
    score, label = score[known], label[known]
    binary = bool(np.isin(label, (0.0, 1.0)).all())
    positives = int(label.sum()) if binary else 0
    negatives = len(label) - positives
    if not binary or len(label) < policy.min_labels or min(positives, negatives) < policy.min_per_class:
        return FigureCheck("roc_auc", held_out, None, None, len(label), Standing.NOT_ENOUGH_LABELS)
    observed = roc_auc(score, label)
    z = (held_out - observed) / auc_stderr(held_out, positives, negatives)
    p_value = float(ndtr(-z))
    dropped = held_out - observed >= policy.max_drop and p_value < policy.alpha
    return FigureCheck(
        "roc_auc", held_out, observed, p_value, len(label), Standing.DROPPED if dropped else Standing.HELD
    )


def check_accuracy(predicted: np.ndarray, label: np.ndarray, held_out: float, policy: PerformancePolicy) -> FigureCheck:
    known = ~np.isnan(predicted)
    n = int(known.sum())
    if n < policy.min_labels:
        return FigureCheck("accuracy", held_out, None, None, n, Standing.NOT_ENOUGH_LABELS)
    correct = int((predicted[known] == label[known]).sum())
    observed = correct / n
    p_value = float(binomtest(correct, n, min(max(held_out, 1e-9), 1 - 1e-9), alternative="less").pvalue)
    dropped = held_out - observed >= policy.max_drop and p_value < policy.alpha
    return FigureCheck("accuracy", held_out, observed, p_value, n, Standing.DROPPED if dropped else Standing.HELD)


@dataclass(frozen=True)
class Calibration:
    """Scores to the positive rate observed for them on held-out data (a step function from an
    isotonic fit, made at build time), read by linear interpolation."""

    scores: tuple[float, ...]
    rates: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.scores) != len(self.rates) or len(self.scores) < 2 or list(self.scores) != sorted(self.scores):
            raise ValueError("a calibration needs two or more increasing scores, one rate each")

    @classmethod
    def of(cls, found: Mapping[str, Sequence[float]] | None) -> Calibration | None:
        """From a version's metadata (``{"scores": [...], "rates": [...]}``), or ``None``."""
        if not found:
            return None
        return cls(tuple(float(x) for x in found["scores"]), tuple(float(x) for x in found["rates"]))

    def right(self, score: np.ndarray) -> np.ndarray:
        """Each row's chance that its predicted class is right."""
        rate = np.interp(score, self.scores, self.rates)
        found: np.ndarray = np.maximum(rate, 1 - rate)
        return found


def estimate_accuracy(score: np.ndarray, calibration: Calibration) -> tuple[float, float] | None:
    """The accuracy a binary classifier's calibrated scores promise, and its standard error."""
    score = score[~np.isnan(score)]
    if len(score) == 0:
        return None
    right = calibration.right(score)
    return float(right.mean()), float(math.sqrt(float((right * (1 - right)).sum())) / len(right))


def judge(
    rows: Labelled,
    held_out: Mapping[str, float],
    policy: PerformancePolicy,
    calibration: Calibration | None = None,
) -> PerformanceReport:
    """A version's labelled rows against its held-out figures (those of :data:`FIGURES` it has)."""
    checks: list[FigureCheck] = []
    if "roc_auc" in held_out:
        checks.append(check_auc(rows.score, rows.label, float(held_out["roc_auc"]), policy))
    if "accuracy" in held_out:
        checks.append(check_accuracy(rows.predicted, rows.label, float(held_out["accuracy"]), policy))
    estimate = stderr = None
    unreliable = False
    if calibration is not None:
        known = ~np.isnan(rows.score) & ~np.isnan(rows.predicted)
        found = estimate_accuracy(rows.score[known], calibration)
        if found is not None:
            estimate, stderr = found
            realised = float((rows.predicted[known] == rows.label[known]).mean())
            unreliable = bool(known.sum() >= policy.min_labels and abs(realised - estimate) > 3 * max(stderr, 1e-9))
    errors = zip(
        rows.predicted_at.tolist(),
        np.where(np.isnan(rows.predicted), np.nan, rows.predicted != rows.label).tolist(),
        strict=True,
    )
    return PerformanceReport(
        len(rows), tuple(checks), error_change(errors, policy.adwin_delta), estimate, stderr, unreliable
    )

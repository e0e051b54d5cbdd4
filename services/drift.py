"""Drift for a served service: a drift hook per deployed version (its reference sample from the
model store), the windows' figures in ``/metrics``, and ``GET /v1/drift``, the latest report per
version and source (input, prediction), and each version's performance.

A binary classifier's prediction windows also feed ADWIN with its score (a change within a window)
and, when the version was stored with a calibration, estimate its accuracy without labels. Labelled
feedback, when it comes, is judged against the version's held-out figures
(runtime/drift/performance.py); a version with no labels yet says "not enough labels".

Each worker judges its own windows (with several workers a window fills more slowly); the report
and the gauges are that worker's (the largest value across workers in ``/metrics``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from runtime import OnnxModel, Settings, columns_of
from runtime.drift import (
    DriftHook,
    DriftMonitor,
    DriftPolicy,
    Feature,
    FeatureKind,
    FeatureReport,
    Reference,
    prediction_features,
)
from runtime.drift.change import ScoreChange
from runtime.drift.hook import prediction_rows
from runtime.drift.monitor import Summarise, WindowReport
from runtime.drift.performance import (
    FIGURES,
    Calibration,
    Labelled,
    PerformancePolicy,
    PerformanceReport,
    Standing,
    estimate_accuracy,
    judge,
)
from runtime.observe.metrics import RuntimeMetrics

from .declaration import Declaration
from .http.envelope import HTTPError, HttpErrorType
from .http.openapi import RouteDoc, inline
from .http.routes import RequestInfo, Route

log = logging.getLogger(__name__)

INPUT, PREDICTION = "input", "prediction"


def policy(settings: Settings) -> DriftPolicy:
    return DriftPolicy(
        window_rows=settings.drift_window_rows,
        window_s=settings.drift_window_s,
        min_rows=settings.drift_min_rows,
        alpha=settings.drift_alpha,
        min_effect=settings.drift_min_effect,
        confirm_windows=settings.drift_confirm_windows,
        unseen_share=settings.drift_unseen_share,
    )


def performance_policy(settings: Settings) -> PerformancePolicy:
    return PerformancePolicy(
        max_drop=settings.performance_max_drop,
        alpha=settings.performance_alpha,
        min_labels=settings.performance_min_labels,
        min_per_class=settings.performance_min_per_class,
    )


def score_column(columns: Sequence[tuple[str, int | None, Feature]]) -> int | None:
    """Where a binary classifier's score (``probabilities[1]`` of two) is among the watched columns."""
    names = [f.name for _, _, f in columns]
    if "probabilities[1]" in names and "probabilities[2]" not in names:
        return names.index("probabilities[1]")
    return None


def prediction_summary(column: int, calibration: Calibration | None) -> Summarise:
    """ADWIN on the score, and the calibrated accuracy estimate, of each prediction window."""
    change = ScoreChange(column)

    def summarise(window: np.ndarray) -> dict[str, float]:
        found = dict(change(window))
        estimate = estimate_accuracy(window[:, column], calibration) if calibration is not None else None
        if estimate is not None:
            found["estimated_accuracy"], found["estimate_stderr"] = estimate
        return found

    return summarise


def input_features(declaration: Declaration, columns: int) -> list[Feature]:
    """The model input's columns as features: a records service's fields (categories and flags
    categorical), a tensor service's columns numbered."""
    if declaration.kind == "records" and declaration.request is not None:
        found = [
            Feature(c.name, FeatureKind.NUMERIC)
            if c.kind not in ("category", "boolean")
            else Feature(c.name, FeatureKind.CATEGORICAL, c.categories or ("false", "true"))
            for c in columns_of(declaration.request)
        ]
        if len(found) == columns:
            return found
    return [Feature(f"x[{i}]", FeatureKind.NUMERIC) for i in range(columns)]


class VersionReport(BaseModel):
    version: str
    source: Literal["input", "prediction"]
    closed_at: float = Field(description="when the window closed (seconds since the epoch)")
    rows: int
    decided: bool = Field(description="false: closed by time with too few rows to judge")
    features: list[FeatureReport]
    drifted: list[str] = Field(description="features that drifted in this window")
    confirmed: list[str] = Field(description="features that drifted in the last confirm_windows windows")
    unseen: list[str] = Field(description="categorical features past the share of unseen categories")
    summary: dict[str, float] = Field(
        description="predictions of a binary classifier: score_change (1: ADWIN saw the mean score change in "
        "this window), score_mean; with a calibration, estimated_accuracy and estimate_stderr (no labels)"
    )


class FigureOut(BaseModel):
    figure: Literal["roc_auc", "accuracy"]
    held_out: float
    observed: float | None = Field(description="on the labelled feedback; null: not enough labels")
    p_value: float | None = Field(description="of a drop from the held-out figure (one-sided)")
    labels: int
    standing: Literal["held", "dropped", "not_enough_labels"]


class PerformanceOut(BaseModel):
    version: str
    standing: Literal["held", "dropped", "not_enough_labels"] = Field(
        description="dropped if a figure dropped; held only when every figure could be judged"
    )
    labels: int = Field(description="labelled rows of the version in the feedback window")
    figures: list[FigureOut]
    error_change_at: float | None = Field(
        description="when (prediction time) ADWIN saw the error rate change in the window; null: no change"
    )
    estimated_accuracy: float | None = Field(description="the calibrated estimate on the labelled rows")
    estimate_stderr: float | None
    estimate_unreliable: bool = Field(description="labelled accuracy and the estimate over 3 standard errors apart")


class DriftReport(BaseModel):
    service: str
    window_rows: int
    confirm_windows: int
    reports: list[VersionReport] = Field(description="the latest window per version and source")
    performance: list[PerformanceOut] = Field(description="per watched version, its labelled performance")


class DriftWatch:
    def __init__(self, service: str, settings: Settings, metrics: RuntimeMetrics | None) -> None:
        self.service = service
        self.policy = policy(settings)
        self.metrics = metrics
        self.performance_policy = performance_policy(settings)
        self.latest: dict[tuple[str, str], WindowReport] = {}
        self.held_out: dict[str, dict[str, float]] = {}
        """Per watched version, its held-out figures (those performance is judged on)."""
        self.calibrations: dict[str, Calibration | None] = {}
        self.performance: dict[str, PerformanceReport] = {}
        self._hooks: dict[str, list[DriftHook]] = {}
        """Per version, its live hooks (one per pipeline that serves it)."""
        self._lock = threading.Lock()

    def hook(
        self,
        declaration: Declaration,
        version: str,
        sample_path: Path,
        primary: OnnxModel,
        metadata: Mapping[str, Any] | None = None,
    ) -> DriftHook | None:
        """A drift hook for ``version``, whose primary model is ``primary`` and reference sample is
        at ``sample_path``; ``None`` (logged) when there is nothing to watch. ``metadata``: the
        version's, from the store (its held-out ``metrics`` and ``calibration``)."""
        if not sample_path.is_file():
            log.warning(
                "%s %s: no reference sample (%s): drift is not watched", self.service, version, sample_path.name
            )
            return None
        specs = primary.signature.inputs
        sample = np.load(sample_path, allow_pickle=False)
        if len(specs) != 1 or sample.ndim != 2 or len(sample) < 100:
            log.warning("%s %s: drift watches one 2-D input with a sample of 100 rows or more", self.service, version)
            return None
        name = specs[0].name
        metadata = metadata or {}
        figures = metadata.get("metrics") or {}
        calibration = Calibration.of(metadata.get("calibration"))
        inputs = self._monitor(version, INPUT, Reference(sample, input_features(declaration, sample.shape[1])))
        columns, predictions = self._predictions(version, primary, name, sample, calibration)
        found = DriftHook(name, inputs, primary.name, predictions, columns)
        found.on_close = lambda: self._forget(version, found)
        with self._lock:
            self._hooks.setdefault(version, []).append(found)
            self.held_out[version] = {k: float(figures[k]) for k in FIGURES if k in figures}
            self.calibrations[version] = calibration
        return found

    def _predictions(
        self, version: str, primary: OnnxModel, name: str, sample: np.ndarray, calibration: Calibration | None
    ) -> tuple[list[tuple[str, int | None, Feature]], DriftMonitor | None]:
        """The watched output columns and their monitor, from the primary's answers on the reference
        sample; none (logged: the inputs are still watched) when it cannot answer them all."""
        try:
            outputs = primary.run({name: sample.astype(np.float32)}, inject=False)
            columns = prediction_features(outputs)
            if not columns:
                return [], None
            rows = prediction_rows(outputs, columns)
            if not np.isfinite(rows).all():
                raise ValueError("outputs that are not finite numbers")
        except Exception as exc:
            log.warning("%s %s: predictions are not watched: on the reference sample, %s", self.service, version, exc)
            return [], None
        reference = Reference(rows, [f for _, _, f in columns])
        score = score_column(columns)
        summarise = None if score is None else prediction_summary(score, calibration)
        return columns, self._monitor(version, PREDICTION, reference, summarise)

    def _forget(self, version: str, hook: DriftHook) -> None:
        """A version's hook closed; with its last one, the version's reports go too."""
        with self._lock:
            hooks = self._hooks.get(version, [])
            if hook in hooks:
                hooks.remove(hook)
            if hooks:
                return
            self._hooks.pop(version, None)
            for found in (self.held_out, self.calibrations, self.performance):
                found.pop(version, None)
            for key in [key for key in self.latest if key[0] == version]:
                del self.latest[key]

    def tick(self) -> None:
        """Close the windows whose time is up, traffic or not (from the event loop's thread)."""
        with self._lock:
            hooks = [hook for found in self._hooks.values() for hook in found]
        for hook in hooks:
            hook.tick()

    def _monitor(
        self, version: str, source: str, reference: Reference, summarise: Summarise | None = None
    ) -> DriftMonitor:
        def told(report: WindowReport) -> None:
            self.latest[version, source] = report
            if self.metrics is not None:
                self._tell_metrics(version, source, report)

        return DriftMonitor(reference, self.policy, on_report=told, summarise=summarise)

    def _tell_metrics(self, version: str, source: str, report: WindowReport) -> None:
        assert self.metrics is not None
        m, service = self.metrics, self.service
        m.drift_windows.labels(service, version, source, str(report.decided).lower()).inc()
        m.drift_last_window.labels(service, version, source).set(report.closed_at)
        for f in report.features:
            labels = (service, version, source, f.name)
            m.drift_distance.labels(*labels).set(f.distance)
            m.drift_threshold.labels(*labels).set(f.threshold)
            m.drift_p_value.labels(*labels).set(f.adjusted_p)
            m.drift_confirmed.labels(*labels).set(1.0 if f.name in report.confirmed else 0.0)
            if f.kind is FeatureKind.CATEGORICAL:
                m.drift_unseen_share.labels(service, version, f.name).set(f.unseen_share)
        summary = report.summary
        if "score_change" in summary:
            m.drift_score_change.labels(service, version).set(summary["score_change"])
        if "estimated_accuracy" in summary:
            m.performance_estimated_accuracy.labels(service, version).set(summary["estimated_accuracy"])
            m.performance_estimate_stderr.labels(service, version).set(summary["estimate_stderr"])

    def judge_performance(
        self, labelled: Mapping[tuple[str, str], Sequence[tuple[float, float | None, float | None, float]]]
    ) -> None:
        """Judge each watched version's labelled rows (``Feedback.labelled``) against its held-out
        figures (from a worker thread, after labels came)."""
        for version, held_out in list(self.held_out.items()):
            rows = Labelled.of(labelled.get((self.service, version), ()))
            report = judge(rows, held_out, self.performance_policy, self.calibrations.get(version))
            self.performance[version] = report
            if self.metrics is not None:
                self._tell_performance(version, report)

    def _tell_performance(self, version: str, report: PerformanceReport) -> None:
        assert self.metrics is not None
        m, service = self.metrics, self.service
        m.performance_drop.labels(service, version).set(1.0 if report.standing is Standing.DROPPED else 0.0)
        enough = all(c.standing is not Standing.NOT_ENOUGH_LABELS for c in report.checks) and bool(report.checks)
        m.performance_enough_labels.labels(service, version).set(1.0 if enough else 0.0)
        m.performance_error_change.labels(service, version).set(0.0 if report.error_change_at is None else 1.0)
        m.performance_estimate_unreliable.labels(service, version).set(1.0 if report.estimate_unreliable else 0.0)
        for check in report.checks:
            m.performance_figure.labels(service, version, check.figure, "held_out").set(check.held_out)
            if check.observed is not None:
                m.performance_figure.labels(service, version, check.figure, "measured").set(check.observed)

    def performance_of(self, version: str) -> PerformanceOut:
        """``version``'s latest performance (before any label: not enough labels, zero of them)."""
        report = self.performance.get(version)
        if report is None:
            report = judge(Labelled.of(()), self.held_out.get(version, {}), self.performance_policy)
        return PerformanceOut(
            version=version,
            standing=report.standing.value,
            labels=report.labels,
            figures=[FigureOut(**asdict(c)) for c in report.checks],
            error_change_at=report.error_change_at,
            estimated_accuracy=report.estimated_accuracy,
            estimate_stderr=report.estimate_stderr,
            estimate_unreliable=report.estimate_unreliable,
        )

    def report(self) -> DriftReport:
        """The latest window's report per version and source."""
        return DriftReport(
            service=self.service,
            window_rows=self.policy.window_rows,
            confirm_windows=self.policy.confirm_windows,
            reports=[
                VersionReport(version=version, source=source, **asdict(report))
                for (version, source), report in sorted(self.latest.items())
            ],
            performance=[self.performance_of(version) for version in sorted(self.held_out)],
        )

    def close(self) -> None:
        with self._lock:
            hooks = [hook for found in self._hooks.values() for hook in found]
        for hook in hooks:
            hook.close()


class DriftRoutes:
    """``GET /v1/drift``: the worker's latest drift reports (404 when drift is off)."""

    def __init__(self, watch: Callable[[], DriftWatch | None]) -> None:
        self.watch = watch
        self.routes = [Route("GET", "/v1/drift", self.report)]

    async def report(self, payload: Any, info: RequestInfo) -> dict[str, Any]:
        watch = self.watch()
        if watch is None:
            raise HTTPError(404, HttpErrorType.NOT_FOUND, "drift is not watched (BALLAST_DRIFT_ENABLED=false)")
        return watch.report().model_dump(mode="json")

    def docs(self) -> list[RouteDoc]:
        example = {
            "service": "fraud",
            "window_rows": 1000,
            "confirm_windows": 2,
            "reports": [
                {
                    "version": "2",
                    "source": "input",
                    "closed_at": 1764633600.0,
                    "rows": 1000,
                    "decided": True,
                    "features": [
                        {
                            "name": "amount",
                            "kind": "numeric",
                            "test": "ks",
                            "p_value": 0.41,
                            "adjusted_p": 0.93,
                            "distance": 0.021,
                            "threshold": 0.05,
                            "drifted": False,
                            "direction": "up",
                            "shift": 0.012,
                            "unseen_share": 0.0,
                        }
                    ],
                    "drifted": [],
                    "confirmed": [],
                    "unseen": [],
                    "summary": {},
                }
            ],
            "performance": [
                {
                    "version": "2",
                    "standing": "held",
                    "labels": 1200,
                    "figures": [
                        {
                            "figure": "roc_auc",
                            "held_out": 0.81,
                            "observed": 0.8,
                            "p_value": 0.38,
                            "labels": 1200,
                            "standing": "held",
                        }
                    ],
                    "error_change_at": None,
                    "estimated_accuracy": 0.965,
                    "estimate_stderr": 0.005,
                    "estimate_unreliable": False,
                }
            ],
        }
        return [
            RouteDoc(
                self.routes[0],
                "drift",
                "The latest drift window per version and source (input, prediction), feature by feature",
                {"type": "null"},
                inline(DriftReport.model_json_schema()),
                None,
                example,
                (404,),
            )
        ]

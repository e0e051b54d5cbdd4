"""Drift for a served service: a drift hook per deployed version (its reference sample from the
model store), the windows' figures in ``/metrics``, and ``GET /v1/drift``, the latest report per
version and source (input, prediction).

Each worker judges its own windows (with several workers a window fills more slowly); the report
and the gauges are that worker's (the largest value across workers in ``/metrics``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
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
from runtime.drift.hook import prediction_rows
from runtime.drift.monitor import WindowReport
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


def input_features(declaration: Declaration, columns: int) -> list[Feature]:
    """The model input's columns as features: a records service's fields (categories and flags
    categorical), a tensor service's columns numbered."""
    if declaration.kind == "records" and declaration.request is not None:
        found = [
            Feature(c.name, FeatureKind.CATEGORICAL if c.kind in ("category", "boolean") else FeatureKind.NUMERIC)
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


class DriftReport(BaseModel):
    service: str
    window_rows: int
    confirm_windows: int
    reports: list[VersionReport] = Field(description="the latest window per version and source")


class DriftWatch:
    def __init__(self, service: str, settings: Settings, metrics: RuntimeMetrics | None) -> None:
        self.service = service
        self.policy = policy(settings)
        self.metrics = metrics
        self.latest: dict[tuple[str, str], WindowReport] = {}
        self._hooks: list[DriftHook] = []
        self._lock = threading.Lock()

    def hook(self, declaration: Declaration, version: str, sample_path: Path, primary: OnnxModel) -> DriftHook | None:
        """A drift hook for ``version``, whose primary model is ``primary`` and reference sample is
        at ``sample_path``; ``None`` (logged) when there is nothing to watch."""
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
        inputs = self._monitor(version, INPUT, Reference(sample, input_features(declaration, sample.shape[1])))
        outputs = primary.run({name: sample.astype(np.float32)}, inject=False)
        columns = prediction_features(outputs)
        predictions = None
        if columns:
            reference = Reference(prediction_rows(outputs, columns), [f for _, _, f in columns])
            predictions = self._monitor(version, PREDICTION, reference)
        found = DriftHook(name, inputs, primary.name, predictions, columns)
        with self._lock:
            self._hooks.append(found)
        return found

    def _monitor(self, version: str, source: str, reference: Reference) -> DriftMonitor:
        def told(report: WindowReport) -> None:
            self.latest[version, source] = report
            if self.metrics is not None:
                self._tell_metrics(version, source, report)

        return DriftMonitor(reference, self.policy, on_report=told)

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
        )

    def close(self) -> None:
        with self._lock:
            hooks, self._hooks = self._hooks, []
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

"""Data and prediction drift: each model version's windows of live rows against its reference sample.

reference.py  the reference sample per feature, and how far a window drawn from it strays by chance
compare.py    one closed window against the reference: a test and a distance per feature
monitor.py    windows by count and time, a drift confirmed after consecutive windows, the last report
hook.py       the request hook that feeds a deployment's monitors (inputs, and the primary's outputs)
"""

from .compare import FeatureReport, compare
from .hook import DriftHook, prediction_features
from .monitor import DriftMonitor, DriftPolicy, WindowReport
from .reference import Feature, FeatureKind, Reference

__all__ = [
    "DriftHook",
    "DriftMonitor",
    "DriftPolicy",
    "Feature",
    "FeatureKind",
    "FeatureReport",
    "Reference",
    "WindowReport",
    "compare",
    "prediction_features",
]

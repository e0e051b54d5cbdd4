"""Adaptive batching: when to dispatch (queue), how rows merge and split (collate), and the
online latency model both use (cost)."""

from .collate import batch_key, merge, split
from .cost import LatencyModel
from .queue import AdaptiveBatcher, BatchObserver, BatchResult

__all__ = ["AdaptiveBatcher", "BatchObserver", "BatchResult", "LatencyModel", "batch_key", "merge", "split"]

"""An ONNX model behind onnxruntime: loading, session options, signature, warm-up, and runs in
worker threads under a capacity limit so that the event loop never blocks.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import onnxruntime as ort

from ..core.settings import Settings, StageSettings
from ..core.signature import ModelSignature
from .batching.cost import LatencyModel
from .faults import FaultInjector

log = logging.getLogger(__name__)

Arrays = dict[str, np.ndarray]


class ArtifactChanged(ValueError):
    """A model file's bytes are not those its store recorded: it is not loaded."""


_OPT_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """How to build an onnxruntime session and how many runs may go at once."""

    intra_op_threads: int = 1
    inter_op_threads: int = 1
    intra_op_spinning: bool = False
    graph_optimization: Literal["disable", "basic", "extended", "all"] = "all"
    device: Literal["cpu", "cuda"] = "cpu"
    capacity: int = 1
    """Runs allowed at the same time; each takes a worker thread."""
    inline_max_s: float = 0.0
    """Runs predicted to compute in less than this run on the calling (event-loop) thread: on a
    small VM a hop to a worker thread and back costs ~150 us, more than a tiny model's run."""

    def __post_init__(self) -> None:
        if self.capacity < 1:
            raise ValueError(f"capacity must be an integer >= 1, got {self.capacity!r}")
        if self.inline_max_s < 0:
            raise ValueError(f"inline_max_s must be >= 0, got {self.inline_max_s!r}")

    @classmethod
    def from_settings(cls, settings: Settings, stage: StageSettings | None = None) -> SessionConfig:
        """The session of a stage run with ``stage`` (the defaults of ``settings`` when ``None``)."""
        stage = stage or settings.stage("")
        return cls(
            intra_op_threads=stage.intra_op_threads,
            inter_op_threads=stage.inter_op_threads,
            intra_op_spinning=stage.intra_op_spinning,
            graph_optimization=settings.graph_optimization,
            device=settings.device,
            capacity=stage.max_batches_in_flight,
            inline_max_s=settings.inline_max_us / 1e6,
        )

    def providers(self) -> list[str]:
        available = ort.get_available_providers()
        if self.device == "cuda":
            if "CUDAExecutionProvider" in available:
                return ["CUDAExecutionProvider", "CPUExecutionProvider"]
            log.warning("device=cuda asked for, but onnxruntime offers only %s; using the CPU", available)
        return ["CPUExecutionProvider"]

    def session_options(self) -> ort.SessionOptions:
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.intra_op_threads
        options.inter_op_num_threads = self.inter_op_threads
        if not self.intra_op_spinning:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = _OPT_LEVELS[self.graph_optimization]
        options.log_severity_level = 3  # errors only; shape warnings would flood the log
        return options


class OnnxModel:
    """One loaded ONNX model: its name, version, signature and an async ``run``."""

    def __init__(
        self,
        session: ort.InferenceSession,
        *,
        name: str,
        version: str,
        config: SessionConfig,
        faults: FaultInjector | None = None,
    ) -> None:
        self.session = session
        self.name = name
        self.version = version
        self.config = config
        self.signature = ModelSignature.from_session(session)
        self.faults = faults
        self.sha256: str | None = None
        """The digest of the ONNX file the session was made from (when loaded from a file)."""
        self._output_names = [spec.name for spec in self.signature.outputs]
        self.compute = LatencyModel()
        """Seconds of pure compute per run by rows (no queueing, no thread hop)."""
        self._compute_lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=config.capacity, thread_name_prefix=f"ballast-ort-{name}")

    # --- loading ---------------------------------------------------------------------------

    @classmethod
    def from_path(
        cls,
        path: str | Path,
        *,
        name: str,
        version: str,
        config: SessionConfig | None = None,
        faults: FaultInjector | None = None,
        sha256: str | None = None,
    ) -> OnnxModel:
        """Load an ``.onnx`` file from local disk (the model store, never a request). With ``sha256``,
        the bytes read must have that digest (:class:`ArtifactChanged` otherwise); the session is made
        from those same bytes, so what was checked is what runs."""
        config = config or SessionConfig()
        data = Path(path).read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if sha256 is not None and digest != sha256:
            raise ArtifactChanged(f"{name}:{version}: {path} has SHA-256 {digest}, the store recorded {sha256}")
        session = ort.InferenceSession(data, sess_options=config.session_options(), providers=config.providers())
        model = cls(session, name=name, version=version, config=config, faults=faults)
        model.sha256 = digest
        return model

    # --- properties ------------------------------------------------------------------------

    @property
    def batchable(self) -> bool:
        """Whether every input has a free batch dimension, so that rows may be merged."""
        return all(spec.shape[0] is None for spec in self.signature.inputs)

    @property
    def providers(self) -> list[str]:
        return list(self.session.get_providers())

    # --- running ---------------------------------------------------------------------------

    def run(self, inputs: Mapping[str, np.ndarray], *, inject: bool = True) -> Arrays:
        """Run synchronously in the calling thread (``inject=False``: without the drills' faults, for
        start-up checks)."""
        if self.faults is not None and inject:
            self.faults.before_run(inputs)
        started = time.perf_counter()
        outputs = self.session.run(self._output_names, dict(inputs))
        elapsed = time.perf_counter() - started
        with self._compute_lock:
            self.compute.observe(_rows(inputs), elapsed)
        return dict(zip(self._output_names, outputs, strict=True))

    async def run_async(self, inputs: Mapping[str, np.ndarray]) -> Arrays:
        """Run in a worker thread (at most ``config.capacity`` at once), or inline when the run is
        predicted to be cheaper than the hop to a thread (see ``SessionConfig.inline_max_s``)."""
        if (
            self.faults is None
            and self.config.inline_max_s > 0
            and self.compute.predict(_rows(inputs)) <= self.config.inline_max_s
        ):
            return self.run(inputs)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.run, inputs)

    def example_inputs(self, rows: int) -> Arrays:
        """Zero-filled inputs of ``rows`` rows (symbolic row dimensions become 1)."""
        return {
            spec.name: np.zeros((rows, *(d or 1 for d in spec.row_shape)), dtype=spec.dtype)
            for spec in self.signature.inputs
        }

    def warmup(self, batch_sizes: Sequence[int], runs: int) -> list[tuple[int, float]]:
        """Run each batch size ``runs`` times; return ``(rows, seconds)`` of the last run of each,
        so that a latency model can start from real numbers."""
        timings: list[tuple[int, float]] = []
        for rows in batch_sizes:
            inputs = self.example_inputs(rows)
            for _ in range(max(runs, 1)):
                started = time.perf_counter()
                self.session.run(self._output_names, inputs)
                elapsed = time.perf_counter() - started
            with self._compute_lock:
                self.compute.observe(rows, elapsed)
            timings.append((rows, elapsed))
        return timings

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def _rows(inputs: Mapping[str, np.ndarray]) -> int:
    return len(next(iter(inputs.values())))

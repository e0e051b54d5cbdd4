from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from runtime import OnnxModel, SessionConfig, Settings


def test_loads_a_file_and_reads_its_signature(load_model: Callable[..., OnnxModel]) -> None:
    model = load_model("gather", name="g", version="9")
    assert (model.name, model.version) == ("g", "9")
    assert [(s.name, s.dtype.name, s.shape) for s in model.signature.inputs] == [
        ("x", "float32", (None, 4)),
        ("idx", "int64", (None,)),
    ]
    assert model.batchable


def test_session_options_follow_the_config(load_model: Callable[..., OnnxModel]) -> None:
    model = load_model("affine", intra_op_threads=1, inter_op_threads=1, graph_optimization="basic")
    options = model.session.get_session_options()
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (1, 1)
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert model.providers == ["CPUExecutionProvider"]
    spinning = load_model("affine", intra_op_threads=2, intra_op_spinning=True).session.get_session_options()
    with pytest.raises(Exception, match="does not have configuration"):  # onnxruntime's default: spin
        spinning.get_session_config_entry("session.intra_op.allow_spinning")


def test_cuda_asked_for_without_cuda_falls_back_to_the_cpu(load_model: Callable[..., OnnxModel]) -> None:
    import onnxruntime as ort

    model = load_model("affine", device="cuda")
    if "CUDAExecutionProvider" in ort.get_available_providers():
        assert model.providers[0] == "CUDAExecutionProvider"
    else:
        assert model.providers == ["CPUExecutionProvider"]


def record_threads(model: OnnxModel) -> set[str]:
    """The names of the threads the model's session runs on, from now on."""
    threads: set[str] = set()
    original = model.session.run

    def spy(*args: object) -> object:
        threads.add(threading.current_thread().name)
        return original(*args)

    model.session.run = spy
    return threads


async def test_runs_in_a_worker_thread_under_the_capacity_limit(load_model: Callable[..., OnnxModel]) -> None:
    model = load_model("affine", capacity=2)
    threads = record_threads(model)
    x = np.ones((3, 4), np.float32)
    results = await asyncio.gather(*(model.run_async({"x": x}) for _ in range(20)))
    assert all(np.array_equal(r["y"], x * 2 + 1) for r in results)
    assert threads
    assert all(name.startswith("ballast-ort-affine") for name in threads)
    assert len(threads) <= 2


async def test_tiny_runs_go_inline_when_allowed(load_model: Callable[..., OnnxModel]) -> None:
    model = load_model("affine", inline_max_s=0.01)
    model.warmup([1], runs=2)
    threads = record_threads(model)
    await model.run_async({"x": np.ones((1, 4), np.float32)})
    assert threads == {threading.current_thread().name}


def test_warmup_times_each_batch_size_and_seeds_the_compute_model(
    load_model: Callable[..., OnnxModel],
) -> None:
    model = load_model("affine")
    timings = model.warmup([1, 32], runs=2)
    assert [rows for rows, _ in timings] == [1, 32]
    assert all(0 < seconds < 1 for _, seconds in timings)
    assert model.compute.observations == 2


def test_config_comes_from_settings_and_refuses_bad_values() -> None:
    settings = Settings(max_batches_in_flight=3, inline_max_us=50)
    config = SessionConfig.from_settings(settings)
    assert config.capacity == 3
    assert SessionConfig.from_settings(settings, settings.stage("m", {"max_batches_in_flight": 2})).capacity == 2
    assert config.inline_max_s == pytest.approx(50e-6)
    with pytest.raises(ValueError, match="capacity must be an integer >= 1, got 0"):
        SessionConfig(capacity=0)


def test_a_file_whose_digest_is_not_the_recorded_one_is_not_loaded(model_files: dict[str, Path]) -> None:
    import hashlib

    from runtime import ArtifactChanged

    path = model_files["affine"]
    recorded = hashlib.sha256(path.read_bytes()).hexdigest()
    model = OnnxModel.from_path(path, name="a", version="1", sha256=recorded)
    assert model.sha256 == recorded
    model.close()
    with pytest.raises(ArtifactChanged, match="the store recorded 0000"):
        OnnxModel.from_path(path, name="a", version="1", sha256="0000")

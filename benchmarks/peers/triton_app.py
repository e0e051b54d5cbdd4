"""NVIDIA Triton Inference Server (the binary PyTriton ships) serving an ONNX model through a Python
inference callable that runs onnxruntime, Triton's dynamic batcher in front.

    BENCH_ONNX=model.onnx .venv-triton/bin/python benchmarks/peers/triton_app.py PORT [GRPC_PORT]

Model ``model``, one input ``x`` (FP32, [-1, width]) and one output ``y``; HTTP on ``PORT`` (the
Open Inference Protocol: ``POST /v2/models/model/infer``), gRPC on ``GRPC_PORT`` (``PORT + 1`` by
default), metrics off. Settings from the environment: ``BENCH_THREADS`` (onnxruntime intra-op
threads, 1), ``BENCH_MAX_BATCH`` (64), ``BENCH_QUEUE_DELAY_US`` (the batcher's wait for more
requests, 2000), ``BENCH_INSTANCES`` (Python model instances, 1), ``BENCH_TRITON_TOKEN`` (the
access token of Triton's restricted APIs, statistics among them: header ``triton-access-token``;
PyTriton makes up one of its own when unset).
"""

from __future__ import annotations

import os
import sys
import sysconfig

import numpy as np
import onnxruntime as ort
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig


def session() -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(os.environ.get("BENCH_THREADS", "1"))
    options.inter_op_num_threads = 1
    return ort.InferenceSession(os.environ["BENCH_ONNX"], options, providers=["CPUExecutionProvider"])


def use_own_libpython() -> None:
    """Point the Python backend's stub at this interpreter's libpython. The stub links
    ``libpython3.X.so.1.0`` by name and the loader finds the system's first (Debian's 3.11.2 here),
    whose C types lack what a newer 3.11 standard library calls (``RLock._recursion_count``): the
    model fails to load."""
    libdir = sysconfig.get_config_var("LIBDIR")
    if libdir and sysconfig.get_config_var("Py_ENABLE_SHARED"):
        os.environ["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [libdir, os.environ.get("LD_LIBRARY_PATH")]))


def main(argv: list[str]) -> None:
    use_own_libpython()
    port = int(argv[0])
    grpc_port = int(argv[1]) if len(argv) > 1 else port + 1
    instances = int(os.environ.get("BENCH_INSTANCES", "1"))
    sessions = [session() for _ in range(instances)]
    name = sessions[0].get_inputs()[0].name
    width = int(sessions[0].get_inputs()[0].shape[1])

    def infer_with(s: ort.InferenceSession):  # type: ignore[no-untyped-def]
        @batch
        def infer(x: np.ndarray) -> dict[str, np.ndarray]:
            return {"y": s.run(None, {name: x})[0]}

        return infer

    config = TritonConfig(
        http_address="127.0.0.1",
        http_port=port,
        grpc_address="127.0.0.1",
        grpc_port=grpc_port,
        allow_metrics=False,
        log_verbose=0,
    )
    security = TritonSecurityConfig(access_token=os.environ.get("BENCH_TRITON_TOKEN") or None)
    with Triton(config=config, security_config=security) as triton:
        triton.bind(
            model_name="model",
            infer_func=[infer_with(s) for s in sessions],
            inputs=[Tensor(name="x", dtype=np.float32, shape=(width,))],
            outputs=[Tensor(name="y", dtype=np.float32, shape=(-1,))],
            config=ModelConfig(
                max_batch_size=int(os.environ.get("BENCH_MAX_BATCH", "64")),
                batcher=DynamicBatcher(
                    max_queue_delay_microseconds=int(os.environ.get("BENCH_QUEUE_DELAY_US", "2000"))
                ),
            ),
            strict=False,
        )
        triton.serve()


if __name__ == "__main__":
    main(sys.argv[1:])

"""Ray Serve serving an ONNX model: one replica whose ``@serve.batch`` method runs onnxruntime, on a
local single-node Ray started by this script.

    BENCH_ONNX=model.onnx .venv-ray/bin/python benchmarks/peers/ray_app.py PORT

``POST PORT/predict`` with ``{"x": [[...], ...]}`` (rows of the model's input) answers ``{"y": [...]}``,
the first output's rows; ``GET /-/healthz`` is Ray Serve's own. Runs until SIGTERM or SIGINT.

Settings from the environment: ``BENCH_THREADS`` (onnxruntime intra-op threads, 1),
``BENCH_MAX_BATCH`` (64), ``BENCH_BATCH_WAIT_S`` (how long a batch waits to fill, 0.002),
``BENCH_MAX_ONGOING`` (requests a replica takes at once, 256: Ray's default, 5, caps a batch at 5).
Ray's own variables pass through. ``RAY_SERVE_THROUGHPUT_OPTIMIZED=1`` is the configuration Ray
offers for throughput: direct ingress (the replica serves HTTP itself; Ray's proxy, still started,
is left on a port of its own), request logs buffered, user code on the replica's event loop. Then
the replica is given ``PORT``. Without it, Ray's proxy listens on ``PORT`` and hands each request to
the replica. benchmarks/compare.py measures both.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time

import numpy as np
import onnxruntime as ort
import orjson
import ray
from ray import serve
from starlette.requests import Request
from starlette.responses import Response

MAX_BATCH = int(os.environ.get("BENCH_MAX_BATCH", "64"))
BATCH_WAIT_S = float(os.environ.get("BENCH_BATCH_WAIT_S", "0.002"))


@serve.deployment(
    num_replicas=1,
    max_ongoing_requests=int(os.environ.get("BENCH_MAX_ONGOING", "256")),
    ray_actor_options={"num_cpus": 0},
)
class Model:
    def __init__(self, onnx: str, threads: int) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(onnx, options, providers=["CPUExecutionProvider"])
        self.name = self.session.get_inputs()[0].name

    @serve.batch(max_batch_size=MAX_BATCH, batch_wait_timeout_s=BATCH_WAIT_S)
    async def run(self, batches: list[np.ndarray]) -> list[np.ndarray]:
        sizes = [len(b) for b in batches]
        y = self.session.run(None, {self.name: np.concatenate(batches)})[0]
        return np.split(y, np.cumsum(sizes)[:-1])

    async def __call__(self, request: Request) -> Response:
        x = np.asarray(orjson.loads(await request.body())["x"], dtype=np.float32)
        y = await self.run(x)
        return Response(orjson.dumps({"y": y}, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main(argv: list[str]) -> None:
    port = int(argv[0])
    proxy_port = port
    if os.environ.get("RAY_SERVE_THROUGHPUT_OPTIMIZED") == "1":  # before Ray starts: its workers inherit
        proxy_port, grpc_port = free_port(), free_port()
        os.environ["RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT"] = str(port)
        os.environ["RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT"] = str(port + 1)  # exclusive
        os.environ["RAY_SERVE_DIRECT_INGRESS_MIN_GRPC_PORT"] = str(grpc_port)
        os.environ["RAY_SERVE_DIRECT_INGRESS_MAX_GRPC_PORT"] = str(grpc_port + 1)
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": proxy_port})
    app = Model.bind(os.environ["BENCH_ONNX"], int(os.environ.get("BENCH_THREADS", "1")))
    serve.run(app, route_prefix="/predict")
    stop = False

    def end(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, end)
    signal.signal(signal.SIGINT, end)
    while not stop:
        time.sleep(0.2)
    ray.shutdown()  # the benchmark ends the whole process group: no graceful Serve shutdown


if __name__ == "__main__":
    main(sys.argv[1:])

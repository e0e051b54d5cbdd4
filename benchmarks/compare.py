"""Side-by-side serving benchmark: the same ONNX model served several ways, driven by the same load
generator (wrk) with the same payloads, in one run.

* ``raw``        onnxruntime in process, no HTTP: the limit (items/s at batch 1 and at its best size);
* ``starlette``  bare Starlette under uvicorn, one onnxruntime run per request (no batching);
* ``bentoml``    a BentoML service with ``@bentoml.api(batchable=True, max_batch_size=64,
                 max_latency_ms=100)``, BentoML's adaptive batching;
* ``triton``     NVIDIA Triton (PyTriton's tritonserver), a Python callable running onnxruntime behind
                 Triton's dynamic batcher (max batch 64, 2 ms queue delay), over the Open Inference
                 Protocol: JSON, and binary tensors for 64 rows (benchmarks/peers/triton_app.py);
* ``ray``        Ray Serve, one replica, ``@serve.batch`` (64, 2 ms) over onnxruntime, in the
                 configuration Ray offers for throughput (direct ingress: the replica serves HTTP);
* ``ray-proxy``  the same behind Ray's HTTP proxy (Ray's default): shows what the proxy costs;
* ``ballast``    ``services.tensor:Tensor`` (BentoML service, Ballast's path and batcher): its own JSON
                 and .npy routes, and the Open Inference Protocol (JSON; binary tensors for 64 rows);
* ``ballast-2w`` the same with two workers (``BALLAST_WORKERS=2``, one per core), its JSON route.

The peers run in virtual environments of their own (``make peers``). Every server gets one
onnxruntime intra-op thread unless ``--threads`` says otherwise.

All servers start first; then they climb a ladder of concurrency (wrk connections) together: at each
rung each server in turn, ``--repeats`` times, the median kept (see ``interleave``). A server's goodput
is the best req/s among the rungs with p95 <= the SLO and no non-2xx answer or socket error. The
server's CPU time and RSS (its whole process tree) are recorded per rung. Results:
``benchmarks/results/compare-MODEL.md`` and ``.png`` (p95 latency against throughput), with the
ratios the targets read: Ballast's one-row goodput over the best peer's, its 64-row binary items/s
over raw onnxruntime's best, its V2 JSON route over its own.

    python -m benchmarks.compare                 # full run (make bench)
    python -m benchmarks.compare --smoke         # seconds: checks the harness works (CI)
    python -m benchmarks.compare --variants ballast --baseline DIR   # Ballast against another checkout

``--baseline DIR`` adds, beside each Ballast server, the same service served from the checkout ``DIR``
(``git worktree add DIR COMMIT``): a change measured against the code before it, in one interleaved run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .mlp import build_mlp
from .processes import Server, cpu_and_rss

RESULTS = Path(__file__).parent / "results"
ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PEERS = {"triton": ROOT / ".venv-triton", "ray": ROOT / ".venv-ray", "ray-proxy": ROOT / ".venv-ray"}
"""Each peer's virtual environment (``make peers``)."""

STARLETTE_APP = """
import os
import numpy as np
import onnxruntime as ort
import orjson
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

options = ort.SessionOptions()
options.intra_op_num_threads = int(os.environ.get("BENCH_THREADS", "1"))
options.inter_op_num_threads = 1
session = ort.InferenceSession(os.environ["BENCH_ONNX"], options, providers=["CPUExecutionProvider"])
name = session.get_inputs()[0].name

def predict(request_body):
    x = np.asarray(orjson.loads(request_body)[name], dtype=np.float32)
    return {"y": session.run(None, {name: x})[0]}

async def handler(request):
    from starlette.concurrency import run_in_threadpool
    body = await request.body()
    result = await run_in_threadpool(predict, body)
    return Response(orjson.dumps(result, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json")

app = Starlette(routes=[Route("/predict", handler, methods=["POST"])])
"""

BENTOML_SERVICE = """
import os
import bentoml
import numpy as np
import onnxruntime as ort

@bentoml.service(workers=1)
class Native:
    def __init__(self):
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(os.environ.get("BENCH_THREADS", "1"))
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(os.environ["BENCH_ONNX"], options, providers=["CPUExecutionProvider"])
        self.name = self.session.get_inputs()[0].name

    @bentoml.api(batchable=True, max_batch_size=int(os.environ.get("BENCH_MAX_BATCH", "64")), max_latency_ms=100)
    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.name: x.astype(np.float32)})[0]
"""

WRK_SCRIPT = """
local f = io.open(os.getenv("BENCH_BODY"), "rb")
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = os.getenv("BENCH_TYPE")
wrk.headers["Accept"] = os.getenv("BENCH_TYPE")
local extra = os.getenv("BENCH_HEADER")
if extra and extra ~= "" then
  local name, value = extra:match("^([^:]+):%s*(.*)$")
  wrk.headers[name] = value
end
local threads = {}
function setup(thread) table.insert(threads, thread) end
refused = 0
if os.getenv("BENCH_COUNT_REFUSED") == "1" then  -- a callback per answer: only where it is asked for
  function response(status, headers, body) if status == 503 then refused = refused + 1 end end
end
function done(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do total = total + (thread:get("refused") or 0) end
  io.write(string.format("RESULT %d %d %d %d %d %d %d %.1f %.1f %.1f\\n",
    summary.requests, summary.duration, summary.errors.status, summary.errors.connect,
    summary.errors.read + summary.errors.write, summary.errors.timeout, total,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000))
end
"""


@dataclass
class Rung:
    connections: int
    rps: float
    items_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    bad: int
    cpu_s_per_s: float
    rss_mb: float
    refused: int = 0
    """Of ``bad``, answers 503 (overload refused as designed); counted only in a smoke run."""

    @classmethod
    def median(cls, rungs: list[Rung]) -> Rung:
        """One rung from repeats of it: the median of each measure; errors are summed."""
        if len(rungs) == 1:
            return rungs[0]

        def mid(name: str) -> float:
            return float(np.median([getattr(r, name) for r in rungs]))

        return cls(
            rungs[0].connections,
            mid("rps"),
            mid("items_per_s"),
            mid("p50_ms"),
            mid("p95_ms"),
            mid("p99_ms"),
            sum(r.bad for r in rungs),
            mid("cpu_s_per_s"),
            mid("rss_mb"),
            sum(r.refused for r in rungs),
        )


@dataclass
class Result:
    variant: str
    rows: int
    rungs: list[Rung] = field(default_factory=list)
    idle_cpu_pct: float | None = None
    soak: dict[str, float] | None = None
    triton: dict[str, float] | None = None
    """Triton's own account of its executions (see ``triton_hop``)."""

    def goodput(self, slo_ms: float) -> Rung | None:
        good = [r for r in self.rungs if r.p95_ms <= slo_ms and r.bad == 0]
        return max(good, key=lambda r: r.rps) if good else None


def drive(
    server: Server,
    path: str,
    body_file: Path,
    script: Path,
    connections: int,
    seconds: int,
    rows: int,
    content_type: str,
    header: str = "",
) -> Rung:
    """One wrk run; ``header``: one more request header, ``"Name: value"``."""
    cpu0, _ = cpu_and_rss(server.process.pid)
    started = time.monotonic()
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            f"{server.url}{path}",
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "BENCH_BODY": str(body_file), "BENCH_TYPE": content_type, "BENCH_HEADER": header},
    ).stdout
    elapsed = time.monotonic() - started
    cpu1, rss = cpu_and_rss(server.process.pid)
    match = re.search(r"^RESULT (.*)$", out, re.M)
    if match is None:
        raise RuntimeError(f"wrk gave no result:\n{out}")
    requests, micros, status, connect, rw, timeouts, refused, p50, p95, p99 = match.group(1).split()
    rps = int(requests) / (int(micros) / 1e6)
    bad = int(status) + int(connect) + int(rw) + int(timeouts)
    cpu = (cpu1 - cpu0) / elapsed
    return Rung(connections, rps, rps * rows, float(p50), float(p95), float(p99), bad, cpu, rss, int(refused))


GRPC_INFER = "/inference.GRPCInferenceService/ModelInfer"


def grpc_request(model: str, name: str, x: np.ndarray) -> bytes:
    """A ``ModelInfer`` request of one FP32 input as raw contents, serialized."""
    from services.oip import inference_pb2 as pb

    request = pb.ModelInferRequest(model_name=model, raw_input_contents=[x.astype("<f4").tobytes()])
    request.inputs.add(name=name, datatype="FP32", shape=list(x.shape))
    return bytes(request.SerializeToString())


def grpc_answer_bytes(server: Server, point: Point) -> int:
    """Make the point's call once with grpcio (it must succeed) and return the answer's size."""
    import grpc

    from services.oip import inference_pb2 as pb

    framed = point.body.read_bytes()
    with grpc.insecure_channel(f"127.0.0.1:{server.port2}") as channel:
        call = channel.unary_unary(GRPC_INFER, request_serializer=None, response_deserializer=None)
        answer = call(framed[5:], timeout=30)
    pb.ModelInferResponse.FromString(answer)  # a valid answer, or this raises
    return len(answer)


def drive_grpc(server: Server, point: Point, connections: int, seconds: int) -> Rung:
    """One h2load run of gRPC ``ModelInfer`` calls: ``connections`` HTTP/2 connections, one call in
    flight on each (closed loop, as wrk's). h2load sees HTTP statuses, not gRPC's (a gRPC error is a
    200 with no message and a status in its trailers), so a run counts as bad the calls h2load saw
    fail and any shortfall of answer bytes against ``point.answer_bytes`` per call."""
    log = Path(tempfile.mkstemp(prefix="h2load-", suffix=".tsv")[1])
    cpu0, _ = cpu_and_rss(server.process.pid)
    started = time.monotonic()
    out = subprocess.run(
        [
            "h2load",
            f"-c{connections}",
            "-m1",
            f"-D{seconds}",
            "-d",
            str(point.body),
            "-H",
            "content-type: application/grpc",
            "-H",
            "te: trailers",
            f"--log-file={log}",
            f"http://127.0.0.1:{server.port2}{GRPC_INFER}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    elapsed = time.monotonic() - started
    cpu1, rss = cpu_and_rss(server.process.pid)
    rows = [line.split("\t") for line in log.read_text().splitlines() if line]
    log.unlink()
    ok = [int(r[2]) / 1000 for r in rows if r[1] == "200"]
    match = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored", out)
    data = re.search(r"traffic: .*\((\d+)\) data", out)
    if match is None or data is None or not ok:
        raise RuntimeError(f"h2load gave no result:\n{out}")
    failed = int(match.group(2)) + int(match.group(3)) + len(rows) - len(ok)
    short = max(0, len(ok) - int(data.group(1)) // (point.answer_bytes + 5))  # 5: gRPC's frame prefix
    rps = len(ok) / seconds
    p50, p95, p99 = (float(v) for v in np.percentile(ok, [50, 95, 99]))
    return Rung(connections, rps, rps * point.rows, p50, p95, p99, failed + short, (cpu1 - cpu0) / elapsed, rss)


def _session(onnx: Path, threads: int) -> tuple[Any, str, int]:
    """An onnxruntime session of ``onnx`` with ``threads`` intra-op threads, its input's name and width."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(onnx), options, providers=["CPUExecutionProvider"])
    return session, session.get_inputs()[0].name, int(session.get_inputs()[0].shape[1])


def raw_limit(onnx: Path, sizes: list[int], seconds: float) -> dict[int, float]:
    """Items/s of onnxruntime in process at each batch size, the better of 1 and 2 intra-op threads."""

    out: dict[int, float] = {}
    for threads in (1, 2):
        session, name, width = _session(onnx, threads)
        for rows in sizes:
            x = np.random.default_rng(0).standard_normal((rows, width)).astype(np.float32)
            session.run(None, {name: x})
            n, started = 0, time.perf_counter()
            while time.perf_counter() - started < seconds:
                session.run(None, {name: x})
                n += 1
            out[rows] = max(out.get(rows, 0.0), n * rows / (time.perf_counter() - started))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="a few seconds per server: checks the harness")
    parser.add_argument(
        "--model",
        choices=["mlp", "digits", "fraud"],
        default="mlp",
        help="mlp: the 512-2048-2048-1000 MLP (built here); digits, fraud: from the model store",
    )
    parser.add_argument("--seconds", type=int, default=8, help="wrk duration per rung")
    parser.add_argument("--slo-ms", type=float, default=50.0)
    parser.add_argument(
        "--repeats", type=int, default=1, help="runs of each server at each rung, interleaved; the median counts"
    )
    parser.add_argument("--variants", default="starlette,bentoml,triton,ray,ray-proxy,ballast,ballast-2w")
    parser.add_argument(
        "--baseline", type=Path, help="also serve Ballast from this checkout (the code before a change)"
    )
    parser.add_argument("--no-bare", action="store_true", help="fraud: leave out the chain with checks and metrics off")
    parser.add_argument("--rows", default="1,64", help="request sizes to run: 1 and/or 64")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="onnxruntime intra-op threads for every server (Ballast: BALLAST_INTRA_OP_THREADS)",
    )
    parser.add_argument(
        "--max-batch",
        type=int,
        default=64,
        help="the largest batch of every server that batches (Ballast: BALLAST_MAX_BATCH_SIZE)",
    )
    parser.add_argument(
        "--soak",
        type=int,
        default=0,
        metavar="SECONDS",
        help="also load Ballast this long after warm-up and report its RSS growth",
    )
    parser.add_argument(
        "--ballast-env",
        action="append",
        default=[],
        metavar="BALLAST_X=V",
        help="settings for the Ballast server (repeatable)",
    )
    args = parser.parse_args()
    if args.smoke:  # wrk counts the 503s among the non-2xx answers (a callback per answer: not in a measurement)
        os.environ["BENCH_COUNT_REFUSED"] = "1"
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install wrk (make bench installs it)")
    work = Path(tempfile.mkdtemp(prefix="ballast-bench-"))
    (work / "native_app.py").write_text(textwrap.dedent(BENTOML_SERVICE))
    (work / "starlette_app.py").write_text(textwrap.dedent(STARLETTE_APP))
    script = work / "post.lua"
    script.write_text(WRK_SCRIPT)
    setup = SETUPS[args.model](args, work)
    if args.baseline is not None:
        setup = with_baseline(setup, args.baseline.resolve())
    ballast_env = {
        "BALLAST_INTRA_OP_THREADS": str(args.threads),
        "BALLAST_MAX_BATCH_SIZE": str(args.max_batch),
        **dict(kv.split("=", 1) for kv in args.ballast_env),
    }
    setup.env["BENCH_THREADS"] = str(args.threads)
    setup.env["BENCH_MAX_BATCH"] = str(args.max_batch)
    ladder = [4, 16] if args.smoke else [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128]
    seconds = args.seconds = 2 if args.smoke else args.seconds
    sizes = {int(r) for r in args.rows.split(",")}
    wanted = [*args.variants.split(","), *([] if args.no_bare else ["ballast-bare"]), "ballast-before"]
    plan = [p for p in setup.plan if p.variant in wanted and p.rows in sizes]
    missing = sorted({str(PEERS[p.variant]) for p in plan if p.variant in PEERS and not PEERS[p.variant].is_dir()})
    if missing:
        sys.exit(f"the peers' virtual environments are missing ({', '.join(missing)}): make peers")
    servers: dict[str, Server] = {}
    triton_before: dict[str, dict[str, Any]] = {}
    try:
        for point in plan:  # every server is up before any is measured: see interleave()
            env = {**setup.env, **(ballast_env if point.variant.startswith("ballast") else {}), **point.env}
            server = Server(setup.commands[point.variant], env, work, work / f"{point.name}-{point.rows}.log")
            servers[point.key] = server
            server.wait(point.path or setup.path, point.warm_body)  # JSON, whatever the clients send
            if point.grpc:
                point.answer_bytes = grpc_answer_bytes(server, point)
            if point.variant == "triton":
                triton_before[point.key] = triton_stats(server, setup.env["BENCH_TRITON_TOKEN"])
        results = interleave(plan, servers, setup.path, script, ladder, seconds, args)
        for point, result in zip(plan, results, strict=True):
            server = servers[point.key]
            if point.variant == "triton" and setup.onnx is not None:
                result.triton = triton_hop(
                    server, triton_before[point.key], setup.onnx, args.threads, setup.env["BENCH_TRITON_TOKEN"]
                )
        for point, result in zip(plan, results, strict=True):  # after the ladder: each server alone
            server = servers[point.key]
            result.idle_cpu_pct = idle_cpu(server, 3 if args.smoke else 15)
            if args.soak and point.rows == 1 and point.variant == "ballast":
                result.soak = soak(server, setup.path, point, script, args.soak)
    finally:
        for server in servers.values():
            server.stop()
    if args.smoke:  # the harness must have measured every path, with good answers
        assert len(results) == len(plan), "a path was not measured"
        # a 503 (overload refused as designed, on a machine running everything at once) is no fault
        bad = [f"{r.variant}: {r.rungs[0].bad}" for r in results if r.rungs and r.rungs[0].bad > r.rungs[0].refused]
        assert all(r.rungs for r in results), "a path has no rung"
        assert not bad, f"a path answered badly: {bad}"
    raw = (
        raw_limit(setup.onnx, [1, 64] if args.smoke else [1, 8, 32, 64, 128], 1 if args.smoke else 3)
        if setup.onnx
        else {}
    )
    report(results, raw, args, setup.title)
    shutil.rmtree(work, ignore_errors=True)


def interleave(
    plan: list[Point],
    servers: dict[str, Server],
    path: str,
    script: Path,
    ladder: list[int],
    seconds: int,
    args: argparse.Namespace,
) -> list[Result]:
    """Climb the ladder for every point together: at each rung, each server in turn, ``--repeats``
    times (alternating the order), then the median of each measure. This VM's speed drifts by
    10-20 % over minutes; climbing one server's ladder after another's put that drift into their
    ratio (the fraud pair gave 0 %, 14 % and 23 % in three runs), while at one rung all of them
    meet the same machine. A server leaves the ladder after a rung over 4x the SLO or with errors."""
    results = [Result(p.name, p.rows) for p in plan]
    active = list(range(len(plan)))
    for connections in ladder:
        samples: dict[int, list[Rung]] = {i: [] for i in active}
        for repeat in range(args.repeats):
            for i in active if repeat % 2 == 0 else active[::-1]:
                point = plan[i]
                samples[i].append(
                    drive_grpc(servers[point.key], point, connections, seconds)
                    if point.grpc
                    else drive(
                        servers[point.key],
                        point.path or path,
                        point.body,
                        script,
                        connections,
                        seconds,
                        point.rows,
                        point.content_type,
                        point.header,
                    )
                )
        for i in list(active):
            rung = Rung.median(samples[i])
            results[i].rungs.append(rung)
            print(
                f"{plan[i].name:30s} rows={plan[i].rows:3d} c={connections:4d} {rung.rps:8.0f} req/s "
                f"p95 {rung.p95_ms:7.1f} ms bad {rung.bad} (503: {rung.refused}) "
                f"cpu {rung.cpu_s_per_s:.2f} rss {rung.rss_mb:.0f} MB",
                flush=True,
            )
            if rung.p95_ms > 4 * args.slo_ms or rung.bad > 0:
                active.remove(i)
        if not active:
            break
    return results


@dataclass
class Point:
    """One server configuration and the request its clients send."""

    variant: str
    rows: int
    body: Path
    content_type: str
    warm_body: bytes
    name: str
    env: dict[str, str] = field(default_factory=dict)
    path: str = ""
    """The route its clients post to (empty: the setup's)."""
    header: str = ""
    """One more request header its clients send, ``"Name: value"``."""
    grpc: bool = False
    """Its clients speak gRPC (``ModelInfer``, the body a framed message) to the server's ``port2``."""

    answer_bytes: int = 0
    """gRPC: the size of a good answer's message (found by one call before the ladder)."""

    @property
    def key(self) -> str:
        return f"{self.name}-{self.rows}"


@dataclass
class Setup:
    title: str
    path: str
    onnx: Path | None
    env: dict[str, str]
    commands: dict[str, list[str]]
    plan: list[Point]


def _commands(ballast_target: str, baseline: Path | None = None) -> dict[str, list[str]]:
    ballast = [str(BIN / "bentoml"), "serve", ballast_target, "--port", "{port}", "--working-dir", str(ROOT)]
    before = [*ballast[:-1], str(baseline)] if baseline is not None else []
    return {
        "ballast-before": before,
        "starlette": [
            str(BIN / "uvicorn"),
            "starlette_app:app",
            "--port",
            "{port}",
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        "bentoml": [str(BIN / "bentoml"), "serve", "native_app:Native", "--port", "{port}"],
        "triton": [
            str(PEERS["triton"] / "bin" / "python"),
            str(ROOT / "benchmarks/peers/triton_app.py"),
            "{port}",
            "{port2}",
        ],
        "ray": [str(PEERS["ray"] / "bin" / "python"), str(ROOT / "benchmarks/peers/ray_app.py"), "{port}"],
        "ray-proxy": [str(PEERS["ray"] / "bin" / "python"), str(ROOT / "benchmarks/peers/ray_app.py"), "{port}"],
        "ballast": ballast,
        "ballast-2w": ballast,
        "ballast-bare": ballast,
    }


TRITON_MODEL = "model"
"""The model's name in the Triton peer (input ``x``, output ``y``)."""
V2_JSON, V2_BINARY, GRPC = "V2 JSON", "V2 binary", "gRPC"


def v2_json(name: str, x: np.ndarray) -> bytes:
    """An Open Inference Protocol request of one FP32 input ``name``, as JSON."""
    return json.dumps(
        {"inputs": [{"name": name, "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]}
    ).encode()


def v2_binary(name: str, x: np.ndarray) -> tuple[bytes, str]:
    """The same with the input as binary tensor data and every output asked for as binary; the body
    and its ``Inference-Header-Content-Length`` header."""
    header = json.dumps(
        {
            "inputs": [
                {"name": name, "shape": list(x.shape), "datatype": "FP32", "parameters": {"binary_data_size": x.nbytes}}
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    return header + x.astype("<f4").tobytes(), f"Inference-Header-Content-Length: {len(header)}"


def _tensor_setup(title: str, onnx: Path, tag: str, input_name: str, env: dict[str, str], work: Path) -> Setup:
    """Every server's points on one tensor model: one-row JSON everywhere (Triton's and Ballast's
    V2 JSON too), and 64 rows as Ballast's JSON and .npy, and V2 binary for Ballast and Triton."""
    rng = np.random.default_rng(1)
    width = _input_width(onnx)
    model = tag.split(":")[0]
    ballast_v2 = f"/v2/models/{model}/infer"
    triton_v2 = f"/v2/models/{TRITON_MODEL}/infer"
    plan = []
    for rows, variant, kind in [
        (1, "starlette", "json"),
        (1, "bentoml", "json"),
        (1, "triton", V2_JSON),
        (1, "ray", "json"),
        (1, "ray-proxy", "json"),
        (1, "ballast", "json"),
        (1, "ballast-2w", "json"),
        (1, "ballast", V2_JSON),
        (64, "ballast", "json"),
        (64, "ballast", "npy"),
        (64, "ballast", V2_BINARY),
        (64, "triton", V2_BINARY),
        (1, "ballast", GRPC),
        (1, "triton", GRPC),
        (64, "ballast", GRPC),
        (64, "triton", GRPC),
    ]:
        x = (rng.random((rows, width)) * 16).round(2).astype(np.float32)
        key = {"bentoml": "x", "ray": "x", "ray-proxy": "x", "triton": "x"}.get(variant, input_name)
        body = work / f"{variant}-{rows}-{kind.replace(' ', '-')}"
        content_type, path, header = "application/json", "", ""
        if kind == "npy":
            with open(body, "wb") as f:
                np.save(f, x, allow_pickle=False)
            content_type = "application/x-npy"
        elif kind == V2_BINARY:
            data, header = v2_binary(key, x)
            body.write_bytes(data)
            content_type = "application/octet-stream"
        elif kind == V2_JSON:
            body.write_bytes(v2_json(key, x))
        elif kind == GRPC:
            message = grpc_request(TRITON_MODEL if variant == "triton" else model, key, x)
            body.write_bytes(b"\0" + len(message).to_bytes(4, "big") + message)
            content_type = "application/grpc"
        else:
            body.write_text(json.dumps({key: x.tolist()}))
        if variant == "triton" or kind not in ("json", "npy"):
            path = triton_v2 if variant == "triton" else ballast_v2
            warm = v2_json(key, x[:1])
        else:
            warm = json.dumps({key: x[:1].tolist()}).encode()
        name = variant if kind == "json" else f"{variant} ({'.npy' if kind == 'npy' else kind})"
        point_env = {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"} if variant == "ray" else {}
        if variant == "ballast" and kind == GRPC:
            point_env["BALLAST_GRPC_PORT"] = "{port2}"
        if variant == "ballast-2w":
            point_env["BALLAST_WORKERS"] = "2"  # one per core
        plan.append(Point(variant, rows, body, content_type, warm, name, point_env, path, header, kind == GRPC))
    env = {
        **env,
        "BENCH_ONNX": str(onnx),
        "BALLAST_TENSOR_MODEL": tag,
        "BENTOML_DO_NOT_TRACK": "true",
        "PYTHONPATH": str(ROOT),
        "BENCH_TRITON_TOKEN": secrets.token_hex(16),
    }
    return Setup(title, "/predict", onnx, env, _commands("services.tensor:Tensor"), plan)


BEFORE = "before: "


def with_baseline(setup: Setup, baseline: Path) -> Setup:
    """``setup`` with each Ballast point twinned by the same service from the checkout ``baseline``."""
    setup.commands = _commands(setup.commands["ballast"][2], baseline)
    twins = [
        Point(
            "ballast-before",
            p.rows,
            p.body,
            p.content_type,
            p.warm_body,
            BEFORE + p.name,
            {"PYTHONPATH": str(baseline)},
        )
        for p in setup.plan
        if p.variant == "ballast"
    ]
    setup.plan = [
        q for p in setup.plan for q in ([p, *[t for t in twins if t.name == BEFORE + p.name and t.rows == p.rows]])
    ]
    return setup


def _input_width(onnx: Path) -> int:
    import onnxruntime as ort

    return int(ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"]).get_inputs()[0].shape[1])


def _stored_onnx(tag: str) -> Path:
    out = subprocess.run(
        [sys.executable, "-c", f"import bentoml; print(bentoml.models.get({tag!r}).path_of('model.onnx'))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(out.stdout.strip().splitlines()[-1])


def setup_mlp(args: argparse.Namespace, work: Path) -> Setup:
    widths = (64, 32, 10) if args.smoke else (512, 2048, 2048, 1000)
    onnx = build_mlp(work / "mlp.onnx", widths)
    home = {"BENTOML_HOME": str(work / "bentoml")}
    subprocess.run(  # a child process: the harness's own store, not the user's
        [sys.executable, "-m", "models.store", "bench-mlp", str(onnx)],
        check=True,
        cwd=ROOT,
        env={**os.environ, **home},
        stdout=subprocess.DEVNULL,
    )
    return _tensor_setup(
        f"MLP {'-'.join(map(str, widths))} (random weights)", onnx, "bench-mlp:latest", "x", home, work
    )


def setup_digits(args: argparse.Namespace, work: Path) -> Setup:
    return _tensor_setup(
        "digits-mlp (64-128-10, from the model store)",
        _stored_onnx("digits-mlp:latest"),
        "digits-mlp:latest",
        "input",
        {},
        work,
    )


FULL_CHAIN = "ballast (full chain)"
BARE_CHAIN = "ballast (checks, metrics off)"


def setup_fraud(args: argparse.Namespace, work: Path) -> Setup:
    from models import fraud

    body = work / "transaction.json"
    body.write_text(json.dumps(fraud.generate(1, seed=11)[0][0]))
    off = {"BALLAST_CONTENT_CHECKS": "false", "BALLAST_METRICS_ENABLED": "false"}
    plan = [
        Point("ballast", 1, body, "application/json", body.read_bytes(), FULL_CHAIN),
        Point("ballast-bare", 1, body, "application/json", body.read_bytes(), BARE_CHAIN, off),
    ]
    env = {"BENTOML_DO_NOT_TRACK": "true", "PYTHONPATH": str(ROOT)}
    return Setup(
        "fraud-gbt chain (from the model store), POST /score",
        "/score",
        None,
        env,
        _commands("services.fraud:Fraud"),
        plan,
    )


SETUPS = {"mlp": setup_mlp, "digits": setup_digits, "fraud": setup_fraud}


def triton_stats(server: Server, token: str) -> dict[str, Any]:
    """The model's entry of Triton's statistics API (a restricted API: PyTriton's token)."""
    import urllib.request

    request = urllib.request.Request(
        f"{server.url}/v2/models/{TRITON_MODEL}/stats", headers={"triton-access-token": token}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        found: dict[str, Any] = json.load(response)["model_stats"][0]
    return found


def triton_hop(server: Server, before: dict[str, Any], onnx: Path, threads: int, token: str) -> dict[str, float]:
    """Where Triton's time went during the ladder (its statistics now, less ``before``, taken after
    the warm-up): per execution (one batch through the Python backend), the mean batch, the wait in
    its queue, and ``compute_infer``, which spans the backend's stub, PyTriton's hop to the
    callable's process and back, and the callable itself; then onnxruntime's own time for the same
    batch sizes, timed here in process with the same threads. The difference, ``hop_ms``, is what
    PyTriton's path between processes adds to each execution."""

    after = triton_stats(server, token)

    def spent(stats: dict[str, Any], part: str) -> tuple[int, int]:
        entry = stats["inference_stats"][part]
        return int(entry["count"]), int(entry["ns"])

    def delta(part: str) -> tuple[int, int]:
        (c1, n1), (c0, n0) = spent(after, part), spent(before, part)
        return c1 - c0, n1 - n0

    def by_size(stats: dict[str, Any]) -> dict[int, tuple[int, int, int]]:
        """Per batch size: executions, and their nanoseconds in compute_infer and in the copies."""
        return {
            int(e["batch_size"]): (
                int(e["compute_infer"]["count"]),
                int(e["compute_infer"]["ns"]),
                int(e["compute_input"]["ns"]) + int(e["compute_output"]["ns"]),
            )
            for e in stats["batch_stats"]
        }

    earlier = by_size(before)
    session, name, width = _session(onnx, threads)
    executions = rows = infer_ns = io_ns = 0
    onnx_ns = 0.0
    for size, (count, ns, io) in by_size(after).items():
        c0, n0, i0 = earlier.get(size, (0, 0, 0))
        count, ns, io = count - c0, ns - n0, io - i0
        if count <= 0:
            continue
        executions, rows, infer_ns, io_ns = executions + count, rows + count * size, infer_ns + ns, io_ns + io
        x = np.random.default_rng(0).standard_normal((size, width)).astype(np.float32)
        session.run(None, {name: x})
        runs, started = 0, time.perf_counter()
        while time.perf_counter() - started < 0.1 or runs < 5:
            session.run(None, {name: x})
            runs += 1
        onnx_ns += count * (time.perf_counter() - started) / runs * 1e9
    per = max(executions, 1)
    queued, queue_ns = delta("queue")  # per request, not per execution
    return {
        "executions": executions,
        "mean_batch": rows / per,
        "queue_ms": queue_ns / max(queued, 1) / 1e6,
        "compute_infer_ms": infer_ns / per / 1e6,
        "onnxruntime_ms": onnx_ns / per / 1e6,
        "hop_ms": (infer_ns - onnx_ns) / per / 1e6,
        "io_ms": io_ns / per / 1e6,
    }


def idle_cpu(server: Server, seconds: float) -> float:
    """Percent of one core the server's processes use while nobody sends anything."""
    time.sleep(2)
    cpu0, _ = cpu_and_rss(server.process.pid)
    time.sleep(seconds)
    cpu1, _ = cpu_and_rss(server.process.pid)
    return (cpu1 - cpu0) / seconds * 100


def soak(server: Server, path: str, point: Point, script: Path, seconds: int) -> dict[str, float]:
    """RSS before and after ``seconds`` of steady load (16 connections), after a 30 s warm-up."""
    drive(server, path, point.body, script, 16, 30, point.rows, point.content_type)
    _, before = cpu_and_rss(server.process.pid)
    rung = drive(server, path, point.body, script, 16, seconds, point.rows, point.content_type)
    _, after = cpu_and_rss(server.process.pid)
    return {
        "seconds": seconds,
        "rss_before_mb": before,
        "rss_after_mb": after,
        "growth_mb": after - before,
        "rps": rung.rps,
        "p95_ms": rung.p95_ms,
    }


def report(results: list[Result], raw: dict[int, float], args: argparse.Namespace, title: str) -> None:
    lines = [
        f"Model: {title}. SLO p95 <= {args.slo_ms:.0f} ms. onnxruntime intra-op threads: {args.threads} for every "
        f"server; largest batch {args.max_batch} for every server that batches"
        f"{'; Ballast settings: ' + ', '.join(args.ballast_env) if args.ballast_env else ''}. "
        f"Load: wrk (1 thread, {args.seconds} s per run) on the same machine; at each rung of connections every "
        f"server in turn, {args.repeats} time(s), median kept. Machine: "
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}.",
        "",
        "| path | rows/request | goodput req/s | items/s | p95 at goodput | server CPU (cores) | RSS MB | idle CPU |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        best = r.goodput(args.slo_ms)
        idle = f"{r.idle_cpu_pct:.2f} %" if r.idle_cpu_pct is not None else ""
        if best is None:
            lines.append(f"| {r.variant} | {r.rows} | none within SLO | | | | | {idle} |")
        else:
            lines.append(
                f"| {r.variant} | {r.rows} | {best.rps:,.0f} | {best.items_per_s:,.0f} | {best.p95_ms:.1f} ms"
                f" | {best.cpu_s_per_s:.2f} | {best.rss_mb:.0f} | {idle} |"
            )
    if raw:
        best_rows = max(raw, key=lambda k: raw[k])
        lines.append(f"| raw onnxruntime, in process | 1 | | {raw[1]:,.0f} | | 1-2 threads | | |")
        lines.append(
            f"| raw onnxruntime, in process | {best_rows} (best) | | {raw[best_rows]:,.0f} | | 1-2 threads | | |"
        )
    lines.extend(targets(results, raw, args.slo_ms))
    for r in results:
        if r.triton:
            t = r.triton
            lines.append(
                f"\n{r.variant}, {r.rows} row(s), Triton's statistics over the ladder: {t['executions']:,.0f} "
                f"executions, {t['mean_batch']:.1f} rows each on average; a request queued {t['queue_ms']:.2f} ms; "
                f"per execution {t['compute_infer_ms']:.2f} ms in compute_infer, of which onnxruntime takes "
                f"{t['onnxruntime_ms']:.2f} ms "
                f"(the same batch sizes timed in process): PyTriton's hop between processes adds "
                f"**{t['hop_ms']:.2f} ms** per execution ({t['hop_ms'] / max(t['compute_infer_ms'], 1e-9):.0%} of it); "
                f"the backend's input and output copies {t['io_ms']:.2f} ms."
            )
    full = next((r for r in results if r.variant == FULL_CHAIN), None)
    bare = next((r for r in results if r.variant == BARE_CHAIN), None)
    if full and bare and (a := full.goodput(args.slo_ms)) and (b := bare.goodput(args.slo_ms)):
        same = [f.rps / o.rps for f, o in zip(full.rungs, bare.rungs, strict=False)]
        lines.append(
            f"\nCost of validation, hooks and metrics: {1 - a.rps / b.rps:.0%} of goodput "
            f"({a.rps:,.0f} against {b.rps:,.0f} req/s); at equal connections the full chain made "
            f"{float(np.median(same)):.2f}x the req/s of the bare one (median over {len(same)} rungs)."
        )
    for before in [r for r in results if r.variant.startswith(BEFORE)]:
        after = next(r for r in results if r.variant == before.variant.removeprefix(BEFORE) and r.rows == before.rows)
        ratios = [a.items_per_s / b.items_per_s for a, b in zip(after.rungs, before.rungs, strict=False)]
        lines.append(
            f"\n{after.variant}, {after.rows} row(s): at equal connections, {float(np.median(ratios)):.2f}x the "
            f"throughput of the baseline (median over {len(ratios)} rungs; range {min(ratios):.2f}-{max(ratios):.2f})."
        )
    for r in results:
        if r.soak:
            lines.append(
                f"\nSoak ({r.variant}): {r.soak['seconds']:.0f} s at 16 connections after a 30 s warm-up: RSS "
                f"{r.soak['rss_before_mb']:.0f} -> {r.soak['rss_after_mb']:.0f} MB "
                f"({r.soak['growth_mb']:+.0f} MB), {r.soak['rps']:,.0f} req/s, p95 {r.soak['p95_ms']:.1f} ms."
            )
    text = "\n".join(lines)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    name = f"compare-{args.model}" + ("-smoke" if args.smoke else "")
    (RESULTS / f"{name}.md").write_text(text + "\n")
    (RESULTS / f"{name}.json").write_text(json.dumps({"results": [asdict(r) for r in results], "raw": raw}, indent=1))
    plot(results, RESULTS / f"{name}.png", args.slo_ms, title)


PEER_VARIANTS = ("bentoml", "triton", "ray", "ray-proxy")


def targets(results: list[Result], raw: dict[int, float], slo_ms: float) -> list[str]:
    """The ratios the targets read: Ballast's one-row goodput (its own JSON route; one worker, and
    one per core) over the best peer's (>= 1.5); its 64-row V2 binary items/s over raw onnxruntime's
    at its best batch (>= 0.9); its one-row V2 JSON goodput over its own JSON route's (>= 0.9)."""

    def best(variant: str, rows: int) -> tuple[Result, Rung] | None:
        found = next((r for r in results if r.variant == variant and r.rows == rows), None)
        good = found.goodput(slo_ms) if found else None
        return (found, good) if found and good else None

    out = []
    own = best("ballast", 1)
    peers = [b for v in PEER_VARIANTS if (b := best(v, 1)) or (b := best(f"{v} ({V2_JSON})", 1))]
    if own and peers:
        top = max(peers, key=lambda b: b[1].rps)
        out.append(
            f"\nBallast one row, own JSON route: **{own[1].rps / top[1].rps:.2f}x** the best peer's goodput "
            f"({own[1].rps:,.0f} against {top[0].variant}'s {top[1].rps:,.0f} req/s; target >= 1.5)."
        )
        two = best("ballast-2w", 1)
        if two:
            out.append(
                f"\nBallast one row, two workers (one per core): **{two[1].rps / top[1].rps:.2f}x** "
                f"({two[1].rps:,.0f} req/s)."
            )
    binary = best(f"ballast ({V2_BINARY})", 64)
    if binary and raw:
        limit = max(raw.values())
        out.append(
            f"\nBallast 64 rows over V2 binary: **{binary[1].items_per_s / limit:.2f}x** raw onnxruntime's best "
            f"({binary[1].items_per_s:,.0f} against {limit:,.0f} items/s; target >= 0.9)."
        )
    v2 = best(f"ballast ({V2_JSON})", 1)
    if own and v2:
        out.append(
            f"\nBallast one row, V2 JSON route against its own JSON route: **{v2[1].rps / own[1].rps:.2f}x** "
            f"({v2[1].rps:,.0f} against {own[1].rps:,.0f} req/s; target >= 0.9)."
        )
    return out


def plot(results: list[Result], path: Path, slo_ms: float, title: str) -> None:
    """p95 latency against throughput, one panel per request size; rungs with errors or refusals
    are left out (a refusal is fast, and would draw a throughput nobody was served)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted({r.rows for r in results})
    fig, axes = plt.subplots(1, len(sizes), figsize=(7 * len(sizes), 5), squeeze=False)
    for ax, rows in zip(axes[0], sizes, strict=True):
        for r in results:
            good = [g for g in r.rungs if g.bad == 0]
            if r.rows != rows or not good:
                continue
            ax.plot([g.items_per_s for g in good], [g.p95_ms for g in good], marker="o", label=r.variant)
        ax.axhline(slo_ms, color="grey", linestyle="--", linewidth=1, label=f"SLO p95 {slo_ms:.0f} ms")
        ax.set_xlabel("throughput (items/s)")
        ax.set_ylabel("p95 latency (ms)")
        ax.set_yscale("log")
        ax.set_title(f"{title}: {rows} row(s) per request", fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()

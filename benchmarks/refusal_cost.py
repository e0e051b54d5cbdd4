"""What one answer costs the CPU that gives it: a refusal at Ballast's door, a refusal by nginx, nginx
passing a request on, and the cheapest 200 uvicorn gives. The arithmetic of the overload drill: under
a burst of 4x capacity, 3x capacity must be refused, and goodput stays >= 0.9x capacity only if those
refusals take under 10 % of the core, i.e. if one costs under 1/30 of an answer (about 12 us against
the fraud chain's ~400 us, 27 us against the heavy MLP's ~800 us; ``make overload`` prints both).

    python -m benchmarks.refusal_cost [--seconds 5] [--rounds 3] [--connections 32]

Variants, the server (and nginx) pinned to CPU 0 and wrk to CPU 1, in interleaved rounds:

* ``door-refusal``   uvicorn with Ballast's protocol (services/http/protocol.py), the worker full
  (``BALLAST_MAX_INFLIGHT``-style cap of 1, one request held in the app): every POST /score is
  refused at the door (``server_full``), a prepared 503 and no request cycle;
* ``uvicorn-200``    the same server answering an unguarded path from a minimal ASGI app;
* ``nginx-refusal``  nginx from deploy/nginx.conf.template, limit 1 with one request held: every
  POST /score gets nginx's 503 + Retry-After without reaching the server;
* ``nginx-pass``     the same nginx passing POST /livez (not limited) to the server: nginx's own CPU
  per request, paid on top of the server's by every answer that goes through it.

CPU per answer is the serving process tree's utime + stime over the run divided by the answers.
Needs ``wrk`` and ``nginx`` (Debian packages). Results: benchmarks/results/refusal_cost.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import sys
import tempfile
from pathlib import Path

from .compare import WRK_SCRIPT, drive
from .overload import RESULTS, ROOT
from .processes import Server, start_nginx

UPSTREAM = """
import asyncio, sys
import uvicorn
from services.http import protocol
from services.http.admission import Admission

class App:  # where the protocol finds its admission and read timeout, as on a front door
    admission = Admission(0.0, max_inflight=1)
    read_timeout_s = 3600.0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        if scope["path"] == "/hold":  # in flight until its client leaves
            await asyncio.Event().wait()
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"{}"})

App.admission.guard(["/score"])
protocol.install()
uvicorn.run(App(), host="127.0.0.1", port=int(sys.argv[1]), http="auto", log_level="warning", access_log=False)
"""


def hold(server: Server) -> socket.socket:
    """A request to ``/hold`` through ``server``, left in flight while the socket stays open."""
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(b"POST /hold HTTP/1.1\r\nHost: a\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}")
    return sock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    for tool in ("wrk", "nginx", "taskset"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is needed (apt-get install wrk nginx-light)")
    work = Path(tempfile.mkdtemp(prefix="ballast-refusal-"))
    (work / "upstream.py").write_text(UPSTREAM)
    (work / "body.json").write_text("{}")
    script = work / "post.lua"
    script.write_text(WRK_SCRIPT)
    env = {"PYTHONPATH": str(ROOT)}
    upstream = Server(
        ["taskset", "-c", "0", sys.executable, str(work / "upstream.py"), "{port}"], env, work, work / "upstream.log"
    )
    nginx = start_nginx(upstream, work / "nginx", 1, 0, 1 << 20, log=False)
    os.sched_setaffinity(0, {1})  # wrk runs on CPU 1
    variants = {
        "door-refusal": (upstream, "/score", 503),
        "uvicorn-200": (upstream, "/other", 200),
        "nginx-refusal": (nginx, "/score", 503),
        "nginx-pass": (nginx, "/livez", 200),
    }
    cost: dict[str, list[float]] = {name: [] for name in variants}
    rate: dict[str, list[float]] = {name: [] for name in variants}
    try:
        upstream.wait("/other", b"{}")
        nginx.wait("/livez", b"{}")
        for round_ in range(args.rounds):
            order = list(variants) if round_ % 2 == 0 else list(reversed(variants))
            for name in order:
                server, path, status = variants[name]
                held = hold(server) if status == 503 else None
                try:
                    rung = drive(
                        server, path, work / "body.json", script, args.connections, args.seconds, 1, "application/json"
                    )
                finally:
                    if held is not None:
                        held.close()
                refused_share = rung.bad / max(1.0, rung.rps * args.seconds)  # non-2xx answers
                if not (rung.bad == 0 if status == 200 else refused_share > 0.99):
                    raise RuntimeError(f"{name}: expected every answer to be {status}, got {rung}")
                cost[name].append(rung.cpu_s_per_s / rung.rps * 1e6)
                rate[name].append(rung.rps)
                each = f"{rung.rps:8.0f} answers/s {cost[name][-1]:6.1f} us CPU each"
                print(f"round {round_ + 1} {name:14s} {each}", flush=True)
    finally:
        nginx.stop()
        upstream.stop()
        shutil.rmtree(work, ignore_errors=True)
    lines = [
        f"CPU per answer, median of {args.rounds} interleaved rounds of {args.seconds} s, wrk -c{args.connections} "
        "(server and nginx on CPU 0, wrk on CPU 1).",
        "",
        "| variant | answers/s | CPU per answer |",
        "|---|---|---|",
        *(
            f"| {name} | {statistics.median(rate[name]):,.0f} | {statistics.median(cost[name]):.1f} us |"
            for name in variants
        ),
    ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "refusal_cost.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

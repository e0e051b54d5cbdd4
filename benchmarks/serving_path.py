"""Which HTTP path should a Ballast service use inside BentoML? A constant JSON endpoint served
each way, driven by the same load generator, in interleaved rounds of one run:

* ``starlette``        bare Starlette under uvicorn (the floor);
* ``bentoml-api``      a BentoML ``@bentoml.api`` endpoint (BentoML's IO descriptors);
* ``bentoml-mount``    the same Starlette app mounted in a BentoML service (``@bentoml.asgi_app``);
* ``bentoml-mount-lean`` mounted, with BentoML's access log off, ``traffic.timeout`` set, and the
  app's paths excluded from OpenTelemetry tracing (Ballast records its own per-request metrics);
* ``bentoml-mount-lean-nometrics`` as above, with BentoML's HTTP metrics middleware off too.

For each: requests/s, and the server's CPU time per request (utime + stime of the serving
processes over the run), which is steadier than throughput on a shared machine.

    python -m benchmarks.serving_path [--seconds 6] [--rounds 2] [--connections 16]

Needs ``wrk`` (Debian package ``wrk``).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path

from .processes import Server, cpu_and_rss

APP = """
import orjson
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

async def score(request):
    body = orjson.loads(await request.body())
    return Response(orjson.dumps({"probability": 0.5, "fields": len(body)}), media_type="application/json")

app = Starlette(routes=[Route("/score", score, methods=["POST"])])
"""

SERVICES = {
    "bentoml-api": """
import bentoml

@bentoml.service(workers=1)
class Svc:
    @bentoml.api
    async def score(self, amount: float, currency: str) -> dict:
        return {"probability": 0.5, "fields": 2}
""",
    "bentoml-mount": """
import bentoml
from app import app

@bentoml.service(workers=1)
@bentoml.asgi_app(app, path="/v1")
class Svc:
    pass
""",
    "bentoml-mount-lean": """
import bentoml
from app import app

@bentoml.service(workers=1, traffic={"timeout": 10}, logging={"access": {"enabled": False}})
@bentoml.asgi_app(app, path="/v1")
class Svc:
    pass
""",
    "bentoml-mount-lean-nometrics": """
import bentoml
from app import app

@bentoml.service(workers=1, traffic={"timeout": 10}, logging={"access": {"enabled": False}},
                 metrics={"enabled": False})
@bentoml.asgi_app(app, path="/v1")
class Svc:
    pass
""",
}
LEAN_CONFIG = 'tracing:\n  excluded_urls: ["/v1", "/metrics", "/livez", "/readyz"]\n'
BODY = '{"amount": 12.5, "currency": "EUR"}'


@dataclass
class Variant:
    name: str
    command: list[str]
    path: str
    env: dict[str, str]


def measure(variant: Variant, seconds: int, connections: int, workdir: Path) -> tuple[float, float]:
    server = Server(
        variant.command, {**variant.env, "BENTOML_DO_NOT_TRACK": "true"}, workdir, workdir / f"{variant.name}.log"
    )
    try:
        server.wait(variant.path, BODY.encode())
        script = workdir / "post.lua"
        cpu_before, _ = cpu_and_rss(server.process.pid)
        out = subprocess.run(
            ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(script), f"{server.url}{variant.path}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        cpu = cpu_and_rss(server.process.pid)[0] - cpu_before
        requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
        if "Non-2xx" in out:
            raise RuntimeError(f"{variant.name}: non-2xx answers\n{out}")
        return requests / seconds, cpu / requests
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install wrk")
    bin_dir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "app.py").write_text(textwrap.dedent(APP))
        (work / "lean.yaml").write_text(LEAN_CONFIG)
        (work / "post.lua").write_text(
            f"wrk.method = 'POST'\nwrk.body = '{BODY}'\nwrk.headers['Content-Type'] = 'application/json'\n"
        )
        home = {"BENTOML_HOME": str(work / "bentoml")}
        variants = [
            Variant(
                "starlette",
                [
                    str(bin_dir / "uvicorn"),
                    "app:app",
                    "--port",
                    "{port}",
                    "--log-level",
                    "warning",
                    "--no-access-log",
                ],
                "/score",
                {},
            )
        ]
        for name, source in SERVICES.items():
            module = name.replace("-", "_")
            (work / f"{module}.py").write_text(textwrap.dedent(source))
            env = {**home, **({"BENTOML_CONFIG": str(work / "lean.yaml")} if "lean" in name else {})}
            path = "/score" if name == "bentoml-api" else "/v1/score"
            variants.append(
                Variant(name, [str(bin_dir / "bentoml"), "serve", f"{module}:Svc", "--port", "{port}"], path, env)
            )
        results: dict[str, list[tuple[float, float]]] = {v.name: [] for v in variants}
        for _ in range(args.rounds):
            for variant in variants:
                results[variant.name].append(measure(variant, args.seconds, args.connections, work))
    base = sum(r for r, _ in results["starlette"]) / args.rounds
    print(f"| path | req/s (mean of {args.rounds}) | server CPU µs per request | req/s vs Starlette |")
    print("|---|---|---|---|")
    for name, rows in results.items():
        rate = sum(r for r, _ in rows) / len(rows)
        cpu = sum(c for _, c in rows) / len(rows)
        print(f"| {name} | {rate:,.0f} | {cpu * 1e6:,.0f} | {rate / base:.2f} |")


if __name__ == "__main__":
    main()

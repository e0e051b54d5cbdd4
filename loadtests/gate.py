"""The SLO gate: run locust headless against a service for a bounded time, compare the result with
the service's SLOs, print target against measured, exit 1 if any is missed.

    python -m loadtests.gate --url http://127.0.0.1:3000 --users 16 --duration 30s
    python -m loadtests.gate --service examples/wine/service.py --slo-file examples/wine/slo.toml ...
    python -m loadtests.gate ... --scenario faults --expect-fallback 0.3

The service is the one serving at ``--url`` (its ``/schema.json`` names it); ``--service`` (a name
``services.find`` knows) makes sure it is the one you meant. Its SLOs are the section of its name in
``--slo-file`` (loadtests/slo.toml by default). The load is ``--locustfile`` when given, else the
service's own ``loadtests/NAME_locust.py`` when there is one, else every prediction route's OpenAPI
example (loadtests/openapi_locust.py).

Reports (locust's CSV and HTML) go to loadtests/reports/<service>-<scenario>-*. The share of answers
that came from a fallback stage is read from the service's /metrics before and after the run
(``ballast_requests_total``), so it counts every answer, across all workers.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import subprocess
import sys
import tomllib
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

HERE = Path(__file__).resolve().parent
USER_CLASSES = {  # (service, scenario) -> the user class of loadtests/SERVICE_locust.py
    ("fraud", "normal"): "FraudClient",
    ("fraud", "faults"): "FraudFaultClient",
    ("digits", "normal"): "DigitsClient",
    ("digits", "faults"): "DigitsFaultClient",
}
GENERIC = (HERE / "openapi_locust.py", "OpenAPIClient")
_OUTCOME = re.compile(r'^ballast_requests_total\{[^}]*outcome="(\w+)"[^}]*\}\s+([0-9.e+]+)$', re.M)


@dataclass(frozen=True)
class Check:
    name: str
    target: str
    measured: str
    ok: bool


def outcomes(url: str) -> dict[str, float]:
    """``ballast_requests_total`` by outcome, summed over pipelines and workers."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        return parse_outcomes(response.read().decode())


def parse_outcomes(text: str) -> dict[str, float]:
    totals: dict[str, float] = {}
    for outcome, value in _OUTCOME.findall(text):
        totals[outcome] = totals.get(outcome, 0.0) + float(value)
    return totals


def served_name(url: str) -> str:
    """The name of the service serving at ``url``."""
    with urllib.request.urlopen(f"{url}/schema.json", timeout=10) as response:
        return str(json.load(response)["name"])


def locustfile(service: str, scenario: str, given: Path | None, user_class: str | None) -> tuple[Path, str | None]:
    """The locustfile and user class that load ``service``."""
    if given is not None:
        return given, user_class
    own = HERE / f"{service}_locust.py"
    if own.is_file() and (service, scenario) in USER_CLASSES:
        return own, USER_CLASSES[service, scenario]
    return GENERIC


def run_locust(load: tuple[Path, str | None], url: str, users: int, duration: str, prefix: Path) -> dict[str, str]:
    prefix.parent.mkdir(parents=True, exist_ok=True)
    path, user_class = load
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(path),
        *([user_class] if user_class else []),
        "--headless",
        "--host",
        url,
        "--users",
        str(users),
        "--spawn-rate",
        str(users),
        "--run-time",
        duration,
        "--stop-timeout",
        "5",
        "--csv",
        str(prefix),
        "--html",
        f"{prefix}.html",
        "--only-summary",
        "--exit-code-on-error",
        "0",
        "--loglevel",
        "WARNING",
    ]
    subprocess.run(command, check=True, cwd=HERE.parent, timeout=_seconds(duration) + 120)
    with open(f"{prefix}_stats.csv", newline="") as f:
        rows = {row["Name"]: row for row in csv.DictReader(f)}
    return rows["Aggregated"]


def _seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(s|m|h)?", duration)
    if not match:
        raise argparse.ArgumentTypeError(f"duration must look like 20s, 5m or 1h, got {duration!r}")
    return float(match.group(1)) * {"s": 1, "m": 60, "h": 3600, None: 1}[match.group(2)]


def evaluate(slo: dict[str, float], stats: dict[str, str], seconds: float) -> list[Check]:
    requests = int(stats["Request Count"])
    failures = int(stats["Failure Count"])
    p95 = float(stats["95%"]) if requests else float("inf")
    rps = requests / seconds
    error_rate = failures / requests if requests else 1.0
    return [
        Check("p95 latency", f"<= {slo['p95_ms']:.0f} ms", f"{p95:.0f} ms", p95 <= slo["p95_ms"]),
        Check("throughput", f">= {slo['min_rps']:.0f} req/s", f"{rps:.0f} req/s", rps >= slo["min_rps"]),
        Check(
            "error rate",
            f"<= {slo['max_error_rate']:.2%}",
            f"{error_rate:.2%} ({failures}/{requests})",
            error_rate <= slo["max_error_rate"],
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--service", help="the service you mean to test (a name services.find knows)")
    parser.add_argument("--url", default="http://127.0.0.1:3000")
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--duration", default="30s", help="locust run time: 20s, 5m ...")
    parser.add_argument(
        "--scenario",
        choices=["normal", "faults"],
        default="normal",
        help="faults: the server runs with BALLAST_FAULT_* set; the fallback share is reported",
    )
    parser.add_argument(
        "--expect-fallback",
        type=float,
        default=None,
        help="also check that this share (within 0.05) of answers came from a fallback",
    )
    parser.add_argument("--slo-file", type=Path, default=HERE / "slo.toml", help="a [SERVICE] section of SLOs")
    parser.add_argument("--locustfile", type=Path, help="your own load (default: the service's, or its examples)")
    parser.add_argument("--user-class", help="the locustfile's user class (default: all of them)")
    parser.add_argument("--reports", type=Path, default=HERE / "reports")
    args = parser.parse_args(argv)

    host = urlparse(args.url).hostname or ""
    if not (host == "localhost" or host.startswith("127.") or host == "::1"):
        parser.error(f"load tests only target this machine (127.0.0.0/8, localhost), got {host!r}")
    seconds = _seconds(args.duration)
    name = served_name(args.url)
    if args.service is not None:
        from services.find import find

        try:
            meant = find(args.service).name
        except LookupError as exc:
            parser.error(str(exc.args[0]))
        if meant != name:
            parser.error(f"{args.url} serves {name!r}, not {meant!r}")
    slos = tomllib.loads(args.slo_file.read_text())
    if name not in slos:
        parser.error(
            f"no SLOs for {name!r} in {args.slo_file}: add a [{name}] section with p95_ms, min_rps and "
            "max_error_rate, or name another file with --slo-file"
        )
    slo = slos[name]
    load = locustfile(name, args.scenario, args.locustfile, args.user_class)

    before = outcomes(args.url)
    stats = run_locust(load, args.url, args.users, args.duration, args.reports / f"{name}-{args.scenario}")
    after = outcomes(args.url)
    checks = evaluate(slo, stats, seconds)
    served = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in ("success", "fallback")}
    answered = served["success"] + served["fallback"]
    share = served["fallback"] / answered if answered else 0.0
    if args.expect_fallback is not None:
        checks.append(
            Check(
                "fallback share",
                f"{args.expect_fallback:.2f} ± 0.05",
                f"{share:.3f}",
                abs(share - args.expect_fallback) <= 0.05,
            )
        )

    print(f"\nSLO gate: {name}, scenario {args.scenario}, {args.users} users, {args.duration} against {args.url}")
    print(f"load: {load[0].relative_to(HERE.parent) if load[0].is_relative_to(HERE.parent) else load[0]}")
    print(f"{'SLO':<16}{'target':<22}{'measured':<28}result")
    for c in checks:
        print(f"{c.name:<16}{c.target:<22}{c.measured:<28}{'pass' if c.ok else 'FAIL'}")
    print(f"fallback share: {share:.3f} ({served['fallback']:.0f} of {answered:.0f} answers)")
    print(f"reports: {args.reports}/{name}-{args.scenario}_*.csv and .html")
    return 0 if all(c.ok for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())

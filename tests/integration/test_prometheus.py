"""A real Prometheus (Debian's package, started here on loopback) scrapes a real fraud server every
second and evaluates deploy/prometheus/rules.yml: steady traffic leaves BallastDriftConfirmed
quiet; traffic with amounts four times larger makes it fire, naming the feature, and /metrics
agrees with what Prometheus stored. Every query of the Grafana dashboard is then evaluated by the
same Prometheus: each parses, and those of the panels that traffic feeds return series."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import yaml

from models import fraud
from tests.deploy.test_grafana import dashboard
from tests.integration.conftest import free_port
from tests.integration.test_drift import WINDOW, send

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"


@contextlib.contextmanager
def prometheus(target: str, tmp_path: Path) -> Iterator[str]:
    """Prometheus scraping ``target`` (host:port) every second with the project's rules; its URL."""
    binary = shutil.which("prometheus")
    assert binary, "prometheus is needed (make test installs it: apt-get install prometheus)"
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [{"job_name": "ballast-fraud", "static_configs": [{"targets": [target]}]}],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = open(tmp_path / "prometheus.log", "w")  # noqa: SIM115 -- the process writes it
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, "prometheus exited: " + (tmp_path / "prometheus.log").read_text()[-2000:]
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/-/ready", timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, "prometheus was not ready within 60 s"
            time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def alerts(url: str, name: str) -> list[dict[str, Any]]:
    found = httpx.get(f"{url}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
    return [a for a in found if a["labels"]["alertname"] == name]


def query(url: str, expr: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=10).json()
    assert answer["status"] == "success", answer
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def until(check: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"{what} within {timeout_s:.0f} s"
        time.sleep(0.5)


def test_the_drift_alert_fires_in_a_real_prometheus_under_shifted_traffic(
    serve: Callable[..., Any], tmp_path: Path
) -> None:
    env = {"BALLAST_DRIFT_WINDOW_ROWS": str(WINDOW), "BALLAST_DRIFT_MIN_ROWS": "100"}
    steady, _ = fraud.generate(2 * WINDOW, seed=5)
    moved, _ = fraud.generate(2 * WINDOW, seed=6)
    for t in moved:
        t["amount"] = min(round(t["amount"] * 4, 2), 50_000.0)
    with serve("services.fraud:Fraud", **env) as url, prometheus(url.removeprefix("http://"), tmp_path) as prom:
        until(lambda: query(prom, 'up{job="ballast-fraud"} == 1'), 30, "the server scraped")
        send(url, steady)
        windows = 'sum(ballast_drift_windows_total{job="ballast-fraud", source="input"})'
        until(lambda: [r for r in query(prom, windows) if float(r["value"][1]) >= 2], 30, "two windows seen")
        time.sleep(3)  # a few evaluations with the steady windows' gauges
        quiet = alerts(prom, "BallastDriftConfirmed")
        send(url, moved)
        fired = until(
            lambda: [a for a in alerts(prom, "BallastDriftConfirmed") if a["state"] == "firing"],
            60,
            "BallastDriftConfirmed firing",
        )
        stored = query(prom, 'ballast_drift_confirmed{feature="amount", source="input"}')
        exported = httpx.get(f"{url}/metrics", timeout=10).text
        panels = {
            p["title"]: [len(query(prom, grafana(t["expr"]))) for t in p["targets"]]
            for p in dashboard()["panels"]
            if p["type"] != "row"
        }
    assert quiet == []
    assert {a["labels"]["feature"] for a in fired} >= {"amount"}
    [amount] = [a for a in fired if a["labels"]["feature"] == "amount"]
    assert amount["labels"]["pipeline"] == "fraud"
    assert amount["labels"]["source"] == "input"
    assert amount["labels"]["severity"] == "warning"
    assert "amount" in amount["annotations"]["summary"]
    assert [float(r["value"][1]) for r in stored] == [1.0]
    version = stored[0]["metric"]["version"]
    assert f'ballast_drift_confirmed{{feature="amount",pipeline="fraud",source="input",version="{version}"}} 1.0' in (
        exported
    )
    fed = (
        "Requests per second, by outcome",
        "p50 / p95 / p99 latency",
        "Rows per batch (p50, p95)",
        "Distance over threshold, per feature",
        "Confirmed drift, per feature",
        "Score: change seen by ADWIN",
        "Calibrated accuracy estimate (no labels), +- 2 standard errors",
    )
    assert [title for title in fed if not all(panels[title])] == []


def grafana(expr: str) -> str:
    """A dashboard query as Grafana sends it with every variable at "All"."""
    return expr.replace("$pipeline", ".*").replace("$version", ".*").replace("$__rate_interval", "1m")

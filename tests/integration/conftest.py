"""Integration fixtures: a model store built by the real `models.build`, and real `bentoml serve`
processes on free ports, spoken to over HTTP."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Bento:
    """A bento built by `python -m services.package` (what `make bento` runs)."""

    tag: str
    path: Path
    models: frozenset[str]
    """The names of the models it packs."""
    files: frozenset[str]
    """The Python files of its source, relative to the project."""


def build_bento(spec: str, home: Path) -> Bento:
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true"}
    built = subprocess.run(
        [sys.executable, "-m", "services.package", spec], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert built.returncode == 0, built.stderr
    tag = built.stdout.strip().splitlines()[-1]
    where = subprocess.run(
        [str(BIN / "bentoml"), "get", tag, "-o", "path"], env=env, check=True, capture_output=True, text=True
    )
    path = Path(where.stdout.strip().splitlines()[-1])
    [service] = yaml.safe_load((path / "bento.yaml").read_text())["services"]
    files = frozenset(p.relative_to(path / "src").as_posix() for p in (path / "src").rglob("*.py"))
    return Bento(tag, path, frozenset(m["tag"].split(":")[0] for m in service["models"]), files)


_PORTS = random.Random()  # its own generator: hypothesis seeds the global one inside tests


def free_port() -> int:
    """A free loopback port below Linux's ephemeral range (32768-60999): a port the kernel hands out
    for port 0 is also one it hands to outgoing connections, and one of those can take it between
    this check and the server's bind (seen as "Address already in use" at start-up)."""
    for _ in range(200):
        port = _PORTS.randrange(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 20000-32000")


@pytest.fixture(scope="session")
def bentoml_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model store of the tests' own, filled by `python -m models.build` (both tasks)."""
    home = tmp_path_factory.mktemp("bentoml")
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true"}
    subprocess.run(
        [sys.executable, "-m", "models.build"], cwd=ROOT, env=env, check=True, timeout=600, stdout=subprocess.DEVNULL
    )
    return home


class Served(str):
    """A served service's base URL, with the `bentoml serve` process behind it."""

    process: subprocess.Popen[bytes]
    log: Path


@contextmanager
def serving(target: str, home: Path, env: dict[str, str] | None = None) -> Iterator[Served]:
    """Run `bentoml serve target` until the block ends; yield its base URL once /readyz is 200."""
    port = free_port()
    # Each server gets a BentoML home of its own that shares the model store and bentos: `bentoml
    # serve` empties $BENTOML_HOME/prometheus_multiproc_dir at start, so two servers on one home
    # would wipe each other's metrics.
    # A port can come round again in a later test: the home's name is made unique, not the port's.
    server_home = Path(tempfile.mkdtemp(prefix=f"home-{port}-", dir=home))
    for part in ("models", "bentos"):
        if (home / part).is_dir():
            (server_home / part).symlink_to(home / part)
    log = open(server_home / "serve.log", "w")  # noqa: SIM115 -- closed in finally
    process = subprocess.Popen(
        [str(BIN / "bentoml"), "serve", target, "--port", str(port)],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "BENTOML_HOME": str(server_home), "BENTOML_DO_NOT_TRACK": "true", **(env or {})},
    )
    url = Served(f"http://127.0.0.1:{port}")
    url.process, url.log = process, server_home / "serve.log"
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"bentoml serve exited early:\n{url.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{target} was not ready within 90 s")
            time.sleep(0.3)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):  # a test may have stopped it
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


@pytest.fixture(scope="session")
def serve(bentoml_home: Path) -> Callable[..., object]:
    def start(target: str, **env: str) -> object:
        return serving(target, bentoml_home, env)

    return start


@pytest.fixture(scope="session")
def fraud_url(bentoml_home: Path) -> Iterator[str]:
    with serving("services.fraud:Fraud", bentoml_home) as url:
        yield url


@pytest.fixture(scope="session")
def digits_url(bentoml_home: Path) -> Iterator[str]:
    with serving("services.digits:Digits", bentoml_home) as url:
        yield url

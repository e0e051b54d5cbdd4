"""Servers the benchmarks start and watch: a free loopback port, a server process in its own
process group (stopped with its children), the CPU time and RSS of a process tree, and nginx's
configuration from deploy/nginx.conf.template."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from services.http.nginx import render


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_nginx(upstream: Server, prefix: Path, max_inflight: int, cpu: int, max_body: int, log: bool) -> Server:
    """nginx from deploy/nginx.conf.template in front of ``upstream``, pinned to ``cpu``, its files
    under ``prefix`` (made here): at most ``max_inflight`` prediction requests pass, the rest get its
    503 + Retry-After (``proxy_busy``). ``log``: requests go to ``prefix/access.log`` (format
    ``ballast`` of the template), else nowhere."""
    prefix.mkdir()
    port = free_port()
    conf = prefix / "nginx.conf"
    conf.write_text(
        render(
            {
                "LISTEN": f"127.0.0.1:{port}",
                "UPSTREAM": f"127.0.0.1:{upstream.port}",
                "MAX_INFLIGHT": str(max_inflight),
                "PREFIX": str(prefix),
                "MAX_BODY": str(max_body),
                "ACCESS_LOG": f"{prefix / 'access.log'} ballast buffer=256k flush=1s" if log else "off",
            }
        )
    )
    command = ["taskset", "-c", str(cpu), "nginx", "-c", str(conf), "-p", str(prefix)]
    return Server(command, {}, prefix, prefix / "nginx.log", port=port)


def tree(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-e", "-o", "pid=,ppid="], capture_output=True, text=True).stdout
    children: dict[int, list[int]] = {}
    for line in out.splitlines():
        p, pp = map(int, line.split())
        children.setdefault(pp, []).append(p)
    found, stack = [], [pid]
    while stack:
        p = stack.pop()
        found.append(p)
        stack.extend(children.get(p, []))
    return found


def cpu_and_rss(pid: int) -> tuple[float, float]:
    """CPU seconds and RSS (MB) of a process tree."""
    tick, page = os.sysconf("SC_CLK_TCK"), os.sysconf("SC_PAGE_SIZE")
    cpu = rss = 0.0
    for p in tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        cpu += (int(fields[11]) + int(fields[12])) / tick
        rss += int(fields[21]) * page / 1e6
    return cpu, rss


class Server:
    def __init__(self, command: list[str], env: dict[str, str], cwd: Path, log: Path, port: int | None = None) -> None:
        """Start ``command`` in a process group of its own; ``{port}`` in the command or in ``env``'s
        values is the server's port, ``{port2}`` a second free one (say, for gRPC: ``port2``)."""
        self.port = port or free_port()
        self.port2 = free_port()

        def fill(text: str) -> str:
            return text.replace("{port}", str(self.port)).replace("{port2}", str(self.port2))

        self.log = open(log, "w")  # noqa: SIM115 -- closed in stop()
        self.process = subprocess.Popen(
            [fill(c) for c in command],
            cwd=cwd,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **{k: fill(v) for k, v in env.items()}},
        )
        self.url = f"http://127.0.0.1:{self.port}"

    def wait(self, path: str, body: bytes, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early, see {self.log.name}")
            try:
                request = urllib.request.Request(
                    f"{self.url}{path}", data=body, headers={"Content-Type": "application/json"}
                )
                with urllib.request.urlopen(request, timeout=10) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        raise TimeoutError(f"server not ready, see {self.log.name}")

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.log.close()

"""Soak: the fraud service at 70 % of its measured capacity for 10 minutes (``make soak``).

Capacity as in benchmarks/overload.py (wrk ladder, p95 <= the SLO of loadtests/slo.toml, server on
CPU 0 and load on CPU 1). Then ``hey`` holds 70 % of it, one minute at a time; after each minute the
server's RSS and open file descriptors (its whole process tree) are read. The first minute is the
warm-up. Checks (exit 1 on a miss): RSS growth after warm-up <= 50 MB; p95 of the last minute within
10 % of the first minute after warm-up (plus 1 ms, below which a percentile on this VM is noise);
open file descriptors flat (no more than 5 above the post-warm-up count); no non-2xx. Each minute
also records the server's own count of its answers by outcome and refusal reason (``/metrics``),
which names the cause of any non-2xx. Results:
benchmarks/results/soak.md and .json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .overload import RESULTS, count_delta, hey, measure_capacity, server_counts, start_pinned
from .processes import cpu_and_rss, tree


def open_fds(pid: int) -> int:
    count = 0
    for p in tree(pid):
        try:
            count += len(os.listdir(f"/proc/{p}/fd"))
        except (FileNotFoundError, PermissionError):
            continue
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=int, default=10)
    parser.add_argument("--load", type=float, default=0.7, help="share of capacity to hold")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ballast-soak-"))
    target = start_pinned("fraud", work, [], "soak")
    server, body, slo_ms = target.server, target.body, target.slo_ms
    minutes: list[dict[str, Any]] = []
    try:
        server.wait(target.path, body.read_bytes())
        capacity = measure_capacity(server, target.path, body, target.script, slo_ms)[0].rps
        rate = capacity * args.load
        print(f"capacity {capacity:.0f} req/s; holding {rate:.0f} req/s for {args.minutes} min", flush=True)
        counted = server_counts(server.url)
        for minute in range(args.minutes):
            run = hey(server.url, body, 32, rate, 60, target.path)
            now = server_counts(server.url)
            said, counted = count_delta(counted, now), now
            _, rss = cpu_and_rss(server.process.pid)
            entry = {
                "minute": minute + 1,
                "rps": len(run.statuses) / run.seconds,
                "p95_ms": float(np.percentile(run.latencies, 95) * 1000),
                "non_2xx": int((run.statuses != 200).sum()),
                "rss_mb": rss,
                "fds": open_fds(server.process.pid),
                "server_counts": said,
            }
            minutes.append(entry)
            print(
                f"minute {entry['minute']:2d}: {entry['rps']:6.0f} req/s p95 {entry['p95_ms']:5.1f} ms "
                f"non-2xx {entry['non_2xx']} RSS {rss:.0f} MB fds {entry['fds']} server: {said}",
                flush=True,
            )
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    warm, last = minutes[0], minutes[-1]
    first = minutes[1] if len(minutes) > 2 else warm
    growth = last["rss_mb"] - warm["rss_mb"]
    drift = (last["p95_ms"] - first["p95_ms"]) / first["p95_ms"]
    checks = {
        "RSS growth after warm-up <= 50 MB": growth <= 50,
        "p95 drift <= 10 % (+1 ms)": last["p95_ms"] <= first["p95_ms"] * 1.1 + 1.0,
        "open fds flat (<= +5)": last["fds"] <= first["fds"] + 5,
        "no non-2xx": all(m["non_2xx"] == 0 for m in minutes),
    }
    lines = [
        f"Soak, fraud service (server on CPU 0, load on CPU 1): {args.load:.0%} of {capacity:,.0f} req/s "
        f"for {args.minutes} min, SLO p95 <= {slo_ms:.0f} ms.",
        "",
        "| minute | req/s | p95 ms | non-2xx | RSS MB | open fds | the server's count (/metrics) |",
        "|---|---|---|---|---|---|---|",
        *(
            f"| {m['minute']} | {m['rps']:,.0f} | {m['p95_ms']:.1f} | {m['non_2xx']} | {m['rss_mb']:.0f} | {m['fds']} "
            f"| {', '.join(f'{k}: {v}' for k, v in m['server_counts'].items())} |"
            for m in minutes
        ),
        "",
        f"RSS {warm['rss_mb']:.0f} -> {last['rss_mb']:.0f} MB after the warm-up minute ({growth:+.0f} MB); "
        f"p95 {first['p95_ms']:.1f} -> {last['p95_ms']:.1f} ms ({drift:+.0%}); fds {first['fds']} -> {last['fds']}.",
        "",
        *(f"- [{'x' if ok else ' '}] {name}" for name, ok in checks.items()),
    ]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "soak.md").write_text("\n".join(lines) + "\n")
    (RESULTS / "soak.json").write_text(json.dumps({"capacity": capacity, "minutes": minutes, "checks": checks}))
    print("\n".join(lines))
    sys.exit(0 if all(checks.values()) else 1)


if __name__ == "__main__":
    main()

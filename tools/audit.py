"""Audit the locked dependencies (``constraints.txt``) for known vulnerabilities: ``make audit``.

pip-audit does the work. Where it cannot reach its vulnerability service it skips the package and
still ends with "No known vulnerabilities found" -- which is what happens on this project's build
machine, whose PyPI proxy answers the project JSON (``/pypi/NAME/json``) but not the per-release
JSON pip-audit asks for. So every package pip-audit skipped is looked up again in PyPI's project
JSON, whose ``vulnerabilities`` list is about the latest release: a pin that *is* the latest release
is audited that way; any other pin is reported as not audited, by name, never as clean.

Exit status: 1 when a known vulnerability affects a pin; with ``--strict`` also when any pin could
not be audited; else 0.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Report:
    vulnerable: dict[str, list[str]] = field(default_factory=dict)
    """``name==version`` -> advisory ids."""
    audited: list[str] = field(default_factory=list)
    unaudited: dict[str, str] = field(default_factory=dict)
    """``name==version`` -> why it could not be audited."""


def normalize(name: str) -> str:
    """PEP 503: ``Foo_Bar.baz`` and ``foo-bar-baz`` are one project."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(constraints: Path) -> dict[str, str]:
    lines = (line.split("#", 1)[0].strip() for line in constraints.read_text().splitlines())
    pairs = (line.partition("==") for line in lines if "==" in line)
    return {normalize(name): version.strip() for name, _, version in pairs}


def run_pip_audit(constraints: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "audit.json"
        subprocess.run(
            [
                *(sys.executable, "-m", "pip_audit", "-r", str(constraints)),
                *("--no-deps", "--disable-pip", "--progress-spinner", "off", "-f", "json", "-o", str(out)),
            ],
            check=False,  # exit 1 means vulnerabilities: read them from the report
            stderr=subprocess.DEVNULL,
        )
        return dict(json.loads(out.read_text()))


def pypi_latest(name: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"https://pypi.org/pypi/{name}/json", timeout=30) as response:
        data = json.load(response)
    return {"version": data["info"]["version"], "vulnerabilities": data.get("vulnerabilities") or []}


def merge(
    locked: dict[str, str], pip_audit: dict[str, Any], latest: Callable[[str], dict[str, Any]] = pypi_latest
) -> Report:
    report = Report()
    skipped = []
    for dep in pip_audit["dependencies"]:
        name = normalize(dep["name"])
        pin = f"{name}=={locked.get(name, dep.get('version', '?'))}"
        if "skip_reason" in dep:
            skipped.append(name)
        elif dep.get("vulns"):
            report.vulnerable[pin] = [v["id"] for v in dep["vulns"]]
        else:
            report.audited.append(pin)
    with ThreadPoolExecutor(8) as pool:
        answers = dict(zip(skipped, pool.map(_safe(latest), skipped), strict=True))
    for name, answer in answers.items():
        pin = f"{name}=={locked[name]}"
        if isinstance(answer, Exception):
            report.unaudited[pin] = f"PyPI did not answer: {answer}"
        elif answer["version"] != locked[name]:
            report.unaudited[pin] = f"not the latest release ({answer['version']}); no per-release data here"
        elif answer["vulnerabilities"]:
            report.vulnerable[pin] = [v.get("id", "?") for v in answer["vulnerabilities"]]
        else:
            report.audited.append(pin)
    return report


def _safe(fn: Callable[[str], dict[str, Any]]) -> Callable[[str], dict[str, Any] | Exception]:
    def call(name: str) -> dict[str, Any] | Exception:
        try:
            return fn(name)
        except Exception as exc:  # reported per package as not audited
            return exc

    return call


def render(report: Report) -> Iterable[str]:
    yield (
        f"audited: {len(report.audited)} pins; known vulnerabilities: {len(report.vulnerable)}; "
        f"not audited: {len(report.unaudited)}"
    )
    for pin, ids in sorted(report.vulnerable.items()):
        yield f"VULNERABLE  {pin}: {', '.join(ids)}"
    for pin, why in sorted(report.unaudited.items()):
        yield f"NOT AUDITED {pin}: {why}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--constraints", type=Path, default=ROOT / "constraints.txt")
    parser.add_argument("--strict", action="store_true", help="also fail when a pin could not be audited")
    args = parser.parse_args(argv)
    report = merge(pins(args.constraints), run_pip_audit(args.constraints))
    print(*render(report), sep="\n")
    return 1 if report.vulnerable or (args.strict and report.unaudited) else 0


if __name__ == "__main__":
    sys.exit(main())

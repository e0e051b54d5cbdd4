"""Writes the reference pages from the code, so that they cannot drift from it:

    python -m tools.reference          # docs/reference/settings.md and docs/reference/metrics.md
    python -m tools.reference --check  # exit 1 if either page is not what the code says (make test)

Settings come from the settings classes (each field's environment variable, default and docstring);
metrics from the families :class:`runtime.RuntimeMetrics` registers (name, type, labels, help).
"""

from __future__ import annotations

import argparse
import ast
import inspect
import itertools
import json
import re
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

ROOT = Path(__file__).resolve().parents[1]
PAGES = ROOT / "docs" / "reference"


def settings_classes() -> list[tuple[str, type[BaseModel], str]]:
    from runtime import DrillSettings, Settings, StageSettings
    from services.fraud import FraudSettings
    from services.settings import ServerSettings
    from services.tensor import TensorSettings

    return [
        ("Serving: deadlines, the chain, breakers, onnxruntime, stage defaults", Settings, "BALLAST_"),
        ("The HTTP server: workers, limits, draining, door control, credentials", ServerSettings, "BALLAST_"),
        ("Drills and measurement switches (off in production)", DrillSettings, "BALLAST_"),
        ("The fraud service", FraudSettings, "BALLAST_FRAUD_"),
        ("The tensor service", TensorSettings, "BALLAST_TENSOR_"),
        ("One model stage (in a declaration's `Stage(...)` or `BALLAST_STAGES`)", StageSettings, ""),
    ]


def docstrings(cls: type) -> dict[str, str]:
    """Each field's docstring (the string literal after its annotation), joined on one line."""
    tree = ast.parse(inspect.getsource(sys.modules[cls.__module__]))
    body = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls.__name__).body
    found = {}
    for stmt, following in itertools.pairwise(body):
        if (
            isinstance(stmt, ast.AnnAssign)
            and isinstance(stmt.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
        ):
            text = " ".join(str(following.value.value).split()).replace("``", "`")
            found[stmt.target.id] = re.sub(
                r":attr:`StageSettings\.(\w+)`",
                r"every stage's `\1` unless its service or `BALLAST_STAGES` sets it",
                text,
            )
    return found


def default(value: Any) -> str:
    if value is PydanticUndefined or value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


def settings_page() -> str:
    lines = [
        "# Settings",
        "",
        "Every setting is an environment variable, read once per process when a service starts and checked",
        "then: a bad value stops start-up with the value in the message. Defaults in brackets. This page is",
        "written by `python -m tools.reference` from the settings classes' docstrings.",
        "",
        "A model stage takes the stage defaults of the serving settings, then what the service declares",
        'for it (`Stage("tag", max_batch_size=1)`), then `BALLAST_STAGES` (JSON by model name, e.g.',
        '`{"fraud-logreg": {"max_batch_size": 1}}`): the operator\'s word is last.',
    ]
    for title, cls, prefix in settings_classes():
        lines += ["", f"## {title}", "", f"`{cls.__module__}.{cls.__name__}`", "", "| setting | meaning |", "|---|---|"]
        notes = docstrings(cls)
        for name, field in cls.model_fields.items():
            shown = f"{prefix}{name}".upper() if prefix else name
            value = field.default_factory() if field.default_factory is not None else field.default  # type: ignore[call-arg]
            lines.append(f"| `{shown}` [{default(value)}] | {notes.get(name, '')} |")
    return "\n".join(lines) + "\n"


def metrics_page() -> str:
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

    from runtime import RuntimeMetrics

    metrics = RuntimeMetrics(CollectorRegistry())
    families = [v for v in vars(metrics).values() if isinstance(v, Counter | Gauge | Histogram)]
    lines = [
        "# Metrics",
        "",
        "Namespace `ballast_`, base units, counters end in `_total`. Metric families are built on first use",
        "inside the worker (not at import), so they land in BentoML's multiprocess directory and appear at",
        "the service's `/metrics`. Per-request series are gathered in process memory and written to",
        "Prometheus at most 0.5 s later, before every scrape of `/metrics` and when a deployment closes",
        "(`runtime/observe/metrics.py`, `MetricBuffer`): with several workers, another worker's last",
        "half-second may be missing from one scrape; a killed worker loses at most that half-second.",
        "This page is written by `python -m tools.reference` from `runtime.RuntimeMetrics`.",
        "",
        "| metric | type | labels | meaning |",
        "|---|---|---|---|",
    ]
    for family in families:
        kind = type(family).__name__.lower()
        name = family._name + ("_total" if kind == "counter" else "")
        labels = ", ".join(family._labelnames)
        lines.append(f"| `{name}` | {kind} | {labels} | {family._documentation} |")
    lines += [
        "",
        "Label values are codes (`runtime/core/codes.py`): outcomes `success`, `fallback`, `rejected`,",
        "`error`, `cancelled`; fallback reasons `error`, `timeout`, `invalid_output`, `circuit_open`,",
        "`overloaded`; shed reasons `queue_full`, `deadline`, `shutting_down`; refusal reasons `server_busy`",
        "(waited too long before its handler), `server_behind` (refused on arrival while the server is",
        "behind), `server_full` (refused on arrival while `BALLAST_MAX_INFLIGHT` requests are in),",
        "`shutting_down`, and the error types of requests the front door refused. The refusals' `route`",
        "is a route's path, `/v2/models/{model}/infer` for any Open Inference Protocol inference (every",
        "model and version under one value), or `other`.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    pages = {PAGES / "settings.md": settings_page(), PAGES / "metrics.md": metrics_page()}
    stale = [path for path, text in pages.items() if not path.is_file() or path.read_text() != text]
    if args.check:
        for path in stale:
            print(f"{path.relative_to(ROOT)} is not what the code says: run python -m tools.reference", file=sys.stderr)
        return 1 if stale else 0
    PAGES.mkdir(parents=True, exist_ok=True)
    for path, text in pages.items():
        path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

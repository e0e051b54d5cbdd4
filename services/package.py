"""Build the bento of one service, holding only the code that service imports and the models it
declares::

    python -m services.package fraud                    # the bento ballast-fraud
    python -m services.package examples/wine/service.py  # ballast-wine, with the wine service alone

The service is imported in a fresh interpreter and every module of this project it loaded is
included (the runtime, the services' framework, its own module and what it imports); the other
services are not. The bentofile is written to ``build/bentofile-NAME.yaml`` (``bentofile.yaml`` at the
top is the fraud service's, kept equal to what this writes by a test); BentoML's generated Dockerfile
is linted with hadolint (errors fail the build).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from .find import ROOT, find

LIST_MODULES = """
import importlib, json, sys
from pathlib import Path
root = Path(sys.argv[1]).resolve()
sys.path.insert(0, str(root))
importlib.import_module(sys.argv[2])
files = set()
for module in list(sys.modules.values()):
    path = getattr(module, "__file__", None)
    if path and Path(path).resolve().is_relative_to(root) and ".venv" not in Path(path).parts:
        files.add(Path(path).resolve().relative_to(root).as_posix())
print(json.dumps(sorted(files)))
"""


def included(target: str) -> list[str]:
    """The project's files that importing the service loads."""
    module = target.partition(":")[0]
    out = subprocess.run(
        [sys.executable, "-c", LIST_MODULES, str(ROOT), module],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    return [path for path in json.loads(out.stdout.strip().splitlines()[-1]) if path.endswith(".py")]


def bentofile(target: str, name: str, include: list[str]) -> str:
    """The bentofile of the service ``target`` (YAML; JSON is YAML)."""
    document: dict[str, Any] = {
        "service": target,
        "name": f"ballast-{name}",
        "labels": {"project": "ballast", "service": name},
        "include": include,
        "python": {"requirements_txt": "./bento-requirements.txt"},
        "docker": {"python_version": "3.11"},
    }
    header = (
        f"# The bento of the {name} service, written by `python -m services.package` (make bento): the\n"
        "# project's modules the service imports, and nothing else. The models come from its declaration.\n"
    )
    return header + json.dumps(document, indent=2) + "\n"


def build(spec: str, lint: bool = True) -> str:
    """Build the bento of the service ``spec`` names; return its tag."""
    found = find(spec)
    path = ROOT / "build" / f"bentofile-{found.name}.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(bentofile(found.target, found.name, included(found.target)))
    bin_dir = Path(sys.executable).parent
    result = subprocess.run(
        [str(bin_dir / "bentoml"), "build", "-f", str(path), "--output", "tag"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    tag = result.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    if lint:
        where = subprocess.run(
            [str(bin_dir / "bentoml"), "get", tag, "-o", "path"], check=True, capture_output=True, text=True
        )
        dockerfile = Path(where.stdout.strip().splitlines()[-1]) / "env" / "docker" / "Dockerfile"
        subprocess.run([str(bin_dir / "hadolint"), "--failure-threshold", "error", str(dockerfile)], check=True)
    return tag


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("services", nargs="+", metavar="SERVICE")
    parser.add_argument("--no-lint", action="store_true", help="skip hadolint on the generated Dockerfile")
    args = parser.parse_args(argv)
    for spec in args.services:
        try:
            print(build(spec, lint=not args.no_lint))
        except LookupError as exc:
            print(f"services.package: {exc.args[0]}", file=sys.stderr)
            return 2
        except subprocess.CalledProcessError as exc:
            output = f"{exc.stdout or ''}{exc.stderr or ''}"
            print(f"services.package: {' '.join(exc.cmd)} failed:\n{output}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

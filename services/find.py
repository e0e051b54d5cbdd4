"""Which service a name means, for ``make serve``, ``make bento`` and ``make loadtest``::

    python -m services.find fraud                       -> services.fraud:Fraud
    python -m services.find examples/wine/service.py    -> examples.wine.service:WineService
    python -m services.find examples.wine.service       -> the same
    python -m services.find mypkg.mod:Svc --name        -> the service's declared name (wine, fraud, ...)

A bare name is a built-in service (``services/NAME.py``); a dotted module or a ``.py`` path relative to
the project is searched for its one Ballast service; ``module:Attribute`` is taken as it is. Anything
else is an error that lists the built-in services, never a silent fallback to one of them.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .bento import BallastService

ROOT = Path(__file__).resolve().parents[1]
BUILT_IN = ("fraud", "digits", "tensor")


@dataclass(frozen=True)
class Found:
    target: str
    """``module:Attribute``, what ``bentoml serve`` takes."""
    name: str
    """The service's declared name."""
    service: Any


def find(spec: str) -> Found:
    """The service ``spec`` names; :class:`LookupError` with the reason when it names none."""
    if ":" in spec:
        module_name, _, attribute = spec.partition(":")
        service = getattr(_import(module_name), attribute, None)
        if not isinstance(service, BallastService):
            raise LookupError(f"{module_name} has no Ballast service named {attribute!r}")
        return Found(spec, service.name, service)
    if spec.endswith(".py"):
        module_name = ".".join(Path(spec).with_suffix("").parts)
    elif "." in spec or "/" in spec:
        module_name = spec.replace("/", ".")
    elif spec in BUILT_IN:
        module_name = f"services.{spec}"
    else:
        raise LookupError(
            f"unknown service {spec!r}: the built-in ones are {', '.join(BUILT_IN)}; "
            "name your own as a module (examples.wine.service), a file (examples/wine/service.py) "
            "or module:Service"
        )
    module = _import(module_name)
    services = {name: v for name, v in vars(module).items() if isinstance(v, BallastService)}
    if len(services) != 1:
        raise LookupError(f"{module_name} declares {len(services)} Ballast services ({sorted(services)}); name one")
    [(attribute, service)] = services.items()
    return Found(f"{module_name}:{attribute}", service.name, service)


def _import(module_name: str) -> Any:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise LookupError(f"no module {module_name!r} ({exc})") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("service")
    parser.add_argument("--name", action="store_true", help="print the service's declared name instead")
    args = parser.parse_args(argv)
    try:
        found = find(args.service)
    except LookupError as exc:
        print(f"services.find: {exc.args[0]}", file=sys.stderr)
        return 2
    print(found.name if args.name else found.target)
    return 0


if __name__ == "__main__":
    sys.exit(main())

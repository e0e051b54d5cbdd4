"""Renders deploy/nginx.conf.template: the deployment's values from the environment, nginx's own
error bodies from Ballast's error envelope (so that a client reads every refusal alike).

    LISTEN=0.0.0.0:8080 UPSTREAM=127.0.0.1:3000 MAX_INFLIGHT=32 PREFIX=/run/ballast-nginx \\
    MAX_BODY=1048576 ACCESS_LOG=off python -m services.http.nginx > /run/ballast-nginx/nginx.conf
"""

from __future__ import annotations

import os
import string
import sys
from collections.abc import Mapping
from pathlib import Path

from .envelope import nginx_bodies

TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "nginx.conf.template"
VALUES = ("LISTEN", "UPSTREAM", "MAX_INFLIGHT", "PREFIX", "MAX_BODY", "ACCESS_LOG")


def render(values: Mapping[str, str], template: Path = TEMPLATE) -> str:
    """The configuration for ``values`` (every name of :data:`VALUES`)."""
    missing = [name for name in VALUES if name not in values]
    if missing:
        raise KeyError(f"nginx configuration values missing: {missing}")
    bodies = nginx_bodies(int(values["MAX_BODY"]))
    # safe_substitute: nginx's own variables ($host, $status, ...) stay as they are
    return string.Template(template.read_text()).safe_substitute({**{k: values[k] for k in VALUES}, **bodies})


if __name__ == "__main__":
    try:
        sys.stdout.write(render(os.environ))
    except KeyError as exc:
        sys.exit(f"{exc.args[0]} (set them in the environment)")

"""Load for any Ballast service, from its own OpenAPI document: each prediction route (admin routes
excluded) is called with its documented example, in turn. The example is what the service declared,
or one derived from its request type, and the server checked at start-up that it is valid; so every
answer is expected to be a 200.

The SLO gate uses this for a service that has no locustfile of its own (``--locustfile`` names one).
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from locust import FastHttpUser, between, events, task

ROUTES: list[tuple[str, Any]] = []


@events.test_start.add_listener  # type: ignore[untyped-decorator]  # locust ships no annotation for it
def read_the_routes(environment: Any, **_: Any) -> None:
    """Each POST route's path and request example, read once from ``/openapi.json``."""
    with urllib.request.urlopen(f"{environment.host}/openapi.json", timeout=10) as response:
        document = json.load(response)
    for path, operations in document["paths"].items():
        post = operations.get("post")
        if post is None or (post.get("security") and {"adminToken": []} in post["security"]):
            continue
        ROUTES.append((path, post["requestBody"]["content"]["application/json"]["example"]))
    if not ROUTES:
        raise RuntimeError(f"{environment.host}/openapi.json documents no prediction route")


class OpenAPIClient(FastHttpUser):
    wait_time = between(0.0, 0.02)

    def on_start(self) -> None:
        self.turn = 0

    @task
    def call(self) -> None:
        path, example = ROUTES[self.turn % len(ROUTES)]
        self.turn += 1
        self.client.post(path, json=example, name=path)

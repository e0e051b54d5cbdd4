"""Load shedding at the door, by how long a request has waited inside the server.

When the CPU, not the model, is the bottleneck, a request waits between the moment the server has
read it and the moment its handler starts: behind every other request the event loop read in the
same sweep. The batcher's deadline-based shedding never sees that wait. The HTTP protocol
(services/protocol.py) stamps each request with the loop time at which its headers were complete;
when the handler starts more than ``max_wait_s`` later, the request is refused with 503 +
Retry-After before its body is parsed -- the cheapest answer there is. The backlog drains, and the
requests that are served start promptly. Nothing runs while the server is idle.
"""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from typing import Any

RECEIVED = "ballast.received"
"""Key in the ASGI scope's ``extensions``: loop time at which the request's headers were read."""


def mark_received(scope: MutableMapping[str, Any], now: float) -> None:
    scope.setdefault("extensions", {})[RECEIVED] = now


class Admission:
    def __init__(self, max_wait_s: float) -> None:
        self.max_wait_s = max_wait_s
        """0 turns shedding off."""

    def refuses(self, scope: MutableMapping[str, Any]) -> bool:
        """Whether the request has already waited too long to be worth serving."""
        if self.max_wait_s <= 0:
            return False
        received = (scope.get("extensions") or {}).get(RECEIVED)
        return received is not None and asyncio.get_running_loop().time() - received > self.max_wait_s

"""Load shedding at the door, by how long a request has waited inside the server.

When the CPU, not the model, is the bottleneck, a request waits between the moment the server has
read it and the moment its handler starts: behind every other request the event loop read in the
same sweep. The batcher's deadline-based shedding never sees that wait. The HTTP protocol
(:mod:`.protocol`) stamps each request with the loop time at which its headers were complete;
when the handler starts more than ``max_wait_s`` later, the request is refused with 503 +
Retry-After before its body is parsed.

Refusing in the handler still costs a request's whole trip through uvicorn (a request cycle, a
task, the ASGI calls): under a burst of several times capacity, those refusals took the CPU the
admitted requests needed (``make overload``). So a handler start later than twice ``max_wait_s``
also opens a window in which the protocol refuses new prediction requests as soon as their headers
are read, with a prepared response and no request cycle at all (:meth:`Admission.refuses_at_door`).
The window lasts as long as the request was late beyond twice the limit, at most ``window_s`` (half
of ``max_wait_s``): a server that keeps falling behind keeps it open, while a stall of the kind a
noisy VM or a garbage collection causes at normal load (up to 200 ms with the default) opens none --
with a window on every late request, the soak at 70 % of capacity refused 19-58 requests a minute
that the server could have served. It closes by itself; nothing runs while the server is idle.

The door also caps the requests inside the worker (``max_inflight``, ``BALLAST_MAX_INFLIGHT``):
while that many are being handled, a new prediction request is refused the same way
(``server_full``). The wait-based rules react only once requests have waited; the cap keeps them
from waiting, since by Little's law a request's time inside the worker is about ``max_inflight``
divided by the worker's throughput. It is the limit a proxy such as nginx (``limit_conn``,
deploy/nginx.conf.template) or Envoy (``max_requests``) applies, at about three times nginx's CPU per
refusal (benchmarks/refusal_cost.py). Under a burst of several times capacity that difference decides
the goodput (docs/operations/overload.md): in front of a fast model, refuse at a proxy on other cores.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, MutableMapping
from typing import Any

from runtime.core.codes import RefusalReason

RECEIVED = "ballast.received"
"""Key in the ASGI scope's ``extensions``: loop time at which the request's headers were read."""


def mark_received(scope: MutableMapping[str, Any], now: float) -> None:
    scope.setdefault("extensions", {})[RECEIVED] = now


class Admission:
    def __init__(
        self,
        max_wait_s: float,
        retry_after_s: float = 1.0,
        max_inflight: int = 0,
        on_refused: Callable[[str, RefusalReason], None] | None = None,
    ) -> None:
        self.max_wait_s = max_wait_s
        """0 turns shedding off."""
        self.max_inflight = max_inflight
        """Requests being handled at which the door refuses new prediction requests; 0 = no cap."""
        self.window_s = max_wait_s / 2
        self.retry_after_s = retry_after_s
        self.guarded: frozenset[bytes] = frozenset()
        """Raw paths the protocol may refuse at the door (the prediction routes)."""
        self._under: tuple[bytes, bytes, str] | None = None
        """And any raw path that starts and ends so (a mounted protocol's inference paths), told
        to ``on_refused`` by the label that stands for them all."""
        self.on_refused = on_refused
        """Told the path and reason of every request refused at the door (metrics)."""
        self.inflight = 0
        """Requests of this worker (all connections) whose headers were read and whose answer is not
        yet complete: what the cap counts (kept by the HTTP protocol)."""
        self._shed_until = 0.0

    def guard(self, paths: Iterable[str], under: tuple[str, str, str] | None = None) -> None:
        """Let the door refuse ``paths``, and the paths that begin with ``under[0]`` and end with
        ``under[1]`` (``("/v2/", "/infer", label)``: the Open Inference Protocol's inference, any
        model and version, told to ``on_refused`` as ``label``)."""
        self.guarded = frozenset(p.encode() for p in paths)
        self._under = None if under is None else (under[0].encode(), under[1].encode(), under[2])

    def refuses(self, scope: MutableMapping[str, Any]) -> bool:
        """Whether the request has already waited too long to be worth serving (and if so, open
        the door's refusal window)."""
        if self.max_wait_s <= 0:
            return False
        received = (scope.get("extensions") or {}).get(RECEIVED)
        if received is None:
            return False
        now = asyncio.get_running_loop().time()
        late = now - received - self.max_wait_s
        if late <= 0:
            return False
        behind = late - self.max_wait_s  # a stall up to twice the limit is not a backlog
        if behind > 0:
            self._shed_until = max(self._shed_until, now + min(behind, self.window_s))
        return True

    def refuses_at_door(self, raw_path: bytes, now: float, inflight: int) -> RefusalReason | None:
        """Why the protocol should refuse a request for ``raw_path`` whose headers it has just read
        at loop time ``now``, with ``inflight`` requests being handled (``None``: admit it)."""
        label = None
        if raw_path not in self.guarded:
            under = self._under
            if under is None or not (raw_path.startswith(under[0]) and raw_path.endswith(under[1])):
                return None
            label = under[2]
        if 0 < self.max_inflight <= inflight:
            reason = RefusalReason.SERVER_FULL
        elif now < self._shed_until:
            reason = RefusalReason.SERVER_BEHIND
        else:
            return None
        if self.on_refused is not None:
            self.on_refused(label or raw_path.decode(), reason)
        return reason

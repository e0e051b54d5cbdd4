"""What the front door serves: routes (a method, a path, a handler) and what a handler is told."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True, slots=True)
class RequestInfo:
    request_id: str
    """The caller's ``X-Request-ID`` when well formed, else a new random one."""
    timeout_s: float | None
    """The caller's ``X-Request-Timeout-Ms``, as seconds, when given."""
    wants_npy: bool = False
    """The caller accepts ``application/x-npy`` (on routes that offer binary tensors)."""
    routing_key: str | None = None
    """The caller's ``X-Routing-Key`` when well formed: requests with one key go to one model version
    during a rollout (else the request id decides)."""
    principal: str | None = None
    """Who called an admin route (the name its token was given)."""
    no_cache: bool = False
    """The caller sent ``Cache-Control: no-cache`` (or ``no-store``): answer without the result cache."""


@dataclass(frozen=True, slots=True)
class NpyResponse:
    """A handler's answer as one binary tensor (NumPy's .npy format), provenance in headers."""

    array: np.ndarray
    headers: dict[str, str]


Handler = Callable[[Any, RequestInfo], Awaitable["dict[str, Any] | NpyResponse"]]
"""``handler(payload, info)``: the parsed body (JSON, or an ndarray for ``.npy``) -> the answer."""


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: Handler
    npy: bool = False
    """Also takes ``application/x-npy`` bodies (the handler then gets an ndarray) and may answer
    with :class:`NpyResponse` when the caller accepts it."""
    admin: bool = False
    """An admin route: needs a bearer token of a principal with one of ``roles`` instead of the API
    key, and is never refused at the door."""
    roles: frozenset[str] = frozenset({"operator"})
    """The roles that may call an admin route."""

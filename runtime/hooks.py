"""Per-request hooks: each request ends in exactly one call ``hook.on_request(outcome, record)``.

Outcomes: ``success`` (the primary answered), ``fallback`` (a later stage answered), ``rejected``
(the client's fault or overload: 4xx, 503), ``error`` (the server failed: 5xx) and ``cancelled``
(the caller went away before an answer). Hooks compose; a hook that raises is logged and
counted and never fails the request.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

import numpy as np

log = logging.getLogger(__name__)


class Outcome(StrEnum):
    SUCCESS = "success"
    FALLBACK = "fallback"
    REJECTED = "rejected"
    ERROR = "error"
    CANCELLED = "cancelled"


@dataclass(slots=True)
class RequestRecord:
    """Everything known about one request when it ends."""

    request_id: str
    pipeline: str
    rows: int = 0
    served_by: str | None = None
    """The stage that answered: a model name or the rules stage's name."""
    model_version: str | None = None
    validation_s: float = 0.0
    queue_wait_s: float = 0.0
    inference_s: float = 0.0
    total_s: float = 0.0
    batch_rows: int = 0
    """Rows in the batch that computed this request's answer."""
    fallbacks: list[tuple[str, str, str]] = field(default_factory=list)
    """``(from_stage, to_stage, reason)`` for each move down the chain."""
    error_type: str | None = None
    failed_rules: tuple[str, ...] = ()
    """Names of the validation rules the request broke."""
    inputs: dict[str, np.ndarray] | None = field(default=None, repr=False)
    _input_hash: str | None = field(default=None, repr=False)

    @property
    def input_hash(self) -> str | None:
        """BLAKE2b-64 of the validated input tensors (names, dtypes, shapes, bytes); computed on
        first use, so hooks that do not read it cost nothing."""
        if self._input_hash is None and self.inputs is not None:
            digest = hashlib.blake2b(digest_size=8)
            for name in sorted(self.inputs):
                array = np.ascontiguousarray(self.inputs[name])
                digest.update(f"{name}:{array.dtype.str}:{array.shape}".encode())
                digest.update(array.data)
            self._input_hash = digest.hexdigest()
        return self._input_hash


current_request: ContextVar[RequestRecord | None] = ContextVar("ballast_request", default=None)
"""The record of the request being served in this task (log fields read it)."""


class Hook(Protocol):
    def on_request(self, outcome: Outcome, record: RequestRecord) -> None: ...


class CompositeHook:
    """Calls every hook in order; isolates their failures."""

    def __init__(self, hooks: Sequence[Hook], on_hook_error: Callable[[str], None] | None = None) -> None:
        self.hooks = tuple(hooks)
        self._on_hook_error = on_hook_error

    def on_request(self, outcome: Outcome, record: RequestRecord) -> None:
        for hook in self.hooks:
            try:
                hook.on_request(outcome, record)
            except Exception:
                name = type(hook).__name__
                log.exception("hook %s failed for request %s", name, record.request_id)
                if self._on_hook_error is not None:
                    self._on_hook_error(name)

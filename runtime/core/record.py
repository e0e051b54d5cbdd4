"""What is known about one request when it ends, and the hook that is told about it.

Each request ends in exactly one call ``hook.on_request(outcome, record)``. The record of the request
being served is also in the context variable :data:`current_request` (log fields read it).
"""

from __future__ import annotations

import hashlib
import os
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from .codes import FallbackReason, Outcome


@dataclass(slots=True)
class RequestRecord:
    """Everything known about one request when it ends."""

    request_id: str
    pipeline: str
    version: str = ""
    """The version of the deployment that served the request (its primary model's)."""
    rows: int = 0
    served_by: str | None = None
    """The stage that answered: a model name or the rule stage's name."""
    model_version: str | None = None
    validation_s: float = 0.0
    queue_wait_s: float = 0.0
    inference_s: float = 0.0
    total_s: float = 0.0
    batch_rows: int = 0
    """Rows in the batch that computed this request's answer."""
    cached: bool = False
    """The answer came from the deployment's result cache."""
    fallbacks: list[tuple[str, str, FallbackReason]] = field(default_factory=list)
    """``(from_stage, to_stage, reason)`` for each move down the chain."""
    error_type: str | None = None
    failed_rules: tuple[str, ...] = ()
    """Names of the validation rules the request broke."""
    inputs: dict[str, np.ndarray] | None = field(default=None, repr=False)
    outputs: dict[str, np.ndarray] | None = field(default=None, repr=False)
    """The answer's outputs (when there is one)."""
    route: str = "production"
    """How the request reached the deployment: ``production`` or ``canary``."""
    principal: str | None = None
    """Who asked: the name of the API key the request came with (``None``: no key needed)."""
    artifact: str | None = None
    """SHA-256 of the model file that answered (``None``: the rule stage)."""
    records: list[Any] | None = field(default=None, repr=False)
    """The typed records of a records request (what rules and compliance checks read)."""
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


def new_request_id() -> str:
    """A request id for a request that brought none: 12 hex digits of milliseconds since the epoch,
    then 16 random ones. Ids that grow with time are appended at the end of an index (the audit
    trail's); random ones would dirty a page of it each."""
    return f"{time.time_ns() // 1_000_000:012x}{os.urandom(8).hex()}"


current_request: ContextVar[RequestRecord | None] = ContextVar("ballast_request", default=None)
"""The record of the request being served in this task (log fields read it)."""


class Hook(Protocol):
    def on_request(self, outcome: Outcome, record: RequestRecord) -> None: ...

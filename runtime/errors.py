"""The runtime's error types: one root that carries its HTTP status, typed subclasses.

Services map any :class:`BallastError` to a response in one place, using ``status``,
``type`` and :meth:`BallastError.public_body`. Client errors (4xx) describe the problem;
server errors (5xx) say nothing about internals, the detail stays in ``__cause__`` and the log.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class FieldError:
    """One violation of one rule by one field of a request."""

    path: str
    """Where in the request: ``amount``, ``[3].amount``, ``input[2][17]``."""
    rule: str
    """Which rule was broken: ``type``, ``shape``, ``finite``, ``range``, a business rule's name."""
    message: str
    value: Any = None
    """The offending value, made JSON-friendly and short."""

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "rule": self.rule, "message": self.message, "value": self.value}


class BallastError(Exception):
    """Root of every error the runtime raises on purpose."""

    status: int = 500
    type: str = "internal_error"
    public_message: str = "internal error"

    def public_body(self) -> dict[str, Any]:
        """The body a client may see. Server errors never include the exception text."""
        message = str(self) if self.status < 500 else self.public_message
        return {"type": self.type, "message": message}


# --- client errors -------------------------------------------------------------------------


class ValidationFailed(BallastError):
    """The request broke one or more rules; every violation is listed, none is fixed up."""

    status = 422
    type = "validation_error"

    def __init__(self, errors: list[FieldError], layer: str) -> None:
        self.errors = errors
        self.layer = layer
        """The first layer that failed: ``schema``, ``content`` or ``business``."""
        super().__init__(
            f"{len(errors)} {layer} violation(s): " + "; ".join(f"{e.path}: {e.message}" for e in errors[:5])
        )

    def public_body(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "message": str(self),
            "fields": [e.as_dict() for e in self.errors],
        }

    def under(self, prefix: str) -> ValidationFailed:
        """The same violations with paths inside ``prefix`` (``[2].amount`` -> ``rows[2].amount``)."""
        moved = [
            FieldError(
                prefix + (e.path if e.path.startswith("[") or not e.path else "." + e.path),
                e.rule,
                e.message,
                e.value,
            )
            for e in self.errors
        ]
        return ValidationFailed(moved, self.layer)


class BadRequest(BallastError):
    """The request could not be read at all (not JSON, wrong top-level type)."""

    status = 400
    type = "bad_request"


# --- overload and time ------------------------------------------------------------------------


class Overloaded(BallastError):
    """Refused before compute so that admitted requests keep their latency (HTTP 503)."""

    status = 503
    type = "overloaded"

    def __init__(self, reason: str, retry_after_s: float = 1.0) -> None:
        self.reason = reason
        """``queue_full``, ``deadline`` (cannot finish in time), ``circuit_open``, ``shutting_down``."""
        self.retry_after_s = retry_after_s
        super().__init__(f"overloaded: {reason}")

    @property
    def retry_after_header(self) -> int:
        """``Retry-After`` in whole seconds, at least 1."""
        return max(1, round(self.retry_after_s))

    def public_body(self) -> dict[str, Any]:
        return {"type": self.type, "message": f"service overloaded ({self.reason}), retry later"}


class DeadlineExceeded(BallastError):
    """The request's deadline passed and no stage could answer in time (HTTP 504)."""

    status = 504
    type = "deadline_exceeded"
    public_message = "the request did not complete within its deadline"


# --- model failures (classified by the chain) -------------------------------------------------


class StageFailure(BallastError):
    """A model stage did not produce a usable answer; the chain moves on to the next stage."""

    status = 500
    reason = "error"


class ModelFailed(StageFailure):
    """onnxruntime (or the model) raised."""

    reason = "error"


class StageTimeout(StageFailure):
    """The stage did not answer within the time the chain gave it."""

    status = 504
    reason = "timeout"


class InvalidOutput(StageFailure):
    """The model answered with NaN/inf, a wrong shape, or a wrong number of rows."""

    reason = "invalid_output"


class CircuitOpen(StageFailure):
    """The stage's circuit breaker refused the call without trying it."""

    status = 503
    reason = "circuit_open"


class ChainExhausted(BallastError):
    """Every stage failed and no business-rule stage was configured (HTTP 503)."""

    status = 503
    type = "unavailable"
    public_message = "no model could answer the request"


class InternalError(BallastError):
    """An unexpected exception, wrapped so that its text never reaches a client."""

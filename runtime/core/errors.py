"""The runtime's errors.

Two roots, for two kinds of failure:

* :class:`BallastError` -- what a caller is told. Each class carries its HTTP ``status``, its
  ``type`` (an :class:`~runtime.core.codes.ErrorType`) and :meth:`BallastError.public_body`.
  Client errors (4xx) describe the problem; server errors (5xx) say nothing about internals: the
  detail stays in ``__cause__`` and the log.
* :class:`StageFailure` -- a model stage did not produce a usable answer. The chain catches it and
  moves on to the next stage (its ``reason`` becomes the fallback's label); it never reaches a caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .codes import ErrorType, FallbackReason, Layer, Reason


@dataclass(frozen=True, slots=True)
class FieldError:
    """One violation of one rule by one field of a request."""

    path: str
    """Where in the request: ``amount``, ``[3].amount``, ``input[2][17]``."""
    rule: str
    """Which rule was broken: a :class:`~runtime.core.codes.Rule`, or a business rule's name."""
    message: str
    value: Any = None
    """The offending value, made JSON-friendly and short."""

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "rule": self.rule, "message": self.message, "value": self.value}


class BallastError(Exception):
    """Root of every error the runtime raises for a caller to see."""

    status: int = 500
    type: str = ErrorType.INTERNAL_ERROR
    public_message: str = "internal error"

    def public_body(self) -> dict[str, Any]:
        """The body a client may see. Server errors never include the exception text."""
        message = str(self) if self.status < 500 else self.public_message
        return {"type": self.type, "message": message}


# --- client errors -------------------------------------------------------------------------


class ValidationFailed(BallastError):
    """The request broke one or more rules; every violation is listed, none is fixed up."""

    status = 422
    type = ErrorType.VALIDATION_ERROR

    def __init__(self, errors: list[FieldError], layer: Layer) -> None:
        self.errors = errors
        self.layer = layer
        """The first layer that failed."""
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
    type = ErrorType.BAD_REQUEST


# --- overload and time ------------------------------------------------------------------------


class Overloaded(BallastError):
    """Refused before compute so that admitted requests keep their latency (HTTP 503)."""

    status = 503
    type = ErrorType.OVERLOADED

    def __init__(self, reason: Reason, retry_after_s: float = 1.0) -> None:
        self.reason = reason
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
    type = ErrorType.DEADLINE_EXCEEDED
    public_message = "the request did not complete within its deadline"


class ChainExhausted(BallastError):
    """Every stage failed and no rule stage was configured (HTTP 503)."""

    status = 503
    type = ErrorType.UNAVAILABLE
    public_message = "no model could answer the request"


class InternalError(BallastError):
    """An unexpected exception, wrapped so that its text never reaches a client."""


# --- stage failures (caught by the chain, never shown to a caller) ------------------------------


class StageFailure(Exception):
    """A model stage did not produce a usable answer; the chain moves on to the next stage."""

    reason: FallbackReason = FallbackReason.ERROR


class ModelFailed(StageFailure):
    """onnxruntime (or the model) raised."""

    reason = FallbackReason.ERROR


class StageTimeout(StageFailure):
    """The stage did not answer within the time the chain gave it."""

    reason = FallbackReason.TIMEOUT


class InvalidOutput(StageFailure):
    """The model answered with NaN/inf, a wrong shape, or a wrong number of rows."""

    reason = FallbackReason.INVALID_OUTPUT


class CircuitOpen(StageFailure):
    """The stage's circuit breaker refused the call without trying it."""

    reason = FallbackReason.CIRCUIT_OPEN

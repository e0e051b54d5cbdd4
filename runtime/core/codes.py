"""Every code the runtime reports, as string enums: error types in response bodies, reasons in
metric labels and logs. Compare members, never strings; a member *is* its string (``StrEnum``), so it
goes into JSON and Prometheus labels as it is."""

from __future__ import annotations

from enum import Enum, StrEnum


class ErrorType(StrEnum):
    """``error.type`` of a response body for the runtime's own errors."""

    VALIDATION_ERROR = "validation_error"
    BAD_REQUEST = "bad_request"
    OVERLOADED = "overloaded"
    UNAVAILABLE = "unavailable"
    DEADLINE_EXCEEDED = "deadline_exceeded"
    INTERNAL_ERROR = "internal_error"


class ShedReason(StrEnum):
    """Why a model stage refused a request before computing it."""

    QUEUE_FULL = "queue_full"
    """More rows waiting than the stage's ``max_queue_rows``."""
    DEADLINE = "deadline"
    """The stage cannot finish the request by its deadline (the next stage may)."""
    SHUTTING_DOWN = "shutting_down"
    """The stage is closing."""


class RefusalReason(StrEnum):
    """Why the server refused a request before any pipeline saw it."""

    SERVER_BUSY = "server_busy"
    """The request waited too long inside the server before its handler started."""
    SERVER_BEHIND = "server_behind"
    """Refused on arrival while the server is behind (a recent request waited far too long)."""
    SERVER_FULL = "server_full"
    """Refused on arrival while the worker holds its cap of requests in flight."""
    SHUTTING_DOWN = "shutting_down"
    """The worker is draining after SIGTERM."""
    PROXY_BUSY = "proxy_busy"
    """Refused by the nginx in front of the worker (deploy/nginx.conf.template)."""
    AUDIT_BEHIND = "audit_behind"
    """The audit trail cannot keep up and the service fails closed (``BALLAST_AUDIT_OVERFLOW``)."""


Reason = ShedReason | RefusalReason
"""What :class:`~runtime.core.errors.Overloaded` carries."""


class FallbackReason(StrEnum):
    """Why the chain moved from one stage to the next."""

    ERROR = "error"
    TIMEOUT = "timeout"
    INVALID_OUTPUT = "invalid_output"
    CIRCUIT_OPEN = "circuit_open"
    OVERLOADED = "overloaded"


class Rule(StrEnum):
    """The validation rules Ballast itself checks (business rules add their own names)."""

    TYPE = "type"
    SHAPE = "shape"
    REQUIRED = "required"
    UNKNOWN_FIELD = "unknown_field"
    MAX_ROWS = "max_rows"
    FINITE = "finite"
    RANGE = "range"
    CATEGORY = "category"
    VALUE = "value"
    """A check the request type declares itself (a pydantic validator)."""


class Layer(StrEnum):
    """The first validation layer a request failed."""

    SCHEMA = "schema"
    """Types, shapes, required and unknown fields, row counts."""
    CONTENT = "content"
    """Finite values, ranges, categories."""
    BUSINESS = "business"
    """Named predicates over a row (the service's checks)."""


SCHEMA_RULES = frozenset({Rule.TYPE, Rule.SHAPE, Rule.REQUIRED, Rule.UNKNOWN_FIELD, Rule.MAX_ROWS})
"""Rules of the schema layer; every other rule is content."""


class Outcome(StrEnum):
    """How a request ended: exactly one per request, told to every hook."""

    SUCCESS = "success"
    """The primary answered."""
    FALLBACK = "fallback"
    """A later stage answered."""
    REJECTED = "rejected"
    """The client's fault or overload: 4xx, 503."""
    ERROR = "error"
    """The server failed: 5xx."""
    CANCELLED = "cancelled"
    """The caller went away before an answer."""


class Arm(StrEnum):
    """Which deployment answered a request during a rollout."""

    PRODUCTION = "production"
    CANARY = "canary"


class BreakerState(Enum):
    """A circuit breaker's state; the value is what the ``ballast_breaker_state`` gauge shows."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2

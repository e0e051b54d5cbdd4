from __future__ import annotations

import pytest

from runtime import (
    BallastError,
    ChainExhausted,
    DeadlineExceeded,
    FieldError,
    InternalError,
    Layer,
    ModelFailed,
    Overloaded,
    ShedReason,
    StageFailure,
    ValidationFailed,
)


def test_validation_errors_list_every_field() -> None:
    error = ValidationFailed(
        [FieldError("a", "type", "expected a number", "x"), FieldError("[1].b", "range", "too big", 9)],
        Layer.SCHEMA,
    )
    assert error.status == 422
    body = error.public_body()
    assert body["type"] == "validation_error"
    assert [f["path"] for f in body["fields"]] == ["a", "[1].b"]


def test_overload_carries_its_reason_and_retry_after() -> None:
    error = Overloaded(ShedReason.QUEUE_FULL, retry_after_s=2.0)
    assert (error.status, error.reason, error.retry_after_s) == (503, ShedReason.QUEUE_FULL, 2.0)
    assert "queue_full" in error.public_body()["message"]


@pytest.mark.parametrize(
    "error",
    [
        InternalError("db password hunter2"),
        ChainExhausted("primary: boom"),
        DeadlineExceeded("stage x"),
    ],
)
def test_server_errors_say_nothing_about_internals(error: BallastError) -> None:
    assert error.status >= 500
    body = error.public_body()
    assert str(error) not in body["message"]
    assert set(body) == {"type", "message"}


def test_a_stage_failure_is_not_an_error_a_caller_sees() -> None:
    """Stage failures move the chain on; they carry a fallback reason, no status or body."""
    failure = ModelFailed("ort: node Gather_3")
    assert isinstance(failure, StageFailure)
    assert not isinstance(failure, BallastError)
    assert failure.reason == "error"

from __future__ import annotations

import pytest

from runtime import (
    BallastError,
    ChainExhausted,
    DeadlineExceeded,
    FieldError,
    InternalError,
    ModelFailed,
    Overloaded,
    ValidationFailed,
)


def test_validation_errors_list_every_field() -> None:
    error = ValidationFailed(
        [FieldError("a", "type", "expected a number", "x"), FieldError("[1].b", "range", "too big", 9)],
        "schema",
    )
    assert error.status == 422
    body = error.public_body()
    assert body["type"] == "validation_error"
    assert [f["path"] for f in body["fields"]] == ["a", "[1].b"]


def test_overload_carries_its_reason_and_retry_after() -> None:
    error = Overloaded("queue_full", retry_after_s=2.0)
    assert (error.status, error.reason, error.retry_after_s) == (503, "queue_full", 2.0)
    assert "queue_full" in error.public_body()["message"]


@pytest.mark.parametrize(
    "error",
    [
        InternalError("db password hunter2"),
        ModelFailed("ort: node Gather_3"),
        ChainExhausted("primary: boom"),
        DeadlineExceeded("stage x"),
    ],
)
def test_server_errors_say_nothing_about_internals(error: BallastError) -> None:
    assert error.status >= 500
    body = error.public_body()
    assert str(error) not in body["message"]
    assert set(body) == {"type", "message"}

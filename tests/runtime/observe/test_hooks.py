from __future__ import annotations

import numpy as np

from runtime import CompositeHook, Outcome, RequestRecord


class Keep:
    def __init__(self) -> None:
        self.outcomes: list[Outcome] = []

    def on_request(self, outcome: Outcome, record: RequestRecord) -> None:
        self.outcomes.append(outcome)


class Boom:
    def on_request(self, outcome: Outcome, record: RequestRecord) -> None:
        raise ValueError("boom")


def test_hooks_compose_in_order_and_failures_are_isolated_and_counted() -> None:
    first, last = Keep(), Keep()
    errors: list[str] = []
    hook = CompositeHook([first, Boom(), last], on_hook_error=errors.append)
    hook.on_request(Outcome.SUCCESS, RequestRecord("r", "p"))
    assert first.outcomes == last.outcomes == [Outcome.SUCCESS]
    assert errors == ["Boom"]


def test_the_input_hash_is_stable_and_sensitive_to_dtype_shape_and_values() -> None:
    def digest(**inputs: np.ndarray) -> str | None:
        return RequestRecord("r", "p", inputs=inputs).input_hash

    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert digest(x=x) == digest(x=x.copy())
    assert digest(x=x) != digest(x=x.reshape(3, 2))
    assert digest(x=x) != digest(x=x.astype(np.float64))
    assert digest(x=x) != digest(y=x)
    assert digest(x=np.asfortranarray(x)) == digest(x=x)
    assert RequestRecord("r", "p").input_hash is None

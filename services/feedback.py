"""``POST /v1/feedback``: callers send the true outcome of predictions they were given, by request id.

One label ``{"request_id": "...", "label": 1}`` or a batch ``{"labels": [...]}`` (at most 1,000); a
request of several rows takes a list, one outcome per row. The answer says what became of each id:
accepted, a duplicate (the same label again: idempotent), a conflict (another label was there first:
kept), unknown (no prediction with that id in the audit trail; it may not be written yet: send it
again), or mismatched (not one outcome per row). Nothing is dropped without being named. It needs the
audit trail (the labels are joined to its rows): without one there is no such route. The same API key
as the prediction routes, when one is set. See runtime/audit/feedback.py for the figures it feeds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    FiniteFloat,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
)
from pydantic_core import PydanticCustomError

from runtime.audit.feedback import Feedback, Label, LabelledRows, Performance, Received

from .admin import parse_body
from .http.envelope import HTTPError, HttpErrorType
from .http.openapi import RouteDoc, inline
from .http.routes import RequestInfo, Route


class LabelIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    request_id: str = Field(min_length=1, max_length=128, description="the X-Request-ID of the answer")
    label: FiniteFloat | Annotated[list[FiniteFloat], Field(min_length=1, max_length=10_000)] = Field(
        description="the true outcome (a class or a number); a list for a request of several rows, one per row"
    )

    @field_validator("label", mode="wrap")
    @classmethod
    def _one_error(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        """One error naming the field, not one per member of the union."""
        try:
            return handler(value)
        except ValidationError:
            raise PydanticCustomError("type", "a number, or a list of numbers (one per row)") from None


class LabelsIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    labels: list[LabelIn] = Field(min_length=1, max_length=1000)


class FeedbackOut(BaseModel):
    accepted: int = Field(description="labels stored")
    duplicates: list[str] = Field(description="ids that already had this label (nothing changed)")
    conflicts: list[str] = Field(description="ids that already had another label (the first is kept)")
    unknown: list[str] = Field(description="ids with no prediction in the audit trail (yet): send again later")
    mismatched: list[str] = Field(description="ids whose label count is not the prediction's row count")


class FeedbackRoutes:
    def __init__(
        self,
        feedback: Callable[[], Feedback | None],
        *,
        window_s: float,
        on_received: Callable[[Received, list[Performance]], None] | None = None,
        on_labelled: Callable[[LabelledRows], None] | None = None,
        enabled: bool = True,
    ) -> None:
        """``on_received``: told what became of each batch and the figures over ``window_s`` after it;
        ``on_labelled``: given the window's labelled rows after labels were accepted (in a worker
        thread). Not ``enabled`` (a service without an audit trail): no route, nothing documented."""
        self.feedback = feedback
        self.window_s = window_s
        self.on_received = on_received
        self.on_labelled = on_labelled
        self.routes = [Route("POST", "/v1/feedback", self.receive)] if enabled else []

    async def receive(self, payload: Any, info: RequestInfo) -> dict[str, Any]:
        if isinstance(payload, dict) and "labels" in payload:
            labels = parse_body(LabelsIn, payload).labels
        else:
            labels = [parse_body(LabelIn, payload)]
        feedback = self.feedback()
        if feedback is None:
            raise HTTPError(404, HttpErrorType.NOT_FOUND, "this service keeps no audit trail (set BALLAST_AUDIT_KEY)")
        received = await asyncio.to_thread(feedback.record, [Label(x.request_id, x.label) for x in labels])
        if self.on_labelled is not None and received.accepted:
            judge = self.on_labelled
            await asyncio.to_thread(lambda: judge(feedback.labelled(self.window_s)))
        if self.on_received is not None and received.accepted:
            figures = await asyncio.to_thread(feedback.performance, self.window_s)
            self.on_received(received, figures)
        elif self.on_received is not None:
            self.on_received(received, [])
        return {
            "accepted": len(received.accepted),
            "duplicates": received.duplicates,
            "conflicts": received.conflicts,
            "unknown": received.unknown,
            "mismatched": received.mismatched,
        }

    def docs(self) -> list[RouteDoc]:
        if not self.routes:
            return []
        request = inline(LabelsIn.model_json_schema())
        request = {"oneOf": [inline(LabelIn.model_json_schema()), request]}
        return [
            RouteDoc(
                self.routes[0],
                "feedback",
                "The true outcome of predictions, by request id: one label or a batch",
                request,
                inline(FeedbackOut.model_json_schema()),
                {"labels": [{"request_id": "4f2a9c0e1b7d3a55", "label": 1}]},
                {"accepted": 1, "duplicates": [], "conflicts": [], "unknown": [], "mismatched": []},
                (400, 404, 413, 415, 422),
            )
        ]

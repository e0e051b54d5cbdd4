"""The validator: layers 1 and 2 from a :class:`~.request.Schema`, then layer 3 (business rules)
on a request that passed both; raises :class:`~runtime.core.errors.ValidationFailed` with every
violation of the first layer that failed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ...core.codes import SCHEMA_RULES, Layer
from ...core.errors import FieldError, ValidationFailed
from .request import BusinessRule, Schema, ValidatedRequest


@dataclass(slots=True)
class Validator:
    schema: Schema
    rules: Sequence[BusinessRule] = field(default_factory=tuple)
    max_errors: int = 100
    content_checks: bool = True
    """Layers 2 and 3. Off only to measure what they cost (``BALLAST_CONTENT_CHECKS=false``)."""

    def validate(self, payload: Any) -> ValidatedRequest:
        errors: list[FieldError] = []
        request = self.schema.parse(payload, errors, self.content_checks)
        if request is None or errors:
            layer = Layer.SCHEMA if any(e.rule in SCHEMA_RULES for e in errors) else Layer.CONTENT
            raise ValidationFailed(errors[: self.max_errors], layer)
        for index in range(request.rows if self.rules and self.content_checks else 0):
            row = request.row(index)
            for rule in self.rules:
                if not rule.check(row):
                    where = f"[{index}]" if request.rows > 1 or request.listed else ""
                    path = f"{where}.{rule.field}" if where and rule.field else (rule.field or where)
                    errors.append(FieldError(path, rule.name, rule.message, rule.value(row)))
        if errors:
            raise ValidationFailed(errors[: self.max_errors], Layer.BUSINESS)
        return request

"""What of a request may be kept, by its fields' classification (runtime/core/classification.py):
restricted fields are left out, confidential ones become ``[REDACTED len=N hmac=...]``, and text in
every other field is scanned for e-mail addresses, card numbers (13 to 19 digits that pass the Luhn
check) and phone numbers, each replaced by ``[EMAIL]``, ``[CARD]`` or ``[PHONE]``.

Scanning is a net, not a guarantee: a number written out in words passes it. Fields that may hold
personal data are declared restricted or confidential; the scan catches what slips into free text.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from ..core.classification import Level, level_of

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
DIGIT_RUN = re.compile(r"(?<![\d.])[+(]?\d(?:[ ().-]{0,2}\d){6,22}(?![\d])")
"""Seven or more digits, maybe split by spaces, dots, dashes or brackets: card and phone candidates."""


def luhn(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


NOT_A_PHONE = re.compile(r"\d{4}-\d{2}-\d{2}|\d+\.\d{1,2}")
"""A date or an amount: digits that are not a phone number."""


def _number(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group())
    if 13 <= len(digits) <= 19 and luhn(digits):
        return "[CARD]"
    if 7 <= len(digits) <= 15 and not NOT_A_PHONE.fullmatch(match.group()):
        return "[PHONE]"
    return match.group()


def scrub(text: str) -> str:
    """``text`` with e-mail addresses, card numbers and phone numbers replaced."""
    return DIGIT_RUN.sub(_number, EMAIL.sub("[EMAIL]", text))


class Redactor:
    """Redacts records of one request type (or plain values, with no type: scanned only)."""

    def __init__(self, model: type[BaseModel] | None, key: bytes) -> None:
        self.key = key
        self.levels: dict[str, Level] = (
            {name: level_of(info.metadata) for name, info in model.model_fields.items()} if model else {}
        )

    def masked(self, value: Any) -> str:
        text = str(value)
        digest = hmac.new(self.key, text.encode(), hashlib.sha256).hexdigest()[:16]
        return f"[REDACTED len={len(text)} hmac={digest}]"

    def record(self, record: BaseModel | Mapping[str, Any]) -> dict[str, Any]:
        values = record.model_dump(mode="json") if isinstance(record, BaseModel) else dict(record)
        kept: dict[str, Any] = {}
        for name, value in values.items():
            level = self.levels.get(name, Level.PUBLIC)
            if level is Level.RESTRICTED:
                continue
            if value is None:
                kept[name] = None
            elif level is Level.CONFIDENTIAL:
                kept[name] = self.masked(value)
            else:
                kept[name] = self.value(value)
        return kept

    def value(self, value: Any) -> Any:
        """A public value: text scanned, containers walked, numbers as they are."""
        if isinstance(value, str):
            return scrub(value)
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if isinstance(value, dict):
            return {k: self.value(v) for k, v in value.items()}
        return value

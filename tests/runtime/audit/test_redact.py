"""Redaction by classification: restricted fields are left out, confidential ones masked with their
length and a keyed digest, and e-mail addresses, card numbers (Luhn) and phone numbers in free text
replaced; dates, amounts and numbers that fail the Luhn check are kept."""

from __future__ import annotations

from typing import Annotated

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from runtime.audit.redact import Redactor, luhn, scrub
from runtime.core.classification import Classified, Level

KEY = b"a-redaction-key-for-tests"


class Order(BaseModel):
    amount: float
    card: Annotated[str | None, Classified(Level.RESTRICTED)] = None
    email: Annotated[str | None, Classified(Level.CONFIDENTIAL)] = None
    note: str | None = None


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("write to jane.doe+x@mail.example.co.uk today", "write to [EMAIL] today"),
        ("card 4111 1111 1111 1111, thanks", "card [CARD], thanks"),
        ("card 4111-1111-1111-1111", "card [CARD]"),
        ("pan 5500005555555559.", "pan [CARD]."),
        ("call +44 20 7946 0958 or (555) 123-4567", "call [PHONE] or [PHONE]"),
        ("order 12345 on 2026-12-01 for 1234567.89", "order 12345 on 2026-12-01 for 1234567.89"),
        ("4111 1111 1111 1112 fails the check", "4111 1111 1111 1112 fails the check"),
    ],
)
def test_free_text_is_scanned(text: str, kept: str) -> None:
    assert scrub(text) == kept


@given(st.integers(min_value=10**12, max_value=10**19 - 1))
def test_every_luhn_valid_card_number_is_masked(number: int) -> None:
    digits = str(number)
    check = next(d for d in "0123456789" if luhn(digits[:-1] + d))
    card = digits[:-1] + check
    assert card not in scrub(f"paid with {card} yesterday")
    spaced = " ".join(card[i : i + 4] for i in range(0, len(card), 4))
    assert scrub(f"paid with {spaced} yesterday") == "paid with [CARD] yesterday"


def test_fields_are_kept_as_their_class_allows() -> None:
    redactor = Redactor(Order, KEY)
    order = Order(amount=12.5, card="4111111111111111", email="jane@example.com", note="mail jane@example.com")
    kept = redactor.record(order)
    assert "card" not in kept
    assert kept["amount"] == 12.5
    assert kept["note"] == "mail [EMAIL]"
    assert kept["email"].startswith("[REDACTED len=16 hmac=")
    assert "jane" not in kept["email"]
    same = redactor.record(Order(amount=1, email="jane@example.com"))
    assert same["email"] == kept["email"]  # equal values can be matched, not read
    assert Redactor(Order, b"another-key-entirely").record(order)["email"] != kept["email"]

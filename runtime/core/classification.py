"""Data classification of a request's fields, declared with the request type:

    card_number: Annotated[str | None, Classified(Level.RESTRICTED)] = None

=============  ==================================================================================
level          what is kept of the value wherever Ballast keeps a request (the audit's payloads)
=============  ==================================================================================
public         the value; free text is scanned and e-mail addresses, card numbers and phone
               numbers in it are replaced (runtime/audit/redact.py)
confidential   ``[REDACTED len=N hmac=...]``: its length and a keyed digest (equal values can be
               matched, not read)
restricted     nothing: the field is left out
=============  ==================================================================================

A field without a marker is public. A ``str`` field of a records request is *context*: validated
and handed to rules and checks, never a column of the model's input.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Level(StrEnum):
    PUBLIC = "public"
    CONFIDENTIAL = "confidential"
    RESTRICTED = "restricted"


@dataclass(frozen=True, slots=True)
class Classified:
    """How sensitive a field is (``Annotated`` metadata of a request type's field)."""

    level: Level


def level_of(metadata: list[Any]) -> Level:
    """The level a field's metadata declares (public when none)."""
    for item in metadata:
        if isinstance(item, Classified):
            return item.level
    return Level.PUBLIC

"""The audit trail's hash chain: each row's hash covers its content and the hash of the row before
it, so a changed, deleted or reordered row breaks the chain where it happened.

A row's hash is SHA-256 over the previous row's hash and the row's canonical JSON (sorted keys, no
whitespace, floats as Python writes them). Inputs are never stored: :func:`keyed_digest` gives an
HMAC-SHA-256 of the canonical validated input under a secret key (a plain hash of a low-entropy
input, an amount and a few categories, can be reversed by trying every value).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

import numpy as np

GENESIS = "0" * 64
"""The previous hash of the first row."""


def canonical(row: Mapping[str, Any]) -> bytes:
    return json.dumps(row, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def row_hash(previous: str, row: Mapping[str, Any]) -> str:
    return hashlib.sha256(previous.encode() + canonical(row)).hexdigest()


def arrays_digest(arrays: Mapping[str, np.ndarray], key: bytes | None = None) -> str:
    """A digest of named tensors (name, dtype, shape, bytes): HMAC-SHA-256 under ``key``, else SHA-256."""
    digest = hmac.new(key, digestmod=hashlib.sha256) if key is not None else hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}\0{array.dtype.str}\0{array.shape}\0".encode())
        digest.update(array.data)
    return digest.hexdigest()


def keyed_digest(inputs: Mapping[str, np.ndarray], key: bytes) -> str:
    """The HMAC-SHA-256 of validated inputs under ``key``: equal inputs, equal digest; without the key,
    no way back to the input by enumeration."""
    if not key:
        raise ValueError("an audit key is needed to digest inputs")
    return arrays_digest(inputs, key)


def verify(rows: list[tuple[int, str, str, Mapping[str, Any]]], anchor: tuple[int, str] | None = None) -> list[str]:
    """What is wrong with a chain of ``(seq, prev_hash, hash, row)`` in ``seq`` order, from ``anchor``
    (the sequence number and hash of the last row purged, if any): each problem names the row."""
    problems: list[str] = []
    expected_seq, previous = (anchor[0] + 1, anchor[1]) if anchor else (None, GENESIS)
    for seq, prev_hash, stored, row in rows:
        if expected_seq is not None and seq != expected_seq:
            missing = f"{expected_seq}" if seq == expected_seq + 1 else f"{expected_seq}-{seq - 1}"
            problems.append(f"row {missing} missing (deleted)")
        if prev_hash != previous:
            problems.append(f"row {seq}: does not follow the row before it (a row was deleted, added or moved)")
        if row_hash(prev_hash, row) != stored:
            problems.append(f"row {seq}: changed since it was written")
        expected_seq, previous = seq + 1, stored
    return problems

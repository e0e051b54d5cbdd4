"""The audit trail's hash chain: each row's hash covers its content and the hash of the row before
it, so a changed, deleted or reordered row breaks the chain where it happened.

A row's hash is SHA-256 over the previous row's hash and the row's canonical JSON (sorted keys, no
whitespace, floats in their shortest form: orjson's output), which is also the text stored, so that
verifying hashes what is on disk and nothing has to be serialized twice. Inputs are never stored:
:func:`keyed_digest` gives an HMAC-SHA-256 of the validated input under a secret key (a plain hash
of a low-entropy input, an amount and a few categories, can be reversed by trying every value).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any, TypeAlias

import numpy as np
import orjson

GENESIS = "0" * 64
"""The previous hash of the first row."""


def canonical(row: Mapping[str, Any]) -> bytes:
    """The row's JSON as it is hashed and stored (a float that is not finite is an error)."""
    if not isinstance(row, dict):
        row = dict(row)
    return orjson.dumps(row, option=orjson.OPT_SORT_KEYS)


def text_hash(previous: str, text: bytes) -> str:
    """The hash of a row stored as ``text`` after a row whose hash is ``previous``."""
    return hashlib.sha256(previous.encode() + text).hexdigest()


def row_hash(previous: str, row: Mapping[str, Any]) -> str:
    return text_hash(previous, canonical(row))


Packed: TypeAlias = tuple[tuple[str, str, tuple[int, ...], bytes], ...]
"""Tensors by name as ``(name, dtype, shape, bytes)``, sorted by name (see :func:`pack`)."""


_DTYPES: dict[np.dtype[Any], str] = {}
"""``dtype.str`` by dtype (the property builds its string on every read: a third of ``pack``)."""


def _dtype_str(dtype: np.dtype[Any]) -> str:
    found = _DTYPES.get(dtype)
    if found is None:
        found = _DTYPES[dtype] = dtype.str
    return found


def pack(arrays: Mapping[str, np.ndarray]) -> Packed:
    """Tensors as plain values that cross a pipe cheaply and digest as the arrays would."""
    return tuple(
        [(name, _dtype_str(arrays[name].dtype), arrays[name].shape, arrays[name].tobytes()) for name in sorted(arrays)]
    )


_HEADERS: dict[tuple[str, str, tuple[int, ...]], bytes] = {}
"""Each tensor's header in a digest's message, by name, dtype and shape (a service has few)."""


def message(packed: Packed) -> bytes:
    """What a digest of tensors covers: each one's name, dtype, shape and bytes (C order)."""
    parts = []
    for name, dtype, shape, raw in packed:
        header = _HEADERS.get((name, dtype, shape))
        if header is None:
            if len(_HEADERS) >= 4096:  # bounded, whatever the shapes
                _HEADERS.clear()
            header = _HEADERS[name, dtype, shape] = f"{name}\0{dtype}\0{shape}\0".encode()
        parts.append(header)
        parts.append(raw)
    return b"".join(parts)


def digest(packed: Packed) -> str:
    """SHA-256 of packed tensors."""
    return hashlib.sha256(message(packed)).hexdigest()


def arrays_digest(arrays: Mapping[str, np.ndarray], key: bytes | None = None) -> str:
    """A digest of named tensors (name, dtype, shape, bytes): HMAC-SHA-256 under ``key``, else SHA-256."""
    if key is not None:
        return Keyed(key)(arrays)
    return digest(pack(arrays))


class Keyed:
    """HMAC-SHA-256 of named tensors under one key, the key's state computed once."""

    def __init__(self, key: bytes) -> None:
        if not key:
            raise ValueError("an audit key is needed to digest inputs")
        self._base = hmac.new(key, digestmod=hashlib.sha256)

    def __call__(self, arrays: Mapping[str, np.ndarray]) -> str:
        return self.packed(pack(arrays))

    def packed(self, packed: Packed) -> str:
        digest = self._base.copy()
        digest.update(message(packed))
        return digest.hexdigest()


def keyed_digest(inputs: Mapping[str, np.ndarray], key: bytes) -> str:
    """The HMAC-SHA-256 of validated inputs under ``key``: equal inputs, equal digest; without the key,
    no way back to the input by enumeration."""
    return Keyed(key)(inputs)


def verify(rows: list[tuple[int, str, str, bytes]], anchor: tuple[int, str] | None = None) -> list[str]:
    """What is wrong with a chain of ``(seq, prev_hash, hash, stored text)`` in ``seq`` order, from
    ``anchor`` (the sequence number and hash of the last row purged, if any): each problem names the row."""
    problems: list[str] = []
    expected_seq, previous = (anchor[0] + 1, anchor[1]) if anchor else (None, GENESIS)
    for seq, prev_hash, stored, row in rows:
        if expected_seq is not None and seq != expected_seq:
            missing = f"{expected_seq}" if seq == expected_seq + 1 else f"{expected_seq}-{seq - 1}"
            problems.append(f"row {missing} missing (deleted)")
        if prev_hash != previous:
            problems.append(f"row {seq}: does not follow the row before it (a row was deleted, added or moved)")
        if text_hash(prev_hash, row) != stored:
            problems.append(f"row {seq}: changed since it was written")
        expected_seq, previous = seq + 1, stored
    return problems

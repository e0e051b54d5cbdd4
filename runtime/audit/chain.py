"""The audit trail's hash chain: each row's hash covers its content and the hash of the row before
it, so a changed, deleted or reordered row breaks the chain where it happened.

A row's hash is SHA-256 over the previous row's hash (32 bytes) and the row's JSON as it is stored,
so that verifying hashes what is on disk and nothing has to be serialized twice. Rows are stored in
blocks (one per batch written, runtime/audit/store.py): a block keeps its rows' JSON, one per line,
their hashes side by side and the hash of the row before its first, so that a verification names
the row, not the block. Inputs are never stored: :func:`keyed_digest` gives an HMAC-SHA-256 of the
validated input under a secret key (a plain hash of a low-entropy input, an amount and a few
categories, can be reversed by trying every value).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple, TypeAlias

import numpy as np
import orjson

GENESIS = bytes(32)
"""The previous hash of the first row."""
HASH = 32
"""Bytes per hash."""


def canonical(row: Mapping[str, Any]) -> bytes:
    """A row given as a mapping, as JSON (sorted keys, no whitespace; a float that is not finite
    is an error)."""
    if not isinstance(row, dict):
        row = dict(row)
    return orjson.dumps(row, option=orjson.OPT_SORT_KEYS)


def link(previous: bytes, text: bytes) -> bytes:
    """The hash of a row stored as ``text`` after a row whose hash is ``previous``."""
    return hashlib.sha256(previous + text).digest()


def row_hash(previous: bytes, row: Mapping[str, Any]) -> bytes:
    return link(previous, canonical(row))


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
    return tuple([(name, _dtype_str(a.dtype), a.shape, a.tobytes()) for name, a in sorted(arrays.items())])


_HEADERS: dict[tuple[str, str, tuple[int, ...]], bytes] = {}
"""Each tensor's header in a digest's message, by name, dtype and shape (a service has few)."""


def _header(name: str, dtype: str, shape: tuple[int, ...]) -> bytes:
    header = _HEADERS.get((name, dtype, shape))
    if header is None:
        if len(_HEADERS) >= 4096:  # bounded, whatever the shapes
            _HEADERS.clear()
        header = _HEADERS[name, dtype, shape] = f"{name}\0{dtype}\0{shape}\0".encode()
    return header


def message(packed: Packed) -> bytes:
    """What a digest of tensors covers: each one's name, dtype, shape and bytes (C order)."""
    parts = []
    for name, dtype, shape, raw in packed:
        parts.append(_header(name, dtype, shape))
        parts.append(raw)
    return b"".join(parts)


def message_of(arrays: Mapping[str, np.ndarray]) -> bytes:
    """:func:`message` of ``arrays`` (what :func:`pack` then :func:`message` give, in one step)."""
    if len(arrays) == 1:
        for name, array in arrays.items():
            return _header(name, _dtype_str(array.dtype), array.shape) + array.tobytes()
    return message(pack(arrays))


def digest(packed: Packed) -> str:
    """SHA-256 of packed tensors."""
    return hashlib.sha256(message(packed)).hexdigest()


class Keyed:
    """HMAC-SHA-256 of named tensors under one key, the key's state computed once."""

    def __init__(self, key: bytes) -> None:
        if not key:
            raise ValueError("an audit key is needed to digest inputs")
        self._base = hmac.new(key, digestmod=hashlib.sha256)

    def __call__(self, arrays: Mapping[str, np.ndarray]) -> str:
        return self.of(message_of(arrays))

    def of(self, text: bytes) -> str:
        """The HMAC of a message (:func:`message`: tensors as a digest covers them)."""
        digest = self._base.copy()
        digest.update(text)
        return digest.hexdigest()


def keyed_digest(inputs: Mapping[str, np.ndarray], key: bytes) -> str:
    """The HMAC-SHA-256 of validated inputs under ``key``: equal inputs, equal digest; without the key,
    no way back to the input by enumeration."""
    return Keyed(key)(inputs)


class Block(NamedTuple):
    """One stored block of rows, as verification reads it."""

    first_seq: int
    prev_hash: bytes
    hashes: bytes
    """Each row's hash, ``HASH`` bytes each, in order."""
    body: bytes
    """The rows' JSON, one per line."""


def verify(blocks: Iterable[Block], anchor: tuple[int, bytes] | None = None) -> list[str]:
    """What is wrong with a chain of blocks in sequence order, from ``anchor`` (the sequence number
    and hash of the last row purged, if any): each problem names the row (its sequence number)."""
    problems: list[str] = []
    expected_seq, previous = (anchor[0] + 1, anchor[1]) if anchor else (None, GENESIS)
    for block in blocks:
        seq = block.first_seq
        if expected_seq is not None and seq != expected_seq:
            missing = f"{expected_seq}" if seq == expected_seq + 1 else f"{expected_seq}-{seq - 1}"
            problems.append(f"row {missing} missing (deleted)")
        if block.prev_hash != previous:
            problems.append(f"row {seq}: does not follow the row before it (a row was deleted, added or moved)")
        hashes = [block.hashes[i : i + HASH] for i in range(0, len(block.hashes), HASH)]
        problems += _verify_rows(seq, block.prev_hash, hashes, block.body.split(b"\n") if block.body else [])
        expected_seq = seq + len(hashes)
        previous = hashes[-1] if hashes else block.prev_hash
    return problems


def _verify_rows(first_seq: int, previous: bytes, hashes: list[bytes], lines: list[bytes]) -> list[str]:
    """The rows of one block: each line against its hash. With fewer lines than hashes, a line that
    does not follow its predecessor is looked for further on (the rows between were deleted)."""
    problems: list[str] = []
    line = 0
    for i, stored in enumerate(hashes):
        seq, before = first_seq + i, hashes[i - 1] if i else previous
        if line >= len(lines):
            problems.append(f"row {seq} missing (deleted)")
            continue
        text = lines[line]
        if link(before, text) == stored:
            line += 1
            continue
        deleted = len(lines) - line < len(hashes) - i and any(
            link(hashes[j - 1], text) == hashes[j] for j in range(i + 1, i + 1 + len(hashes) - len(lines))
        )
        if deleted:
            problems.append(f"row {seq} missing (deleted)")
        else:
            problems.append(f"row {seq}: changed since it was written")
            line += 1
    if line < len(lines):
        problems.append(f"row {first_seq + len(hashes) - 1}: {len(lines) - line} row(s) added after it")
    return problems

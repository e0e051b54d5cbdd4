"""A result cache for one deployment: the primary model's answers to inputs seen before.

The key is the model file's content hash and a digest of the validated input (each tensor's name,
dtype, shape and bytes), so equal requests share an entry however their JSON was written, and no
entry can answer for another version. Only the primary's answers enter (never a fallback's, a rule
stage's, a shadow's or an error); entries expire after ``ttl_s`` and the least recently used go first
once ``max_bytes`` would be passed (cachetools' ``TTLCache``, its size counted in bytes: memory is
what an operator budgets, and one bound keeps a miss cheap). Each deployment has its own cache, so a
version change or a rollback never serves an answer of the version it left, and a result computed by
the old version cannot enter the new one's cache.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from typing import Protocol

import numpy as np
from cachetools import TTLCache

ENTRY_OVERHEAD_BYTES = 256
"""What an entry costs beyond its arrays (key, dictionaries), counted against ``max_bytes``."""


class CacheObserver(Protocol):
    def on_lookup(self, hit: bool) -> None: ...

    def on_eviction(self) -> None: ...

    def on_size(self, entries: int, size_bytes: int) -> None: ...


def input_digest(inputs: Mapping[str, np.ndarray]) -> bytes:
    """A digest of validated inputs: equal tensors, equal digest."""
    digest = hashlib.blake2b(digest_size=16)
    for name in sorted(inputs):
        array = np.ascontiguousarray(inputs[name])
        digest.update(f"{name}\0{array.dtype.str}\0{array.shape}\0".encode())
        digest.update(array.data)
    return digest.digest()


class _Bounded(TTLCache[bytes, dict[str, np.ndarray]]):
    """A TTL cache that tells its owner what it evicts."""

    def __init__(self, owner: ResultCache, max_bytes: int, ttl_s: float, timer: Callable[[], float]) -> None:
        super().__init__(maxsize=max_bytes, ttl=ttl_s, timer=timer, getsizeof=_size)
        self._owner = owner

    def popitem(self) -> tuple[bytes, dict[str, np.ndarray]]:
        found = super().popitem()
        self._owner.evicted += 1
        if self._owner.observer is not None:
            self._owner.observer.on_eviction()
        return found


def _size(outputs: dict[str, np.ndarray]) -> int:
    return ENTRY_OVERHEAD_BYTES + sum(int(a.nbytes) for a in outputs.values())


class ResultCache:
    def __init__(
        self,
        version_hash: str,
        *,
        max_bytes: int,
        ttl_s: float,
        observer: CacheObserver | None = None,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        """``timer`` measures the entries' age (an injected clock in tests)."""
        if max_bytes < ENTRY_OVERHEAD_BYTES or ttl_s <= 0:
            raise ValueError(
                f"a cache needs max_bytes >= {ENTRY_OVERHEAD_BYTES} and ttl_s > 0, got {max_bytes}, {ttl_s}"
            )
        self.version_hash = version_hash.encode()
        self.observer = observer
        self.evicted = 0
        self._entries = _Bounded(self, max_bytes, ttl_s, timer)

    def key(self, inputs: Mapping[str, np.ndarray]) -> bytes:
        return self.version_hash + input_digest(inputs)

    def get(self, key: bytes) -> dict[str, np.ndarray] | None:
        found = self._entries.get(key)
        if self.observer is not None:
            self.observer.on_lookup(found is not None)
        return found

    def put(self, key: bytes, outputs: Mapping[str, np.ndarray]) -> None:
        """Keep copies of ``outputs`` (the batch they came from is not kept alive)."""
        entries = self._entries
        try:
            entries[key] = {name: np.array(array, copy=True) for name, array in outputs.items()}
        except ValueError:  # larger than the whole cache: not kept
            return
        if self.observer is not None:
            self.observer.on_size(len(entries), int(entries.currsize))

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        return int(self._entries.currsize)

"""The audit trail: one row per prediction, chained by hash, written off the request path.

chain.py    canonical rows, the hash chain and its verification, keyed digests of inputs
store.py    the rows in SQLite (WAL), appended in batches, queried, purged from an anchor
rows.py     what the request path hands over (plain values, tensors as bytes) and the rows made of it
writer.py   a bounded queue and the thread that drains it; drops counted by reason
sink.py     where the drained batches go: a writer process of its own (default), or the store
hook.py     the request hook that takes one item per answered request
"""

from .chain import keyed_digest, row_hash, verify
from .hook import AuditHook
from .store import AuditStore
from .writer import AuditObserver, AuditWriter, Overflow

__all__ = ["AuditHook", "AuditObserver", "AuditStore", "AuditWriter", "Overflow", "keyed_digest", "row_hash", "verify"]

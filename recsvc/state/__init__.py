"""Live state behind one small interface: `open_store("memory://")` or `open_store("redis://...")`."""

from __future__ import annotations

from recsvc.state.base import Consent, StateStore, StoredEvent, StoreError, StoreUnavailable


def open_store(url: str, timeout_ms: int = 250, erasure_key: bytes | None = None,
               event_log: str | None = None) -> StateStore:
    """memory:// -> InMemoryStore (durable through the append-only log at `event_log`, when given);
    redis://host:port/db[?prefix=NAME&stream_maxlen=N&shards=N] -> RedisStore (lazy connect);
    redis://host:port/0?cluster=1[&shards=N] -> RedisStore on a Redis Cluster (any node's address; the
    sharded key layout, 64 buckets unless `shards` says otherwise: recsvc/state/redis_layout.py).

    erasure_key None: the memory store keeps a generated key beside its log (a random one without a
    log); the Redis store shares one generated key through `<prefix>:erasure-key` (set
    RECSVC_ERASURE_KEY in production so the key does not sit next to the tombstones)."""
    if url == "memory://" or url.startswith("memory://"):
        from recsvc.state.eventlog import EventLog
        from recsvc.state.memory import InMemoryStore

        return InMemoryStore(erasure_key=erasure_key, event_log=EventLog(event_log) if event_log else None)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from recsvc.state.redis import RedisStore

        return RedisStore.from_url(url, timeout_ms=timeout_ms, erasure_key=erasure_key)
    raise StoreError(f"store URL {url!r}: expected memory:// or redis://host:port/db[?prefix=NAME]"
                     " (a Redis Cluster: redis://host:port/0?cluster=1)")


__all__ = ["Consent", "StateStore", "StoreError", "StoreUnavailable", "StoredEvent", "open_store"]

"""Live state behind one small interface: `open_store("memory://")` or `open_store("redis://...")`."""

from __future__ import annotations

from recsvc.state.base import Consent, StateStore, StoredEvent, StoreError, StoreUnavailable


def open_store(url: str, timeout_ms: int = 250, erasure_key: bytes = b"") -> StateStore:
    """memory:// -> InMemoryStore; redis://host:port/db[?prefix=NAME] -> RedisStore (lazy connect)."""
    if url == "memory://" or url.startswith("memory://"):
        from recsvc.state.memory import InMemoryStore

        return InMemoryStore(erasure_key=erasure_key)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from recsvc.state.redis import RedisStore

        return RedisStore.from_url(url, timeout_ms=timeout_ms, erasure_key=erasure_key)
    raise StoreError(f"store URL {url!r}: expected memory:// or redis://host:port/db[?prefix=NAME]")


__all__ = ["Consent", "StateStore", "StoreError", "StoreUnavailable", "StoredEvent", "open_store"]

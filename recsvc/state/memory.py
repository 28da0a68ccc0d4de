"""InMemoryStore: live state in this process (the embedded default for `recsvc demo` and tests).

Not shared between processes: under gunicorn with several workers each worker has its own copy,
so use Redis there. Thread-safe (the development server is threaded).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Mapping, Sequence

from recsvc.core.stock import StockView
from recsvc.core.types import CustomerState
from recsvc.state.base import EVENTS_CAP, Consent, StoredEvent, identifier_key, tombstone_id


class InMemoryStore:
    def __init__(self, erasure_key: bytes = b"", events_cap: int = EVENTS_CAP):
        self._key = erasure_key
        self._cap = events_cap
        self._lock = threading.Lock()
        self._events: dict[str, deque[StoredEvent]] = {}
        self._evids: dict[str, set[str]] = {}
        self._consent: dict[str, Consent] = {}
        self._ids: dict[str, set[tuple[str, str]]] = {}
        self._ident: dict[str, str] = {}
        self._tombs: set[str] = set()
        self._stock: dict[str, dict[str, int]] = {}
        self._views: dict[str, StockView] = {}
        self._versions: dict[str, int] = {}

    def __repr__(self) -> str:
        return "InMemoryStore()"

    # -- reads on the request path
    def get_state(
        self, customer_id: str | None, store_id: str | None
    ) -> tuple[CustomerState, StockView | None]:
        with self._lock:
            stock = self._views.get(store_id) if store_id is not None else None
            if customer_id is None:
                return CustomerState(), stock
            if tombstone_id(self._key, customer_id) in self._tombs:
                return CustomerState(customer_id=customer_id, erased=True), stock
            c = self._consent.get(customer_id)
            events = tuple(e.event for e in self._events.get(customer_id, ()))
        return CustomerState(
            customer_id=customer_id, consent=None if c is None else c.granted, events=events
        ), stock

    # -- identity
    def resolve_identifier(self, type_: str, value: str) -> str | None:
        with self._lock:
            return self._ident.get(identifier_key(type_, value))

    def link_identifier(self, customer_id: str, type_: str, value: str) -> None:
        key = identifier_key(type_, value)
        with self._lock:
            before = self._ident.get(key)
            if before is not None and before != customer_id:
                self._ids.get(before, set()).discard((type_, value))
            self._ident[key] = customer_id
            self._ids.setdefault(customer_id, set()).add((type_, value))

    def unlink_identifier(self, customer_id: str, type_: str, value: str) -> bool:
        key = identifier_key(type_, value)
        with self._lock:
            if self._ident.get(key) != customer_id:
                return False
            del self._ident[key]
            self._ids.get(customer_id, set()).discard((type_, value))
            return True

    def identifiers(self, customer_id: str) -> list[tuple[str, str]]:
        with self._lock:
            return sorted(self._ids.get(customer_id, ()))

    # -- consent
    def set_consent(self, customer_id: str, consent: Consent) -> None:
        with self._lock:
            self._consent[customer_id] = consent

    def get_consent(self, customer_id: str) -> Consent | None:
        with self._lock:
            return self._consent.get(customer_id)

    # -- events
    def append_events(self, events: Sequence[StoredEvent]) -> tuple[int, int]:
        accepted = duplicates = 0
        with self._lock:
            for e in events:
                if tombstone_id(self._key, e.customer_id) in self._tombs:
                    continue
                seen = self._evids.setdefault(e.customer_id, set())
                if e.event_id in seen:
                    duplicates += 1
                    continue
                seen.add(e.event_id)
                q = self._events.setdefault(e.customer_id, deque(maxlen=self._cap))
                q.append(e)
                accepted += 1
        return accepted, duplicates

    def recent_events(self, customer_id: str, limit: int = EVENTS_CAP) -> list[StoredEvent]:
        with self._lock:
            q = self._events.get(customer_id, ())
            return list(q)[-limit:] if limit > 0 else []

    # -- stock
    def set_stock(self, store_id: str, quantities: Mapping[str, int], replace: bool = False) -> int:
        with self._lock:
            cur = {} if replace else dict(self._stock.get(store_id, {}))
            cur.update({str(k): int(v) for k, v in quantities.items()})
            self._stock[store_id] = cur
            view = StockView(cur)  # a new snapshot each write: readers keep the one they got
            self._views[store_id] = view
            v = self._versions.get(store_id, 0) + 1
            self._versions[store_id] = v
            return v

    def get_stock(self, store_id: str, item_ids: Iterable[str] | None = None) -> dict[str, int] | None:
        with self._lock:
            cur = self._stock.get(store_id)
            if cur is None:
                return None
            if item_ids is None:
                return dict(cur)
            return {i: cur.get(i, 0) for i in item_ids}

    # -- erasure
    def erase(self, customer_id: str) -> None:
        with self._lock:
            for _t, _v in self._ids.pop(customer_id, set()):
                self._ident.pop(identifier_key(_t, _v), None)
            self._events.pop(customer_id, None)
            self._evids.pop(customer_id, None)
            self._consent.pop(customer_id, None)
            self._tombs.add(tombstone_id(self._key, customer_id))

    def is_erased(self, customer_id: str) -> bool:
        with self._lock:
            return tombstone_id(self._key, customer_id) in self._tombs

    def ping(self) -> None:
        return None

    def close(self) -> None:
        return None

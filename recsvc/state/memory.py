"""InMemoryStore: live state in this process (the embedded default for `recsvc demo` and tests).

Not shared between processes: under gunicorn with several workers each worker has its own copy,
so use Redis there. Thread-safe (the development server is threaded).

Durable when given an `EventLog` (`RECSVC_EVENT_LOG`): every change of a customer's state is written
and fsynced there before the call returns, and the log is replayed when the store is built, so an
acknowledged event survives a restart. Stock is not logged (it is re-sent by the stores' systems).
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable, Mapping, Sequence

from recsvc.core.stock import StockView
from recsvc.core.types import CustomerState
from recsvc.state.base import (
    ANON_PREFIX,
    AUDIT_CAP,
    AUDIT_SCAN,
    DEDUP_CAP,
    EVENTS_CAP,
    AppendResult,
    Consent,
    CustomerProfile,
    LinkedIdentifier,
    LinkOutcome,
    Provenance,
    StoredEvent,
    audit_matches,
    audit_subject,
    audit_view,
    event_from_dict,
    event_to_dict,
    identifier_key,
    identifier_record,
    linked_from_record,
    mask_identifier,
    tombstone_id,
)
from recsvc.state.eventlog import EventLog


def _ident_tomb(key: bytes, ident_key: str) -> str:
    """Tombstone of an identifier of an erased customer: its events are dropped too."""
    return tombstone_id(key, "ident:" + ident_key)


class InMemoryStore:
    def __init__(self, erasure_key: bytes | None = None, events_cap: int = EVENTS_CAP,
                 event_log: EventLog | None = None, dedup_cap: int = DEDUP_CAP):
        if erasure_key is None:
            erasure_key = event_log.erasure_key() if event_log is not None else secrets.token_bytes(32)
        self._key = erasure_key
        self._cap = events_cap
        self._dedup_cap = dedup_cap
        self._log = event_log
        self._lock = threading.Lock()
        self._events: dict[str, deque[StoredEvent]] = {}
        self._evids: dict[str, dict[str, None]] = {}  # insertion-ordered: the oldest id leaves first
        self._consent: dict[str, Consent] = {}
        self._ids: dict[str, dict[str, dict]] = {}  # customer -> {type:hash -> identifier record}
        self._ident: dict[str, str] = {}
        self._meta: dict[str, dict[str, str]] = {}  # anon=1, adopted_by=<customer>
        self._tombs: set[str] = set()
        self._stock: dict[str, dict[str, int]] = {}
        self._views: dict[str, StockView] = {}
        self._versions: dict[str, int] = {}
        self._counters: dict[str, tuple[int, float]] = {}  # rate limits: name -> (value, expires at)
        self._audit: deque[dict] = deque(maxlen=AUDIT_CAP)  # not logged: the trail lives with the process
        self._audit_subjects: dict[str, str] = {}
        if event_log is not None:
            self._replay(event_log)

    def __repr__(self) -> str:
        return "InMemoryStore()" if self._log is None else f"InMemoryStore(log={self._log.path!r})"

    # -- reads on the request path
    def begin_state(self, customer_id: str | None, store_id: str | None) -> ReadyState:
        """get_state in the two steps RedisStore offers (nothing to wait for here)."""
        return ReadyState(self.get_state(customer_id, store_id))

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

    def resolve_or_create(self, identifiers: Sequence[tuple[str, str]], provenance: Provenance) -> list[str | None]:
        out: list[str | None] = []
        with self._lock:
            for type_, value in identifiers:
                key = identifier_key(type_, value)
                cid = self._ident.get(key)
                if cid is None and _ident_tomb(self._key, key) in self._tombs:
                    out.append(None)  # the identifier of an erased customer: its events are dropped
                    continue
                if cid is None:
                    rec = {"t": "anon", "c": ANON_PREFIX + uuid.uuid4().hex[:20], "k": key,
                           "r": identifier_record(mask_identifier(type_, value), provenance)}
                    self._write([rec])
                    self._apply(rec)
                    cid = rec["c"]
                out.append(cid)
        return out

    def link_identifier(self, customer_id: str, type_: str, value: str,
                        provenance: Provenance | None = None) -> LinkOutcome:
        key = identifier_key(type_, value)
        prov = provenance or Provenance(at=time.time(), by_type="system")
        rec = {"t": "link", "c": customer_id, "k": key,
               "r": identifier_record(mask_identifier(type_, value), prov)}
        with self._lock:
            if tombstone_id(self._key, customer_id) in self._tombs:
                return LinkOutcome("erased")  # nothing written: the log must not hold the id again
            if self._ident.get(key) == customer_id:
                return LinkOutcome("already", customer_id)
            self._write([rec])
            return self._apply(rec)

    def unlink_identifier(self, customer_id: str, type_: str, value: str) -> bool:
        key = identifier_key(type_, value)
        rec = {"t": "unlink", "c": customer_id, "k": key, "at": time.time()}
        with self._lock:
            if self._ident.get(key) != customer_id:
                return False
            self._write([rec])
            self._apply(rec)
            return True

    def identifiers(self, customer_id: str) -> list[LinkedIdentifier]:
        with self._lock:
            recs = dict(self._ids.get(customer_id, {}))
        return sorted((linked_from_record(k, r) for k, r in recs.items()), key=lambda x: (x.type, x.key))

    # -- consent
    def set_consent(self, customer_id: str, consent: Consent) -> None:
        rec = {"t": "consent", "c": customer_id, "g": consent.granted, "s": consent.source,
               "ch": consent.channel, "at": consent.at}
        with self._lock:
            if tombstone_id(self._key, customer_id) in self._tombs:
                return  # an erased customer's choice is not recorded (the API answers 409 before)
            self._write([rec])
            self._apply(rec)

    def get_consent(self, customer_id: str) -> Consent | None:
        with self._lock:
            return self._consent.get(customer_id)

    # -- events
    def append_events(self, events: Sequence[StoredEvent]) -> AppendResult:
        accepted, duplicates, erased = [], 0, 0
        with self._lock:
            fresh: dict[str, set[str]] = {}
            for e in events:
                if tombstone_id(self._key, e.customer_id) in self._tombs:
                    erased += 1
                    continue
                batch = fresh.setdefault(e.customer_id, set())
                if e.event_id in self._evids.get(e.customer_id, ()) or e.event_id in batch:
                    duplicates += 1
                    continue
                batch.add(e.event_id)
                accepted.append(e)
            recs = [{"t": "ev", "e": event_to_dict(e)} for e in accepted]
            self._write(recs)
            for e in accepted:
                self._add_event(e)
        return AppendResult(len(accepted), duplicates, erased)

    def recent_events(self, customer_id: str, limit: int = EVENTS_CAP) -> list[StoredEvent]:
        with self._lock:
            q = self._events.get(customer_id, ())
            return list(q)[-limit:] if limit > 0 else []

    def profile(self, customer_id: str, limit: int = 50) -> CustomerProfile:
        with self._lock:
            if tombstone_id(self._key, customer_id) in self._tombs:
                return CustomerProfile(customer_id, erased=True)
            meta = self._meta.get(customer_id, {})
            recs = dict(self._ids.get(customer_id, {}))
            events = tuple(list(self._events.get(customer_id, ()))[-limit:]) if limit > 0 else ()
            consent = self._consent.get(customer_id)
        return CustomerProfile(
            customer_id=customer_id, erased=False, anonymous=meta.get("anon") == "1",
            adopted_by=meta.get("adopted_by"), consent=consent,
            identifiers=tuple(sorted((linked_from_record(k, r) for k, r in recs.items()),
                                     key=lambda x: (x.type, x.key))),
            events=events)

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
    def erase(self, customer_id: str) -> int:
        with self._lock:
            gone = self._erasure_set(customer_id)
            tombs = [tombstone_id(self._key, c) for c in gone]
            tombs += [_ident_tomb(self._key, k) for c in gone for k in self._ids.get(c, {})]
            adopter = self._meta.get(customer_id, {}).get("adopted_by")
            recs = [{"t": "erase", "h": h} for h in tombs]
            if adopter is not None and adopter not in gone:
                key = next((k for k, r in self._ids.get(adopter, {}).items() if r.get("adopted") == customer_id),
                           None)
                if key is not None:  # the adopter keeps the identifier but not the erased profile's events
                    recs.append({"t": "unadopt", "c": adopter, "k": key})
            if self._log is not None:
                self._log.rewrite(lambda r: not _mentions(r, gone), recs)
            for r in recs:
                self._apply(r)
            for c in gone:
                self._forget(c)
                self._audit_subjects.pop(audit_subject(self._key, c), None)
        return len(gone)

    def _erasure_set(self, customer_id: str) -> set[str]:
        """The customer and the anonymous profiles it adopted (the same person on another device)."""
        gone = {customer_id}
        for rec in self._ids.get(customer_id, {}).values():
            if rec.get("adopted"):
                gone.add(rec["adopted"])
        return gone

    def _forget(self, c: str) -> None:
        for k in self._ids.pop(c, {}):
            if self._ident.get(k) == c:
                del self._ident[k]
        self._events.pop(c, None)
        self._evids.pop(c, None)
        self._consent.pop(c, None)
        self._meta.pop(c, None)

    def is_erased(self, customer_id: str) -> bool:
        with self._lock:
            return tombstone_id(self._key, customer_id) in self._tombs

    # -- rate limits and the audit trail
    def incr_counter(self, name: str, by: int, ttl_s: int) -> int:
        now = time.monotonic()
        with self._lock:
            value, until = self._counters.get(name, (0, 0.0))
            if until <= now:
                value = 0
            value += int(by)
            self._counters[name] = (value, now + ttl_s)
            if len(self._counters) > 100_000:
                self._counters = {k: v for k, v in self._counters.items() if v[1] > now}
        return value

    def audit_append(self, record: Mapping, customer_id: str | None) -> None:
        rec = dict(record)
        with self._lock:
            if customer_id is not None:
                subject = audit_subject(self._key, customer_id)
                rec["subject"] = subject
                if tombstone_id(self._key, customer_id) not in self._tombs:
                    self._audit_subjects[subject] = customer_id
            self._audit.append(rec)

    def audit_read(self, limit: int = 100, customer_id: str | None = None, where: Mapping | None = None,
                   since: float | None = None) -> list[dict]:
        subject = audit_subject(self._key, customer_id) if customer_id is not None else None
        out = []
        with self._lock:
            if subject is not None and subject not in self._audit_subjects:
                return []
            for k, rec in enumerate(reversed(self._audit)):
                if k >= AUDIT_SCAN or len(out) >= limit:
                    break
                if audit_matches(rec, subject, where, since):
                    out.append(audit_view(rec, self._audit_subjects.get(rec.get("subject", ""))))
        return out

    def ping(self) -> None:
        return None

    def close(self) -> None:
        return None

    # -- one code path for live changes and the replay of the log
    def _write(self, records: list[dict]) -> None:
        if self._log is not None and records:
            self._log.append(records)

    def _replay(self, log: EventLog) -> None:
        for rec in log.records():
            if rec["t"] == "ev":
                e = event_from_dict(rec["e"])
                if e.event_id not in self._evids.get(e.customer_id, ()):
                    self._add_event(e)
            else:
                self._apply(rec)

    def _add_event(self, e: StoredEvent) -> None:
        seen = self._evids.setdefault(e.customer_id, {})
        seen[e.event_id] = None
        if len(seen) > self._dedup_cap:
            del seen[next(iter(seen))]
        self._events.setdefault(e.customer_id, deque(maxlen=self._cap)).append(e)

    def _apply(self, rec: dict) -> LinkOutcome | None:
        t = rec["t"]
        if t == "consent":
            self._consent[rec["c"]] = Consent(granted=bool(rec["g"]), source=rec.get("s"),
                                              channel=rec.get("ch"), at=rec.get("at"))
        elif t == "anon":
            c, key = rec["c"], rec["k"]
            self._ident[key] = c
            self._ids.setdefault(c, {})[key] = rec["r"]
            self._meta.setdefault(c, {})["anon"] = "1"
        elif t == "link":
            return self._link(rec["c"], rec["k"], rec["r"])
        elif t == "unlink":
            self._unlink(rec["c"], rec["k"], rec.get("at"))
        elif t == "erase":
            self._tombs.add(rec["h"])
        elif t == "unadopt":
            self._drop_adoption(rec["c"], rec["k"], self._ids.get(rec["c"], {}).get(rec["k"], {}))
        return None

    def _link(self, c: str, key: str, record: dict) -> LinkOutcome:
        if tombstone_id(self._key, c) in self._tombs:
            return LinkOutcome("erased")
        self._tombs.discard(_ident_tomb(self._key, key))  # an explicit link re-admits the identifier
        before = self._ident.get(key)
        if before == c:
            return LinkOutcome("already", c)
        self._ident[key] = c
        record = dict(record)
        status, copied = "linked", 0
        if before is not None:
            self._ids.get(before, {}).pop(key, None)
            meta = self._meta.get(before, {})
            if meta.get("anon") == "1" and not meta.get("adopted_by"):
                meta["adopted_by"] = c
                record["adopted"] = before
                copied = self._copy_events(before, c, key)
                status = "adopted"
            else:
                status = "moved"
        self._ids.setdefault(c, {})[key] = record
        return LinkOutcome(status, before, copied)

    def _copy_events(self, anon: str, c: str, via: str) -> int:
        """The anonymous profile's recent events become the customer's (tagged `via`), newest kept."""
        mine = list(self._events.get(c, ()))
        seen = self._evids.get(c, {})
        new = [StoredEvent(e.event_id, c, e.event, e.actor_type, e.actor_id, e.session_id, via)
               for e in self._events.get(anon, ()) if e.event_id not in seen]
        merged = sorted(mine + new, key=lambda e: e.event.ts)
        q = self._events[c] = deque(maxlen=self._cap)
        ids = self._evids.setdefault(c, {})
        for e in merged:
            q.append(e)
        for e in new:
            ids[e.event_id] = None
        return len(new)

    def _unlink(self, c: str, key: str, at: float | None) -> None:
        if self._ident.get(key) != c:
            return
        record = self._ids.get(c, {}).get(key, {})
        anon = record.get("adopted")
        self._drop_adoption(c, key, record)
        self._ids.get(c, {}).pop(key, None)
        if anon and anon in self._meta:
            self._ident[key] = anon  # the profile gets its identifier back: link + unlink = no change
            back = {k: v for k, v in record.items() if k != "adopted"}
            back.update(at=at or time.time(), by_type="system")
            self._ids.setdefault(anon, {})[key] = back
        else:
            del self._ident[key]

    def _drop_adoption(self, c: str, key: str, record: dict) -> None:
        """Undo what linking `key` adopted: the events copied `via` it leave c's list, the profile is free."""
        anon = record.get("adopted")
        if not anon:
            return
        self._meta.get(anon, {}).pop("adopted_by", None)
        if key in self._ids.get(c, {}):
            self._ids[c][key] = {k: v for k, v in record.items() if k != "adopted"}
        if c not in self._events:
            return
        kept = [e for e in self._events[c] if e.via != key]
        dropped = {e.event_id for e in self._events[c] if e.via == key}
        self._events[c] = deque(kept, maxlen=self._cap)
        ids = self._evids.get(c, {})
        for eid in dropped:
            ids.pop(eid, None)


def _mentions(rec: dict, customers: set[str]) -> bool:
    """True when a log record holds one of these customer ids (the erasure rewrite drops it)."""
    if rec["t"] == "ev":
        return rec["e"].get("customer_id") in customers
    return rec.get("c") in customers


class ReadyState:
    """A state read that is already done: what `begin_state` returns when there is nothing to wait for."""

    __slots__ = ("value",)

    def __init__(self, value: tuple[CustomerState, StockView | None]):
        self.value = value

    def result(self) -> tuple[CustomerState, StockView | None]:
        return self.value

    def cancel(self) -> None:
        pass

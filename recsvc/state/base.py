"""The live-state store interface: what the service reads and writes per customer and per store.

Two implementations pass one contract suite (tests/contract): `InMemoryStore` (embedded default,
one process, made durable by the append-only log in `recsvc.state.eventlog`) and `RedisStore`
(shared by every worker and instance). Key layout (Redis; `<prefix>` from `?prefix=`, default `recsvc`):

    <prefix>:cust:{<customer_id>}:events    list of the newest events, newest first, each one compact JSON
                                             array (ROW_FIELDS order, no customer id: the key has it);
                                             read: the first EVENTS_CAP entries; trimmed back to
                                             EVENTS_CAP once longer than EVENTS_CAP + EVENTS_SLACK; TTL
    <prefix>:cust:{<customer_id>}:evids     zset of accepted event ids (idempotency), score: when accepted
                                             (ms; + k/4096 for the k-th of a batch), newest DEDUP_CAP
                                             (trimmed every 64 events), TTL
    <prefix>:cust:{<customer_id>}:xids      list of the customer's entry ids in <prefix>:events (erasure
                                             index), oldest first, XIDS_TTL_S, stale ids pruned
    <prefix>:cust:{<customer_id>}:consent   hash granted/source/channel/at
    <prefix>:cust:{<customer_id>}:ids       hash "type:<sha256(value)[:32]>" -> JSON provenance record
                                             (masked value, when, by whom, channel; adopted profile)
    <prefix>:cust:{<customer_id>}:meta      hash: anon=1 for a profile made from an unknown identifier,
                                             adopted_by=<customer_id> once a customer adopted it
    <prefix>:ident:{<type>:<sha256(value)[:32]>}  string: the customer id the identifier resolves to
                                             (TTL only for anonymous profiles)
    <prefix>:tomb:{<hmac(customer_id)>}     erasure tombstone (never the id itself)
    <prefix>:events                         stream of every accepted event (field `e`: the JSON), read by
                                             `recsvc-train export-events`; trimmed by the operator
    <prefix>:adopted                        hash anonymous profile id -> adopting customer id (export)
    <prefix>:erasure-key                    shared HMAC key, only when RECSVC_ERASURE_KEY is unset
    <prefix>:stock:{<store_id>}             hash item_id -> quantity
    <prefix>:stock:{<store_id>}:version     counter bumped by every stock write
    <prefix>:rate:{<key_id>:<window>}        per-key request counter of one rate-limit window (TTL)
    <prefix>:audit                          capped stream of audit entries (field `a`: the JSON), which
                                             name their customer by a keyed hash (`subject`)
    <prefix>:audit:subjects                 hash subject -> customer id; erasure drops the customer's
    <prefix>:shards                         the layout the data is in (0, or the N below); a store configured
                                             otherwise refuses to run (every key name depends on it)

That is the single-server layout (`shards=0`, the default without `cluster=1`). The sharded layout
(`?shards=N`, required on a Redis Cluster: `?cluster=1`, default N=64; recsvc/state/redis_layout.py)
puts each customer in bucket crc32(id) mod N and each identifier in bucket crc32("type:hash") mod N,
and gives everything of a bucket the hash tag `{<prefix>:b<k>}`, so every script names keys of one slot:

    <prefix>:cust:{<prefix>:b<k>}:<customer_id>:<part>   the customer keys above (events, evids, xids,
                                             consent, ids, meta)
    <prefix>:tomb:{<prefix>:b<k>}:<hmac>      tombstone of a customer (or identifier) of bucket k
    <prefix>:events:{<prefix>:b<k>}           the event stream of bucket k (readers merge all N by id)
    <prefix>:adopted:{<prefix>:b<k>}          adoptions of the anonymous profiles of bucket k
    <prefix>:ident:{<prefix>:b<k>}:<type>:<hash>   identifier lookup; `...:op`: a link/unlink journal
    (an anonymous profile's id is picked in its identifier's bucket, so both live in one slot)

Event ingestion runs one Lua script per bucket of a batch (one per batch on the single-server layout),
sent in one round trip per node: per customer the dedup and the durable append are one atomic step.
An identifier link or unlink is a few ordered single-slot scripts with a journal in the identifier's
slot, completed by whoever finds it (RedisStore.link_identifier). Per customer of a batch the script
touches the tombstone and the customer's three event keys once each (one ZADD, one LPUSH, one RPUSH,
two EXPIREs whatever the number of its events), plus one XADD per new event.
A recommendation costs one round trip: customer keys + the store's stock version in one pipeline;
the stock hash itself is re-read only when its version moved (workers cache it per version). The
recent events decode in one call (the entries joined into one JSON array), each into a LiveEvent
tuple made from the row's first eight values; the stream keeps the full JSON object per event.
Raw identifier values are never stored: keys and records hold a hash and a masked form.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol, runtime_checkable

from recsvc.core.stock import StockView
from recsvc.core.types import CustomerState, LiveEvent
from recsvc.errors import RecsvcError, StoreUnavailable

IDENTIFIER_TYPES = ("loyalty_card", "email_sha256", "phone_sha256", "device")
EVENTS_CAP = 200  # live events kept per customer (newest); older ones are in the training data
CUSTOMER_TTL_S = 90 * 86400  # a customer's live keys expire this long after their last write
DEDUP_CAP = 10_000  # event ids remembered per customer for idempotent retries (newest)
EVENTS_SLACK = 50  # a Redis recent list may run this far past EVENTS_CAP before it is trimmed (one LTRIM
#                    per 50 events instead of one per event); reads never look past EVENTS_CAP
# One entry of a Redis recent list: a JSON array of these, in this order (the first eight: LiveEvent)
ROW_FIELDS = ("item_id", "event", "channel", "ts", "store_id", "quantity", "value", "recommendation_id",
              "event_id", "actor_type", "actor_id", "session_id", "via")
XIDS_TTL_S = 400 * 86400  # erasure index of stream entries: export + trim the stream more often than this
ANON_PREFIX = "anon-"  # customer ids of profiles created from an identifier seen first in an event
ACTOR_TYPES = ("customer", "clerk")


class StoreError(RecsvcError):
    """A store request that cannot be served as asked (bad URL, bad argument)."""

    code = "store_error"
    status = 400


@functools.lru_cache(maxsize=16)
def _hmac_pads(key: bytes) -> tuple:
    """SHA-256 states after HMAC's inner and outer key pads (RFC 2104), made once per key: hashing a
    customer id then costs two state copies, a third of `hmac.new` (ingestion hashes every customer)."""
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    key = key.ljust(64, b"\0")
    return (hashlib.sha256(bytes(x ^ 0x36 for x in key)), hashlib.sha256(bytes(x ^ 0x5C for x in key)))


def tombstone_id(key: bytes, customer_id: str) -> str:
    """Keyed hash (HMAC-SHA256, hex) of an erased customer's id: late events are refused without the
    id being kept."""
    inner, outer = _hmac_pads(key)
    inner, outer = inner.copy(), outer.copy()
    inner.update(customer_id.encode("utf-8", "surrogatepass"))
    outer.update(inner.digest())
    return outer.hexdigest()


def identifier_key(type_: str, value: str) -> str:
    """Lookup key of an identifier: its type and a hash of its value (card numbers stay out of key names)."""
    return type_ + ":" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def mask_identifier(type_: str, value: str) -> str:
    """What a person may be shown of an identifier: a loyalty card's or device's last four characters,
    a hash's first eight. The raw value is never stored, so this is computed once, at link time."""
    if type_ in ("email_sha256", "phone_sha256"):
        return value[:8].lower() + "…"
    tail = value[-4:] if len(value) > 6 else value[-2:] if len(value) > 3 else ""
    return "****" + tail


@dataclass(frozen=True, slots=True)
class Consent:
    granted: bool
    source: str | None = None
    channel: str | None = None
    at: float | None = None


class StoredEvent(NamedTuple):
    """One accepted event as live state keeps it: who, the event, and who recorded it (a named tuple,
    like LiveEvent: ingestion makes one per event)."""

    event_id: str
    customer_id: str
    event: LiveEvent
    actor_type: str | None = None  # customer | clerk
    actor_id: str | None = None
    session_id: str | None = None
    via: str | None = None  # "type:hash" of the identifier whose anonymous profile this event came from


class AppendResult(NamedTuple):
    """What `append_events` did: new events stored, retries recognised, events of erased customers dropped."""

    accepted: int
    duplicates: int
    erased: int = 0


@dataclass(frozen=True, slots=True)
class Provenance:
    """Who recorded a change, where and when (identifier links, anonymous profiles)."""

    at: float
    by_type: str | None = None  # customer | clerk | system
    by_id: str | None = None
    channel: str | None = None


@dataclass(frozen=True, slots=True)
class LinkedIdentifier:
    """An identifier linked to a customer, as shown to people: never the raw value."""

    type: str
    masked: str
    key: str  # type:hash, what live state keys it by
    provenance: Provenance
    adopted: str | None = None  # anonymous profile whose history came with this link


@dataclass(frozen=True, slots=True)
class LinkOutcome:
    """linked (new), already (no change), moved (taken from another customer), adopted (taken from an
    anonymous profile, whose recent events now count for the customer), erased (refused: the customer
    was erased)."""

    status: str
    previous: str | None = None
    adopted_events: int = 0


@dataclass(frozen=True, slots=True)
class CustomerProfile:
    """Everything live state holds about one customer, read in one round trip (GET /v1/customers/{id})."""

    customer_id: str
    erased: bool
    anonymous: bool = False
    adopted_by: str | None = None
    consent: Consent | None = None
    identifiers: tuple[LinkedIdentifier, ...] = ()
    events: tuple[StoredEvent, ...] = ()  # newest last

    @property
    def exists(self) -> bool:
        return bool(self.anonymous or self.consent or self.identifiers or self.events)




@runtime_checkable
class StateStore(Protocol):
    """Every method raises StoreUnavailable when the backend cannot be reached in time."""

    def get_state(
        self, customer_id: str | None, store_id: str | None
    ) -> tuple[CustomerState, StockView | None]:
        """The customer's live state and the store's live stock (None: no live stock for that store),
        in one round trip. An unknown or absent customer gives CustomerState(customer_id)."""

    def resolve_identifier(self, type_: str, value: str) -> str | None: ...

    def resolve_or_create(
        self, identifiers: Sequence[tuple[str, str]], provenance: Provenance
    ) -> list[str | None]:
        """The customer each (type, value) resolves to; an identifier seen for the first time gets a new
        anonymous profile (`anon-…`, TTL like any live state) that a later link can adopt. None: the
        identifier belonged to an erased customer (its events are dropped)."""

    def link_identifier(
        self, customer_id: str, type_: str, value: str, provenance: Provenance | None = None
    ) -> LinkOutcome:
        """Point the identifier at the customer. Taken from an anonymous profile, the profile's recent
        events are copied into the customer's (tagged `via`); taken from another customer, it moves."""

    def unlink_identifier(self, customer_id: str, type_: str, value: str) -> bool:
        """Undo a link (False: not linked to this customer). An adopted anonymous profile gets its
        identifier back and the copied events leave the customer's list: link + unlink = no change."""

    def identifiers(self, customer_id: str) -> list[LinkedIdentifier]: ...

    def set_consent(self, customer_id: str, consent: Consent) -> None: ...

    def get_consent(self, customer_id: str) -> Consent | None: ...

    def append_events(self, events: Sequence[StoredEvent]) -> AppendResult:
        """Store new events durably (the Redis stream or the embedded log) before returning.
        Idempotent by event_id per customer; events of erased customers are dropped and counted."""

    def recent_events(self, customer_id: str, limit: int = EVENTS_CAP) -> list[StoredEvent]: ...

    def profile(self, customer_id: str, limit: int = 50) -> CustomerProfile:
        """Consent, identifiers, flags and the `limit` newest events of one customer, in one round trip."""

    def set_stock(self, store_id: str, quantities: Mapping[str, int], replace: bool = False) -> int:
        """Set the listed quantities (replace=True drops items not listed); returns the new version."""

    def get_stock(self, store_id: str, item_ids: Iterable[str] | None = None) -> dict[str, int] | None:
        """{item_id: quantity} (only `item_ids` when given; missing items are 0); None: no live stock."""

    def erase(self, customer_id: str) -> int:
        """Forget the customer everywhere live state and the durable event record hold it: events (the
        stream / log entries too), consent, identifiers, anonymous profiles it adopted; leave a
        tombstone (keyed hash) that blocks late events. Returns how many customer ids were erased."""

    def is_erased(self, customer_id: str) -> bool: ...

    def incr_counter(self, name: str, by: int, ttl_s: int) -> int:
        """Add `by` to a named counter that expires `ttl_s` seconds after its last change; its new
        value (per-key rate limits: shared by every worker on Redis, this process's own in memory)."""

    def audit_append(self, record: Mapping, customer_id: str | None) -> None:
        """Append an audit entry (newest AUDIT_CAP kept). The customer is kept as a keyed hash in the
        entry plus a hash -> id mapping that erasure drops (none is made for an erased customer)."""

    def audit_read(self, limit: int = 100, customer_id: str | None = None, where: Mapping | None = None,
                   since: float | None = None) -> list[dict]:
        """Audit entries, newest first (at most AUDIT_SCAN looked at), each with `customer_id` (None
        when the entry had none, or once the customer was erased) and `customer_erased`; `where`:
        exact matches on entry fields; `since`: epoch seconds."""

    def ping(self) -> None:
        """Return when the backend answers; StoreUnavailable otherwise."""

    def close(self) -> None: ...


__all__ = [
    "ACTOR_TYPES",
    "ANON_PREFIX",
    "CUSTOMER_TTL_S",
    "DEDUP_CAP",
    "EVENTS_CAP",
    "IDENTIFIER_TYPES",
    "AppendResult",
    "Consent",
    "CustomerProfile",
    "LinkOutcome",
    "LinkedIdentifier",
    "Provenance",
    "StateStore",
    "StockView",
    "StoreError",
    "StoreUnavailable",
    "StoredEvent",
]


AUDIT_CAP = 100_000  # audit entries kept (newest)
AUDIT_SCAN = 20_000  # entries one audit read looks through at most


def audit_subject(key: bytes, customer_id: str) -> str:
    """How an audit entry names its customer: a keyed hash, resolvable only while the customer is not
    erased (the store keeps hash -> id until then)."""
    return tombstone_id(key, "audit:" + customer_id)


def audit_matches(rec: Mapping, subject: str | None, where: Mapping | None, since: float | None) -> bool:
    if subject is not None and rec.get("subject") != subject:
        return False
    if since is not None and float(rec.get("ts", 0.0)) < since:
        return False
    return not where or all(rec.get(k) == v for k, v in where.items())


def audit_view(rec: Mapping, customer_id: str | None) -> dict:
    """An entry as readers see it: the resolved customer id, never the keyed hash."""
    out = {k: v for k, v in rec.items() if k != "subject"}
    out["customer_id"] = customer_id
    out["customer_erased"] = bool(rec.get("subject")) and customer_id is None
    return out


def event_to_dict(e: StoredEvent) -> dict:
    """The JSON object of an event (the stream's `e` field, the embedded log); None values left out."""
    event_id, customer_id, ev, actor_type, actor_id, session_id, via = e
    item_id, kind, channel, ts, store_id, quantity, value, recommendation_id = ev
    d = {"event_id": event_id, "customer_id": customer_id, "item_id": item_id, "event": kind,
         "channel": channel, "ts": ts, "quantity": quantity}
    if store_id is not None:
        d["store_id"] = store_id
    if value is not None:
        d["value"] = value
    if recommendation_id is not None:
        d["recommendation_id"] = recommendation_id
    if actor_type is not None:
        d["actor_type"] = actor_type
    if actor_id is not None:
        d["actor_id"] = actor_id
    if session_id is not None:
        d["session_id"] = session_id
    if via is not None:
        d["via"] = via
    return d


def event_from_dict(d: Mapping) -> StoredEvent:
    ev = LiveEvent(
        item_id=d["item_id"],
        event=d["event"],
        channel=d["channel"],
        ts=float(d["ts"]),
        store_id=d.get("store_id"),
        quantity=float(d.get("quantity", 1.0)),
        value=d.get("value"),
        recommendation_id=d.get("recommendation_id"),
    )
    return StoredEvent(
        event_id=d["event_id"],
        customer_id=d["customer_id"],
        event=ev,
        actor_type=d.get("actor_type"),
        actor_id=d.get("actor_id"),
        session_id=d.get("session_id"),
        via=d.get("via"),
    )


_tuple_new = tuple.__new__


def event_row(e: StoredEvent) -> list:
    """The compact form a Redis recent list keeps (ROW_FIELDS order; the customer id is in the key)."""
    ev = e.event
    value = ev.value
    return [ev.item_id, ev.event, ev.channel, float(ev.ts), ev.store_id, float(ev.quantity),
            None if value is None else float(value), ev.recommendation_id,
            e.event_id, e.actor_type, e.actor_id, e.session_id, e.via]


def live_events_from_rows(rows: list) -> tuple[LiveEvent, ...]:
    """LiveEvents from decoded rows (a row is a list, see ROW_FIELDS), in the rows' order. An entry
    written before rows existed (a JSON object) is read too."""
    try:
        return tuple([_tuple_new(LiveEvent, r[:8]) for r in rows])
    except TypeError:  # an old entry: a dict
        return tuple(event_from_dict(r).event if type(r) is dict else _tuple_new(LiveEvent, r[:8]) for r in rows)


def event_from_row(r, customer_id: str) -> StoredEvent:
    """A decoded row of `customer_id`'s recent list (or an older entry's JSON object)."""
    if type(r) is dict:
        return event_from_dict({**r, "customer_id": customer_id})
    return StoredEvent(r[8], customer_id, _tuple_new(LiveEvent, r[:8]), r[9], r[10], r[11], r[12])


def provenance_to_dict(p: Provenance) -> dict:
    return {k: v for k, v in (("at", p.at), ("by_type", p.by_type), ("by_id", p.by_id),
                              ("channel", p.channel)) if v is not None}


def identifier_record(masked: str, provenance: Provenance, adopted: str | None = None) -> dict:
    """The JSON record kept per linked identifier (Redis `ids` hash value, embedded log)."""
    d = {"masked": masked, **provenance_to_dict(provenance)}
    if adopted:
        d["adopted"] = adopted
    return d


def linked_from_record(key: str, d: Mapping) -> LinkedIdentifier:
    return LinkedIdentifier(
        type=key.split(":", 1)[0],
        masked=d.get("masked", "****"),
        key=key,
        provenance=Provenance(at=float(d.get("at", 0.0)), by_type=d.get("by_type"), by_id=d.get("by_id"),
                              channel=d.get("channel")),
        adopted=d.get("adopted") or None,
    )

"""The live-state store interface: what the service reads and writes per customer and per store.

Two implementations pass one contract suite (tests/contract): `InMemoryStore` (embedded default,
one process) and `RedisStore` (shared by every worker and instance). Key layout (Redis):

    <prefix>:cust:{<customer_id>}:events    list of JSON events, newest first, capped, TTL
    <prefix>:cust:{<customer_id>}:evids     set of accepted event ids (idempotency), TTL
    <prefix>:cust:{<customer_id>}:consent   hash granted/source/channel/at
    <prefix>:cust:{<customer_id>}:ids       set of "type:value" identifiers linked to the customer
    <prefix>:ident:{<type>:<sha256(value)>} string: the customer id the identifier resolves to
    <prefix>:tomb:{<hmac(customer_id)>}     erasure tombstone (never the id itself)
    <prefix>:stock:{<store_id>}             hash item_id -> quantity
    <prefix>:stock:{<store_id>}:version     counter bumped by every stock write

The braces are Redis Cluster hash tags: a customer's keys share one slot, as do a store's two keys.
A recommendation costs one round trip: customer keys + the store's stock version in one pipeline;
the stock hash itself is re-read only when its version moved (workers cache it per version).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from recsvc.core.stock import StockView
from recsvc.core.types import CustomerState, LiveEvent
from recsvc.errors import RecsvcError, StoreUnavailable

IDENTIFIER_TYPES = ("loyalty_card", "email_sha256", "phone_sha256", "device")
EVENTS_CAP = 200  # live events kept per customer (newest); older ones are in the training data
CUSTOMER_TTL_S = 90 * 86400  # a customer's live keys expire this long after their last write


class StoreError(RecsvcError):
    """A store request that cannot be served as asked (bad URL, bad argument)."""

    code = "store_error"
    status = 400


def tombstone_id(key: bytes, customer_id: str) -> str:
    """Keyed hash of an erased customer's id: lets late events be refused without keeping the id."""
    return hmac.new(key, customer_id.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


def identifier_key(type_: str, value: str) -> str:
    """Lookup key of an identifier: its type and a hash of its value (card numbers stay out of key names)."""
    return type_ + ":" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One accepted event as live state keeps it: who, the event, and who recorded it."""

    event_id: str
    customer_id: str
    event: LiveEvent
    actor_type: str | None = None  # customer | clerk
    actor_id: str | None = None


@dataclass(frozen=True, slots=True)
class Consent:
    granted: bool
    source: str | None = None
    channel: str | None = None
    at: float | None = None


@runtime_checkable
class StateStore(Protocol):
    """Every method raises StoreUnavailable when the backend cannot be reached in time."""

    def get_state(
        self, customer_id: str | None, store_id: str | None
    ) -> tuple[CustomerState, StockView | None]:
        """The customer's live state and the store's live stock (None: no live stock for that store),
        in one round trip. An unknown or absent customer gives CustomerState(customer_id)."""

    def resolve_identifier(self, type_: str, value: str) -> str | None: ...

    def link_identifier(self, customer_id: str, type_: str, value: str) -> None: ...

    def unlink_identifier(self, customer_id: str, type_: str, value: str) -> bool: ...

    def identifiers(self, customer_id: str) -> list[tuple[str, str]]: ...

    def set_consent(self, customer_id: str, consent: Consent) -> None: ...

    def get_consent(self, customer_id: str) -> Consent | None: ...

    def append_events(self, events: Sequence[StoredEvent]) -> tuple[int, int]:
        """Store new events; returns (accepted, duplicates). Idempotent by event_id."""

    def recent_events(self, customer_id: str, limit: int = EVENTS_CAP) -> list[StoredEvent]: ...

    def set_stock(self, store_id: str, quantities: Mapping[str, int], replace: bool = False) -> int:
        """Set the listed quantities (replace=True drops items not listed); returns the new version."""

    def get_stock(self, store_id: str, item_ids: Iterable[str] | None = None) -> dict[str, int] | None:
        """{item_id: quantity} (only `item_ids` when given; missing items are 0); None: no live stock."""

    def erase(self, customer_id: str) -> None:
        """Forget the customer: events, consent, identifiers; leave a tombstone that blocks late events."""

    def is_erased(self, customer_id: str) -> bool: ...

    def ping(self) -> None:
        """Return when the backend answers; StoreUnavailable otherwise."""

    def close(self) -> None: ...


__all__ = [
    "CUSTOMER_TTL_S",
    "EVENTS_CAP",
    "IDENTIFIER_TYPES",
    "Consent",
    "StateStore",
    "StockView",
    "StoreError",
    "StoreUnavailable",
    "StoredEvent",
]


def event_to_dict(e: StoredEvent) -> dict:
    ev = e.event
    d = {
        "event_id": e.event_id,
        "customer_id": e.customer_id,
        "item_id": ev.item_id,
        "event": ev.event,
        "channel": ev.channel,
        "ts": ev.ts,
        "quantity": ev.quantity,
    }
    for k, v in (
        ("store_id", ev.store_id),
        ("value", ev.value),
        ("recommendation_id", ev.recommendation_id),
        ("actor_type", e.actor_type),
        ("actor_id", e.actor_id),
    ):
        if v is not None:
            d[k] = v
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
    )

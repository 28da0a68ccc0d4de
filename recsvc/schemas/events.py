"""POST /v1/events: a batch of up to 1000 events; each loads into an `IncomingEvent`.

Validation is all or nothing: one invalid event rejects the batch with 422 and a detail per field
(`events[3].channel`). `customer` takes the recommendations' two shapes: `{"customer_id"}` or
`{"identifier": {"type", "value"}}` (an identifier seen for the first time gets an anonymous profile).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import NamedTuple

from marshmallow import Schema, ValidationError, fields, post_load, validate

from recsvc.core.types import CHANNELS, EVENTS
from recsvc.schemas.common import ID_MAX, Id
from recsvc.schemas.recommendations import HASHED_TYPES, CustomerRef, CustomerSchema
from recsvc.state.base import ACTOR_TYPES, IDENTIFIER_TYPES

MAX_EVENTS = 1000
MAX_EPOCH = 1e11  # seconds; larger numbers are most likely milliseconds
MAX_QUANTITY = 1e6
MAX_VALUE = 1e12


class IncomingEvent(NamedTuple):
    """One validated event of a batch; `ts` None means "when received" (a named tuple: a batch makes
    up to 1000)."""

    event_id: str
    customer: CustomerRef
    item_id: str
    event: str
    channel: str
    ts: float | None
    store_id: str | None = None
    quantity: float = 1.0
    value: float | None = None
    recommendation_id: str | None = None
    session_id: str | None = None
    actor_type: str | None = None
    actor_id: str | None = None


def parse_timestamp(value) -> float:
    """ISO-8601 (a date alone is 00:00 UTC, no offset means UTC) or epoch seconds -> epoch seconds.
    ValueError with a reason a person can act on."""
    if type(value) in (int, float):
        v = float(value)
        if not math.isfinite(v) or not 0 <= v < MAX_EPOCH:
            raise ValueError("epoch seconds out of range (milliseconds?)")
        return v
    if type(value) is not str or not 8 <= len(value) <= 40:
        raise ValueError("expected an ISO-8601 string like 2026-11-23T10:00:00Z or epoch seconds")
    try:
        d = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError("not ISO-8601 (e.g. 2026-11-23T10:00:00Z) or epoch seconds") from None
    if d.tzinfo is None:
        d = d.replace(tzinfo=dt.UTC)
    t = d.timestamp()
    if not 0 <= t < MAX_EPOCH:
        raise ValueError("timestamp out of range")
    return t


class Timestamp(fields.Field):
    """ISO-8601 string or epoch seconds, loaded as float epoch seconds."""

    def _deserialize(self, value, attr, data, **kwargs):
        try:
            return parse_timestamp(value)
        except ValueError as e:
            raise ValidationError(str(e)) from None


class ActorSchema(Schema):
    type = fields.String(required=True, validate=validate.OneOf(ACTOR_TYPES))
    id = Id(
        load_default=None,
        allow_none=True,
        metadata={"description": "a clerk's id (with API keys, the key's clerk is what counts)"},
    )


class EventSchema(Schema):
    event_id = Id(
        required=True,
        metadata={"description": "made by the sender, unique per event: a retry with the same id is a duplicate"},
    )
    customer = fields.Nested(
        CustomerSchema,
        required=True,
        metadata={"description": "exactly one of customer_id or identifier", "minProperties": 1,
                  "maxProperties": 1},
    )
    item_id = Id(required=True)
    event = fields.String(required=True, validate=validate.OneOf(EVENTS))
    channel = fields.String(required=True, validate=validate.OneOf(CHANNELS))
    timestamp = Timestamp(
        load_default=None,
        allow_none=True,
        metadata={
            "description": "ISO-8601 (date alone = 00:00 UTC, no offset = UTC) or epoch seconds, "
            "1970 to 5138; absent: when received",
            "example": "2026-11-23T10:00:00Z",
            "oneOf": [{"type": "string", "format": "date-time"},
                      {"type": "number", "minimum": 0, "maximum": MAX_EPOCH, "exclusiveMaximum": True}],
        },
    )
    store_id = Id(load_default=None, allow_none=True)
    quantity = fields.Float(
        load_default=1.0,
        allow_nan=False,
        validate=validate.Range(0, MAX_QUANTITY, min_inclusive=False),
    )
    value = fields.Float(
        load_default=None, allow_none=True, allow_nan=False, validate=validate.Range(-MAX_VALUE, MAX_VALUE)
    )
    recommendation_id = Id(
        load_default=None, allow_none=True, metadata={"description": "the answer this event follows from"}
    )
    session_id = Id(load_default=None, allow_none=True)
    actor = fields.Nested(
        ActorSchema,
        load_default=None,
        allow_none=True,
        metadata={"description": "who recorded the event: the customer (default) or a clerk"},
    )

    @post_load
    def _make(self, d, **kw) -> IncomingEvent:
        actor = d["actor"] or {}
        return IncomingEvent(
            event_id=d["event_id"],
            customer=d["customer"],
            item_id=d["item_id"],
            event=d["event"],
            channel=d["channel"],
            ts=d["timestamp"],
            store_id=d["store_id"],
            quantity=d["quantity"],
            value=d["value"],
            recommendation_id=d["recommendation_id"],
            session_id=d["session_id"],
            actor_type=actor.get("type"),
            actor_id=actor.get("id"),
        )


class EventBatchSchema(Schema):
    events = fields.List(
        fields.Nested(EventSchema),
        required=True,
        validate=validate.Length(1, MAX_EVENTS),
        metadata={"description": f"1 to {MAX_EVENTS} events; more answers 413"},
    )

    def load_batch(self, body: dict) -> list[IncomingEvent]:
        """`load(body)["events"]`, with the `load_everyday` shortcut first."""
        events = load_everyday(body)
        return events if events is not None else self.load(body)["events"]


class EventsAcceptedSchema(Schema):
    accepted = fields.Integer(required=True, metadata={"description": "new events, durably written"})
    duplicates = fields.Integer(
        required=True, metadata={"description": "events whose event_id was accepted before (retries)"}
    )
    erased = fields.Integer(
        required=True,
        metadata={"description": "events of erased customers, dropped (a tombstone blocks them)"},
    )


# -- the everyday batch without marshmallow: marshmallow costs ~50 µs per event, a third of the CPU of
# ingesting it. `load_everyday` returns what `EventBatchSchema().load(body)["events"]` returns for
# batches of plainly valid events, and None at any doubt (the schema then decides and words the
# errors); tests/realtime/test_events_api.py checks the two agree on generated batches.
_NOT_PRINTABLE = re.compile(r"[\x00-\x1f\x7f]")
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_EVENT_KEYS = frozenset(EventSchema().fields)
_EVENTS, _CHANNELS = frozenset(EVENTS), frozenset(CHANNELS)
_IDENTIFIER_TYPES, _ACTOR_TYPES = frozenset(IDENTIFIER_TYPES), frozenset(ACTOR_TYPES)


def _plain_id(v) -> bool:
    return type(v) is str and 0 < len(v) <= ID_MAX and _NOT_PRINTABLE.search(v) is None


def _number(v) -> float | None:
    """A JSON number as marshmallow's Float loads it (None: not a plain number)."""
    t = type(v)
    if t is float:
        return v if math.isfinite(v) else None
    if t is int and -(2**53) <= v <= 2**53:
        return float(v)
    return None


def _customer(c) -> CustomerRef | None:
    if type(c) is not dict or len(c) != 1:
        return None
    cid = c.get("customer_id")
    if cid is not None:
        return CustomerRef(customer_id=cid) if _plain_id(cid) else None
    ident = c.get("identifier")
    if type(ident) is not dict or ident.keys() != {"type", "value"}:
        return None
    t, v = ident["type"], ident["value"]
    if type(t) is not str or t not in _IDENTIFIER_TYPES or type(v) is not str or not 0 < len(v) <= 256:
        return None
    if t in HASHED_TYPES:
        if not _HEX64.fullmatch(v):
            return None
        v = v.lower()
    return CustomerRef(identifier_type=t, identifier_value=v)


def _event(e) -> IncomingEvent | None:
    if type(e) is not dict or not e.keys() <= _EVENT_KEYS:
        return None
    event_id, item_id, kind, channel = e.get("event_id"), e.get("item_id"), e.get("event"), e.get("channel")
    if not (_plain_id(event_id) and _plain_id(item_id) and type(kind) is str and kind in _EVENTS
            and type(channel) is str and channel in _CHANNELS):
        return None
    customer = _customer(e.get("customer"))
    if customer is None:
        return None
    ts = e.get("timestamp")
    if ts is not None:
        try:
            ts = parse_timestamp(ts)
        except ValueError:
            return None
    store_id, rec_id, session_id = e.get("store_id"), e.get("recommendation_id"), e.get("session_id")
    for v in (store_id, rec_id, session_id):
        if v is not None and not _plain_id(v):
            return None
    quantity = _number(e.get("quantity", 1.0))
    if quantity is None or not 0 < quantity <= MAX_QUANTITY:
        return None
    value = e.get("value")
    if value is not None:
        value = _number(value)
        if value is None or not -MAX_VALUE <= value <= MAX_VALUE:
            return None
    actor, actor_type, actor_id = e.get("actor"), None, None
    if actor is not None:
        if type(actor) is not dict or "type" not in actor or not actor.keys() <= {"type", "id"}:
            return None
        actor_type, actor_id = actor["type"], actor.get("id")
        if type(actor_type) is not str or actor_type not in _ACTOR_TYPES or (
                actor_id is not None and not _plain_id(actor_id)):
            return None
    return IncomingEvent(event_id=event_id, customer=customer, item_id=item_id, event=kind, channel=channel,
                         ts=ts, store_id=store_id, quantity=quantity, value=value, recommendation_id=rec_id,
                         session_id=session_id, actor_type=actor_type, actor_id=actor_id)


def load_everyday(body) -> list[IncomingEvent] | None:
    """The events of a batch every event of which is plainly valid; None when unsure."""
    if type(body) is not dict or body.keys() != {"events"}:
        return None
    raw = body["events"]
    if type(raw) is not list or not 0 < len(raw) <= MAX_EVENTS:
        return None
    out = []
    for e in raw:
        ev = _event(e)
        if ev is None:
            return None
        out.append(ev)
    return out

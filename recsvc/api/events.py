"""POST /v1/events: events from every channel, acknowledged (202) only once durably written.

The batch is validated whole (one bad event: 422 naming `events[i].field`), identifiers are resolved
in one round trip (one seen for the first time gets an anonymous profile, which a later login adopts),
then one `append_events` call writes every new event: on Redis a single Lua script does the per-customer
dedup, the global stream append (what `recsvc-train export-events` reads) and the capped recent list
the next recommendation reads; on the embedded store the log is fsynced first. Redis down or slow:
503 with `Retry-After`, nothing acknowledged; a retry with the same event ids is safe.
"""

from __future__ import annotations

import logging
import time

from flask import Blueprint, current_app, g

from recsvc.api import doc, json_response, read_json, services
from recsvc.core.types import LiveEvent
from recsvc.http_errors import ApiError
from recsvc.schemas.common import ErrorBodySchema
from recsvc.schemas.events import MAX_EVENTS, EventBatchSchema, EventsAcceptedSchema, IncomingEvent
from recsvc.security import CLERK, STOREFRONT, allow, require_events_scope
from recsvc.state.base import AppendResult, Provenance, StateStore, StoredEvent

log = logging.getLogger("recsvc.events")
bp = Blueprint("events", __name__)
EXTENSION = "recsvc.events"


class TooManyEvents(ApiError):
    status = 413
    code = "too_many_events"


@bp.record_once
def _setup(state) -> None:
    """Schema instances once per app (building them per request costs more than loading a batch)."""
    app = state.app
    app.extensions[EXTENSION] = EventBatchSchema()
    svc = app.extensions["recsvc"]
    if svc.config.erasure_key is None and svc.config.store_url.startswith(("redis", "unix")):
        log.warning(
            "RECSVC_ERASURE_KEY is unset: erasure tombstones are keyed with a generated key kept in Redis "
            "(<prefix>:erasure-key), next to the tombstones; set RECSVC_ERASURE_KEY in production"
        )


def ingest(store: StateStore, batch: list[IncomingEvent], now: float) -> AppendResult:
    """Resolve who each event is about, then write the new ones (the durable write)."""
    refs: dict[tuple[str, str], str | None] = {}
    for e in batch:
        c = e.customer
        if c.customer_id is None:
            refs[(c.identifier_type, c.identifier_value)] = None
    if refs:
        keys = list(refs)
        refs = dict(zip(keys, store.resolve_or_create(keys, Provenance(at=now, by_type="event"))))
    stored, blocked = [], 0
    for e in batch:
        c = e.customer
        cid = c.customer_id if c.customer_id is not None else refs[(c.identifier_type, c.identifier_value)]
        if cid is None:  # an identifier of an erased customer
            blocked += 1
            continue
        stored.append(StoredEvent(  # positional: StoredEvent and LiveEvent field order
            e.event_id, cid,
            LiveEvent(e.item_id, e.event, e.channel, e.ts if e.ts is not None else now, e.store_id, e.quantity,
                      e.value, e.recommendation_id),
            e.actor_type, e.actor_id, e.session_id))
    result = store.append_events(stored)
    return AppendResult(result.accepted, result.duplicates, result.erased + blocked)


@bp.post("/v1/events")
@doc(
    "Record events from any channel",
    tag="events",
    body=EventBatchSchema,
    responses={202: EventsAcceptedSchema, 413: ErrorBodySchema, 422: ErrorBodySchema, 503: ErrorBodySchema},
    description=f"Up to {MAX_EVENTS} events per call. 202 once every new event is durably written; "
    "a batch with any invalid event is rejected whole (422, one detail per field: `events[3].channel`). "
    "`event_id` makes retries idempotent (`duplicates`). Events of erased customers are dropped "
    "(`erased`). An identifier seen for the first time gets an anonymous profile; linking the "
    "identifier to a customer later makes that history count for the customer. 503 with Retry-After "
    "when live state cannot be written: nothing was acknowledged, retry the same batch. A storefront key "
    "records events of its channels (and store) only, never as a clerk; a clerk key records events with "
    "actor type clerk in its own store (403 naming each event that is not).",
)
@allow(STOREFRONT, CLERK)
def post_events():
    svc = services()
    body = read_json()
    raw = body.get("events")
    if isinstance(raw, list) and len(raw) > MAX_EVENTS:
        raise TooManyEvents(
            f"events: {len(raw)} events in one call; send at most {MAX_EVENTS} per call",
            [{"field": "events", "reason": f"more than {MAX_EVENTS} events"}],
        )
    batch = current_app.extensions[EXTENSION].load_batch(body)
    require_events_scope(batch)
    result = ingest(svc.store, batch, time.time())
    g.log_fields = {"events": len(batch), "accepted": result.accepted, "duplicates": result.duplicates}
    return json_response(
        {"accepted": result.accepted, "duplicates": result.duplicates, "erased": result.erased}, status=202
    )

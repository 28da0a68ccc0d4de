"""/v1/customers/{customer_id}: what live state holds of a customer, and the customer's controls.

- GET: identifiers (type + masked value, provenance), consent (source, channel, time), recent activity
  on every channel with item titles from the served model. One store round trip.
- PUT .../consent: recorded with source and channel; the next recommendation reads it (never cached).
- POST .../identifiers, DELETE .../identifiers/{type}/{value}: link with provenance, reversible unlink.
  Linking an identifier held by an anonymous profile adopts that profile's history; linking one held
  by another customer answers 409 unless `move` is true (a card scanned to the wrong person is undone
  by unlinking, not by merging two people).
- DELETE: erasure (live state, identifiers, recent events, stream/log entries, adopted profiles); a
  tombstone holding a keyed hash of the id blocks late events and writes (409 `customer_erased`); GET
  answers `erased: true`; recommendations are not personalised.
- POST /v1/customers/lookup `{type, value}`: the customer an identifier resolves to, or null (one round
  trip); the value travels in the body, never in a URL or a log line.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter

from flask import Blueprint, current_app, g, request

from recsvc.api import doc, json_response, read_json, services
from recsvc.http_errors import ApiError, ResourceNotFound
from recsvc.schemas.common import ID_MAX, ErrorBodySchema
from recsvc.schemas.customers import (
    ConsentAnswerSchema,
    ConsentUpdateSchema,
    CustomerQuerySchema,
    CustomerViewSchema,
    ErasureAnswerSchema,
    IdentifierLinkSchema,
    IdentifierLookupSchema,
    LinkAnswerSchema,
    LookupAnswerSchema,
    UnlinkAnswerSchema,
)
from recsvc.schemas.recommendations import HASHED_TYPES
from recsvc.security import CLERK, allow, audit_note, audited
from recsvc.state.base import (
    ANON_PREFIX,
    IDENTIFIER_TYPES,
    Consent,
    CustomerProfile,
    LinkedIdentifier,
    Provenance,
    StoredEvent,
    identifier_key,
)

bp = Blueprint("customers", __name__)
EXTENSION = "recsvc.customers"


class CustomerErased(ApiError):
    """A write for an erased customer: the tombstone keeps them erased (a late write recreates nothing)."""

    status = 409
    code = "customer_erased"


class IdentifierTaken(ApiError):
    status = 409
    code = "identifier_linked_elsewhere"


class _Schemas:
    def __init__(self):
        self.consent = ConsentUpdateSchema()
        self.link = IdentifierLinkSchema()
        self.lookup = IdentifierLookupSchema()
        self.query = CustomerQuerySchema()


@bp.record_once
def _setup(state) -> None:
    state.app.extensions[EXTENSION] = _Schemas()


def _schemas() -> _Schemas:
    return current_app.extensions[EXTENSION]


def _customer_id(customer_id: str) -> str:
    if len(customer_id) > ID_MAX or any(ord(c) < 32 or ord(c) == 127 for c in customer_id):
        raise ResourceNotFound(
            "no such customer id (at most 128 printable characters)",
            [{"field": "customer_id", "reason": "not a valid id"}],
        )
    g.log_fields = {"customer_id": customer_id}
    return customer_id


def _erased(customer_id: str) -> CustomerErased:
    return CustomerErased(
        "this customer was erased on request; nothing is recorded about them any more",
        [{"field": "customer_id", "reason": "erased"}],
    )


def _erased_view(customer_id: str) -> dict:
    return {"customer_id": customer_id, "erased": True, "known_to_model": False, "anonymous": False,
            "adopted_by": None, "personalised": False,
            "consent": {"personalisation": False, "recorded": False, "source": None, "channel": None, "at": None},
            "identifiers": [], "recent_activity": [], "activity_by_channel": {}}


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _consent_view(c: Consent | None, default: bool) -> dict:
    if c is None:
        return {"personalisation": default, "recorded": False, "source": None, "channel": None, "at": None}
    return {"personalisation": c.granted, "recorded": True, "source": c.source, "channel": c.channel,
            "at": _iso(c.at)}


def _identifier_view(x: LinkedIdentifier) -> dict:
    p = x.provenance
    return {"type": x.type, "masked": x.masked, "linked_at": _iso(p.at) if p.at else None,
            "linked_by": {"type": p.by_type, "id": p.by_id}, "channel": p.channel,
            "brought_history": x.adopted is not None}


def _activity(model, events: tuple[StoredEvent, ...]) -> list[dict]:
    out = []
    for e in reversed(events):
        ev = e.event
        title = category = None
        row = model.item_index(ev.item_id) if model is not None else -1
        if row >= 0:
            title = str(model.item_title[row])
            cat = int(model.item_category[row])
            category = str(model.category_names[cat]) if 0 <= cat < len(model.category_names) else None
        out.append({
            "event_id": e.event_id, "event": ev.event, "channel": ev.channel, "item_id": ev.item_id,
            "title": title, "category": category, "store_id": ev.store_id, "timestamp": _iso(ev.ts),
            "quantity": ev.quantity, "recommendation_id": ev.recommendation_id,
            "actor": {"type": e.actor_type, "id": e.actor_id} if e.actor_type else None,
        })
    return out


def _who(body: dict) -> tuple[str | None, str | None]:
    actor = body.get("actor") or {}
    return actor.get("type"), actor.get("id")


@bp.get("/v1/customers/<customer_id>")
@doc(
    "What live state holds about a customer",
    tag="customers",
    query=CustomerQuerySchema,
    responses={200: CustomerViewSchema, 404: ErrorBodySchema, 503: ErrorBodySchema},
    description="Identifiers (masked, with who linked them, when and on which channel), consent (with "
    "source and channel), and recent activity on every channel, newest first, with item titles. A "
    "customer nothing is known about (`known_to_model` false, no live state) answers an empty view: "
    "customers exist before their first event; an erased one answers `erased: true` and nothing else. "
    "404 only for an id that cannot be one. Audited.",
)
@allow(CLERK)
@audited("customer.view")
def get_customer(customer_id: str):
    svc = services()
    customer_id = _customer_id(customer_id)
    q = _schemas().query.load({k: v for k, v in request.args.items() if k == "limit"})
    p: CustomerProfile = svc.store.profile(customer_id, limit=q["limit"])
    if p.erased:
        return json_response(_erased_view(customer_id))
    model = svc.holder.model
    known = model is not None and model.customer_index(customer_id) >= 0
    consent = _consent_view(p.consent, svc.config.consent_default)
    return json_response({
        "customer_id": customer_id,
        "erased": False,
        "known_to_model": known,
        "anonymous": p.anonymous,
        "adopted_by": p.adopted_by,
        "personalised": bool(consent["personalisation"] and (known or p.events)),
        "consent": consent,
        "identifiers": [_identifier_view(x) for x in p.identifiers],
        "recent_activity": _activity(model, p.events),
        "activity_by_channel": dict(Counter(e.event.channel for e in p.events)),
    })


@bp.put("/v1/customers/<customer_id>/consent")
@doc(
    "Record the customer's choice about personalisation",
    tag="customers",
    body=ConsentUpdateSchema,
    responses={200: ConsentAnswerSchema, 409: ErrorBodySchema, 422: ErrorBodySchema, 503: ErrorBodySchema},
    description="Applies to the next request on every channel (consent is read on every request). "
    "409 `customer_erased` for an erased customer. Audited.",
)
@allow(CLERK)
@audited("consent.change")
def put_consent(customer_id: str):
    svc = services()
    customer_id = _customer_id(customer_id)
    body = _schemas().consent.load(read_json())
    if svc.store.is_erased(customer_id):
        raise _erased(customer_id)
    consent = Consent(granted=body["personalisation"], source=body["source"], channel=body["channel"],
                      at=round(time.time(), 3))
    svc.store.set_consent(customer_id, consent)
    audit_note(customer_id, personalisation=consent.granted, source=consent.source, channel=consent.channel)
    return json_response({"customer_id": customer_id,
                          "consent": _consent_view(consent, svc.config.consent_default)})


@bp.post("/v1/customers/<customer_id>/identifiers")
@doc(
    "Link an identifier (loyalty card, hashed email or phone, app device) to the customer",
    tag="customers",
    body=IdentifierLinkSchema,
    responses={200: LinkAnswerSchema, 201: LinkAnswerSchema, 409: ErrorBodySchema, 422: ErrorBodySchema,
               503: ErrorBodySchema},
    description="201 when linked now, 200 when it already was. An identifier of an anonymous profile "
    "(events sent before the customer logged in) brings that history along (`adopted`); one linked to "
    "another customer answers 409 `identifier_linked_elsewhere` unless `move` is true; an erased "
    "customer answers 409 `customer_erased`. Audited.",
)
@allow(CLERK)
@audited("identifier.link")
def post_identifier(customer_id: str):
    svc = services()
    customer_id = _customer_id(customer_id)
    body = _schemas().link.load(read_json())
    store = svc.store
    if store.is_erased(customer_id):
        raise _erased(customer_id)
    owner = store.resolve_identifier(body["type"], body["value"])
    if owner is not None and owner != customer_id and not body["move"] and not store.profile(owner, 0).anonymous:
        raise IdentifierTaken(
            "this identifier is linked to another customer; unlink it there first, or send move: true",
            [{"field": "value", "reason": "linked to another customer"}],
        )
    by_type, by_id = _who(body)
    prov = Provenance(at=round(time.time(), 3), by_type=by_type, by_id=by_id, channel=body["channel"])
    out = store.link_identifier(customer_id, body["type"], body["value"], prov)
    if out.status == "erased":
        raise _erased(customer_id)
    key = identifier_key(body["type"], body["value"])
    linked = next((x for x in store.identifiers(customer_id) if x.key == key), None)
    if linked is None:  # unlinked again by a concurrent request
        raise IdentifierTaken("the identifier changed hands while being linked; retry",
                              [{"field": "value", "reason": "changed concurrently"}])
    g.log_fields.update(link=out.status)
    audit_note(customer_id, identifier_type=body["type"], link=out.status)
    return json_response(
        {"customer_id": customer_id, "status": out.status, "adopted_events": out.adopted_events,
         "identifier": _identifier_view(linked)},
        status=200 if out.status == "already" else 201,
    )


@bp.delete(f"/v1/customers/<customer_id>/identifiers/<any({', '.join(IDENTIFIER_TYPES)}):identifier_type>"
           "/<path:value>")
@doc(
    "Unlink an identifier from the customer (reversible)",
    tag="customers",
    responses={200: UnlinkAnswerSchema, 404: ErrorBodySchema, 503: ErrorBodySchema},
    description="Undoes a link: the customer's own history stays; history an anonymous profile brought "
    "with this identifier goes back to that profile, which gets the identifier back. Idempotent: "
    "`unlinked` is false when the identifier was not linked to this customer. Audited.",
)
@allow(CLERK)
@audited("identifier.unlink")
def delete_identifier(customer_id: str, identifier_type: str, value: str):
    svc = services()
    customer_id = _customer_id(customer_id)
    if identifier_type in HASHED_TYPES:
        value = value.lower()
    done = svc.store.unlink_identifier(customer_id, identifier_type, value)
    audit_note(customer_id, identifier_type=identifier_type, unlinked=done)
    return json_response({"customer_id": customer_id, "unlinked": done})


@bp.delete("/v1/customers/<customer_id>")
@doc(
    "Erase the customer",
    tag="customers",
    responses={200: ErasureAnswerSchema, 404: ErrorBodySchema, 503: ErrorBodySchema},
    description="Live state, identifiers, recent events, the customer's entries in the event stream or "
    "log (so no future training export holds them) and anonymous profiles the customer adopted. A "
    "tombstone holding a keyed hash of the id (never the id) drops later events. Idempotent. Admin "
    "keys only; audited (the entry names the customer by a keyed hash only).",
)
@allow()
@audited("customer.erase")
def delete_customer(customer_id: str):
    svc = services()
    customer_id = _customer_id(customer_id)
    n = svc.store.erase(customer_id)
    return json_response({"erased": True, "profiles": n})


@bp.post("/v1/customers/lookup")
@doc(
    "Find the customer an identifier belongs to",
    tag="customers",
    body=IdentifierLookupSchema,
    responses={200: LookupAnswerSchema, 422: ErrorBodySchema, 503: ErrorBodySchema},
    description="One round trip. The value goes in the body so that card numbers stay out of URLs and logs. "
    "`customer_id` is null when no customer has the identifier. Audited.",
)
@allow(CLERK)
@audited("customer.lookup")
def lookup():
    svc = services()
    body = _schemas().lookup.load(read_json())
    cid = svc.store.resolve_identifier(body["type"], body["value"])
    g.log_fields = {"customer_id": cid}
    audit_note(cid, identifier_type=body["type"], found=cid is not None)
    return json_response({"customer_id": cid, "anonymous": bool(cid and cid.startswith(ANON_PREFIX))})

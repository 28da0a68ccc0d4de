"""/v1/customers/...: consent, identifiers, the customer view, erasure, identifier lookup.

Identifier values come in (to link, unlink or look up) but never go out: answers show a masked form.
"""

from __future__ import annotations

from marshmallow import Schema, fields, post_load, validate

from recsvc.core.types import CHANNELS, EVENTS
from recsvc.schemas.common import StrictBool
from recsvc.schemas.events import ActorSchema
from recsvc.schemas.recommendations import HASHED_TYPES, IdentifierSchema
from recsvc.state.base import IDENTIFIER_TYPES


class ConsentUpdateSchema(Schema):
    personalisation = StrictBool(required=True, metadata={"description": "false: no personalised offers"})
    source = fields.String(
        required=True,
        validate=validate.Length(1, 64),
        metadata={"description": "where the choice was made: app settings, clerk, call centre script, ..."},
    )
    channel = fields.String(required=True, validate=validate.OneOf(CHANNELS))
    actor = fields.Nested(ActorSchema, load_default=None, allow_none=True)


class IdentifierLinkSchema(IdentifierSchema):
    """An identifier to link, with where and by whom (its provenance)."""

    channel = fields.String(load_default=None, allow_none=True, validate=validate.OneOf(CHANNELS))
    actor = fields.Nested(ActorSchema, load_default=None, allow_none=True)
    move = StrictBool(
        load_default=False,
        metadata={
            "description": "true: take the identifier from the customer it is linked to now (default: "
            "409). An anonymous profile's identifier is always taken, with its history."
        },
    )

    @post_load
    def _normalise(self, data, **kw):
        if data["type"] in HASHED_TYPES:
            data["value"] = data["value"].lower()
        return data


class IdentifierLookupSchema(IdentifierSchema):
    @post_load
    def _normalise(self, data, **kw):
        if data["type"] in HASHED_TYPES:
            data["value"] = data["value"].lower()
        return data


# -- answers
class ActorViewSchema(Schema):
    type = fields.String(required=True, allow_none=True)
    id = fields.String(required=True, allow_none=True)


class ConsentViewSchema(Schema):
    personalisation = fields.Boolean(required=True, metadata={"description": "the choice that applies now"})
    recorded = fields.Boolean(
        required=True, metadata={"description": "false: no choice recorded, RECSVC_CONSENT_DEFAULT applies"}
    )
    source = fields.String(required=True, allow_none=True)
    channel = fields.String(required=True, allow_none=True)
    at = fields.String(required=True, allow_none=True, metadata={"description": "ISO-8601 UTC"})


class LinkedIdentifierSchema(Schema):
    type = fields.String(required=True, validate=validate.OneOf(IDENTIFIER_TYPES))
    masked = fields.String(required=True, metadata={"description": "never the raw value"})
    linked_at = fields.String(required=True, allow_none=True)
    linked_by = fields.Nested(ActorViewSchema, required=True)
    channel = fields.String(required=True, allow_none=True)
    brought_history = fields.Boolean(
        required=True, metadata={"description": "true: an anonymous profile's events came with this link"}
    )


class ActivitySchema(Schema):
    event_id = fields.String(required=True)
    event = fields.String(required=True, validate=validate.OneOf(EVENTS))
    channel = fields.String(required=True, validate=validate.OneOf(CHANNELS))
    item_id = fields.String(required=True)
    title = fields.String(required=True, allow_none=True, metadata={"description": "from the served model"})
    category = fields.String(required=True, allow_none=True)
    store_id = fields.String(required=True, allow_none=True)
    timestamp = fields.String(required=True)
    quantity = fields.Float(required=True)
    recommendation_id = fields.String(required=True, allow_none=True)
    actor = fields.Nested(ActorViewSchema, required=True, allow_none=True)


class CustomerViewSchema(Schema):
    customer_id = fields.String(required=True)
    erased = fields.Boolean(
        required=True, metadata={"description": "true: erased on request; nothing else is kept about them"}
    )
    known_to_model = fields.Boolean(required=True)
    anonymous = fields.Boolean(
        required=True, metadata={"description": "a profile made from an identifier first seen in an event"}
    )
    adopted_by = fields.String(
        required=True, allow_none=True, metadata={"description": "the customer who adopted this profile"}
    )
    personalised = fields.Boolean(
        required=True,
        metadata={"description": "whether recommendations are personalised: consent, and a model row or live events"},
    )
    consent = fields.Nested(ConsentViewSchema, required=True)
    identifiers = fields.List(fields.Nested(LinkedIdentifierSchema), required=True)
    recent_activity = fields.List(
        fields.Nested(ActivitySchema), required=True, metadata={"description": "newest first, every channel"}
    )
    activity_by_channel = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)


class CustomerQuerySchema(Schema):
    limit = fields.Integer(load_default=20, validate=validate.Range(0, 200),
                           metadata={"description": "how many recent events to show"})


class ConsentAnswerSchema(Schema):
    customer_id = fields.String(required=True)
    consent = fields.Nested(ConsentViewSchema, required=True)


class LinkAnswerSchema(Schema):
    customer_id = fields.String(required=True)
    status = fields.String(
        required=True,
        validate=validate.OneOf(("linked", "already", "moved", "adopted")),
        metadata={"description": "adopted: an anonymous profile's history now counts for the customer"},
    )
    adopted_events = fields.Integer(required=True)
    identifier = fields.Nested(LinkedIdentifierSchema, required=True)


class UnlinkAnswerSchema(Schema):
    customer_id = fields.String(required=True)
    unlinked = fields.Boolean(required=True)


class ErasureAnswerSchema(Schema):
    erased = fields.Boolean(required=True)
    profiles = fields.Integer(
        required=True, metadata={"description": "customer ids erased: the customer and profiles it adopted"}
    )


class LookupAnswerSchema(Schema):
    customer_id = fields.String(required=True, allow_none=True, metadata={"description": "null: nobody"})
    anonymous = fields.Boolean(required=True, metadata={"description": "an `anon-…` profile"})

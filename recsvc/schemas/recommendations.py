"""POST /v1/recommendations: the request loads into core types (Context, Filters, RankOptions)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace

from marshmallow import Schema, ValidationError, fields, post_load, validate, validates_schema

from recsvc.core.types import CHANNELS, EXCLUDE_MODES, FULFILMENT, Context, Filters, RankOptions
from recsvc.schemas.common import Id, StrictBool
from recsvc.state.base import IDENTIFIER_TYPES

LOCALE_PATTERN = r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8}){0,3}$"
HASHED_TYPES = ("email_sha256", "phone_sha256")
MAX_PRICE = 1e12


@dataclass(frozen=True, slots=True)
class CustomerRef:
    """Who the request is for: an internal customer id, or an identifier the store resolves."""

    customer_id: str | None = None
    identifier_type: str | None = None
    identifier_value: str | None = None


@dataclass(frozen=True, slots=True)
class RecommendationRequest:
    customer: CustomerRef | None
    context: Context
    options: RankOptions


class IdentifierSchema(Schema):
    type = fields.String(required=True, validate=validate.OneOf(IDENTIFIER_TYPES))
    value = fields.String(
        required=True,
        validate=validate.Length(1, 256),
        metadata={
            "description": "email_sha256 / phone_sha256: 64 hex characters "
            "(hash before sending: raw emails and phones are refused)"
        },
    )

    @validates_schema
    def _hashed(self, data, **kw):
        if data.get("type") in HASHED_TYPES:
            v = data.get("value", "")
            if len(v) != 64 or any(c not in "0123456789abcdefABCDEF" for c in v):
                raise ValidationError("must be the 64 hex characters of a SHA-256", "value")


class CustomerSchema(Schema):
    """Exactly one of customer_id or identifier."""

    customer_id = Id()
    identifier = fields.Nested(IdentifierSchema)

    @validates_schema
    def _one(self, data, **kw):
        if ("customer_id" in data) == ("identifier" in data):
            raise ValidationError("give either customer_id or identifier", "customer_id")

    @post_load
    def _make(self, data, **kw) -> CustomerRef:
        ident = data.get("identifier")
        if ident is not None:
            value = ident["value"].lower() if ident["type"] in HASHED_TYPES else ident["value"]
            return CustomerRef(identifier_type=ident["type"], identifier_value=value)
        return CustomerRef(customer_id=data["customer_id"])


class ContextSchema(Schema):
    channel = fields.String(required=True, validate=validate.OneOf(CHANNELS))
    store_id = Id(load_default=None, allow_none=True)
    locale = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Regexp(LOCALE_PATTERN, error="not a locale like fr-FR or en"),
    )
    page = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Length(1, 64),
        metadata={"description": "page type: home, product, category, cart, search, ..."},
    )
    item_id = Id(load_default=None, allow_none=True, metadata={"description": "the item being viewed"})
    category = fields.String(load_default=None, allow_none=True, validate=validate.Length(1, 128))
    cart = fields.List(Id(), load_default=list, validate=validate.Length(max=200))
    at = fields.AwareDateTime(
        load_default=None,
        allow_none=True,
        default_timezone=dt.UTC,
        metadata={"description": "when the offers are shown (default: now)"},
    )

    @post_load
    def _make(self, data, **kw) -> Context:
        at = data["at"]
        return Context(
            channel=data["channel"],
            store_id=data["store_id"],
            locale=data["locale"],
            page=data["page"],
            item_id=data["item_id"],
            category=data["category"],
            cart=tuple(data["cart"]),
            at=at.timestamp() if at is not None else None,
        )


class FiltersSchema(Schema):
    category = fields.String(load_default=None, allow_none=True, validate=validate.Length(1, 128))
    max_price = fields.Float(
        load_default=None, allow_none=True, allow_nan=False, validate=validate.Range(0, MAX_PRICE)
    )
    min_price = fields.Float(
        load_default=None, allow_none=True, allow_nan=False, validate=validate.Range(0, MAX_PRICE)
    )
    in_stock_only = StrictBool(load_default=False)

    @validates_schema
    def _band(self, data, **kw):
        lo, hi = data.get("min_price"), data.get("max_price")
        if lo is not None and hi is not None and lo > hi:
            raise ValidationError("must not exceed max_price", "min_price")

    @post_load
    def _make(self, data, **kw) -> Filters:
        return Filters(**data)


class RecommendationRequestSchema(Schema):
    customer = fields.Nested(
        CustomerSchema,
        load_default=None,
        allow_none=True,
        metadata={"description": "absent or null: anonymous"},
    )
    context = fields.Nested(ContextSchema, required=True)
    n = fields.Integer(load_default=10, strict=True, validate=validate.Range(1, 100))
    filters = fields.Nested(FiltersSchema, load_default=None, allow_none=True)
    exclude = fields.List(Id(), load_default=list, validate=validate.Length(max=1000))
    exclude_history = fields.String(
        load_default="purchased",
        validate=validate.OneOf(EXCLUDE_MODES),
        metadata={"description": "past items not offered again: purchased (default), seen, or none"},
    )
    explain = StrictBool(load_default=True, metadata={"description": "false: no reasons in the answer"})

    def __init__(self, *args, defaults: RankOptions | None = None, **kw):
        super().__init__(*args, **kw)
        self.defaults = defaults or RankOptions()

    @post_load
    def _make(self, data, **kw) -> RecommendationRequest:
        options = replace(
            self.defaults,
            n=data["n"],
            filters=data["filters"] or Filters(),
            exclude=tuple(data["exclude"]),
            explain=data["explain"],
            exclude_history=data["exclude_history"],
        )
        return RecommendationRequest(customer=data["customer"], context=data["context"], options=options)


# -- the answer (dumped by recsvc.api.render; these document it and the tests validate against them)
class ReasonSchema(Schema):
    code = fields.String(required=True)
    text = fields.String(required=True)


class AvailabilitySchema(Schema):
    store_id = fields.String(required=True, allow_none=True)
    in_stock = fields.Boolean(required=True, allow_none=True)
    quantity = fields.Integer(required=True, allow_none=True)
    fulfilment = fields.String(required=True, validate=validate.OneOf(FULFILMENT))


class OfferSchema(Schema):
    item_id = fields.String(required=True)
    rank = fields.Integer(required=True)
    score = fields.Float(required=True)
    title = fields.String(required=True)
    category = fields.String(required=True)
    price = fields.Float(required=True, allow_none=True)
    reasons = fields.List(fields.Nested(ReasonSchema), required=True)
    availability = fields.Nested(AvailabilitySchema, required=True, allow_none=True)


class RecommendationResponseSchema(Schema):
    recommendation_id = fields.String(required=True, metadata={"description": "r-<32 hex>"})
    model_id = fields.String(required=True)
    customer_id = fields.String(required=True, allow_none=True)
    personalised = fields.Boolean(required=True)
    strategy = fields.String(
        required=True,
        metadata={
            "description": "personalised | context | store_popular | locale_popular | segment_popular | popular"
        },
    )
    variant = fields.String(required=True, allow_none=True)
    items = fields.List(fields.Nested(OfferSchema), required=True)
    fallback_reason = fields.String(
        required=True,
        allow_none=True,
        metadata={
            "description": "why the list is not personalised: anonymous, unknown_customer, unknown_identifier, "
            "no_consent, erased, no_history, state_unavailable, ..."
        },
    )

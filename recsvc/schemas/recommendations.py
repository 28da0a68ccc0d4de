"""POST /v1/recommendations: the request loads into core types (Context, Filters, RankOptions)."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, replace

from marshmallow import Schema, ValidationError, fields, post_load, validate, validates_schema

from recsvc.core.types import CHANNELS, EXCLUDE_MODES, FULFILMENT, Context, Filters, RankOptions
from recsvc.schemas.common import ID_MAX, Id, StrictBool
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
        self._plain_options: dict[tuple, RankOptions] = {}  # at most 100 x 2 x 3 entries

    def load_request(self, body: dict) -> RecommendationRequest:
        """`load(body)`, with the `load_everyday` shortcut first."""
        req = _plain_request(body, self)
        return req if req is not None else self.load(body)

    def load_everyday(self, body) -> RecommendationRequest | None:
        """What `load(body)` returns, for the everyday request (a customer id or none, a context of plain
        values, n, exclude, explain); None for anything else (identifiers, filters, `at`, any doubt),
        which `load` handles and, when invalid, words the error of. It accepts only bodies `load`
        accepts, and saves most of a request's validation time."""
        return _plain_request(body, self)

    def _options(self, n: int, exclude: tuple[str, ...], explain: bool, exclude_history: str) -> RankOptions:
        if exclude:
            return replace(self.defaults, n=n, filters=Filters(), exclude=exclude, explain=explain,
                           exclude_history=exclude_history)
        key = (n, explain, exclude_history)
        o = self._plain_options.get(key)
        if o is None:
            o = self._plain_options[key] = replace(self.defaults, n=n, filters=Filters(), exclude=(),
                                                   explain=explain, exclude_history=exclude_history)
        return o

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
    variant = fields.String(required=True, allow_none=True,
                            metadata={"description": "the experiment variant this list comes from; null: none"})
    experiment_id = fields.String(required=True, allow_none=True,
                                  metadata={"description": "the experiment the customer is in on this request"})
    items = fields.List(fields.Nested(OfferSchema), required=True)
    fallback_reason = fields.String(
        required=True,
        allow_none=True,
        metadata={
            "description": "why the list is not personalised: anonymous, unknown_customer, unknown_identifier, "
            "no_consent, erased, no_history, state_unavailable, ..."
        },
    )


# -- the shortcut for everyday requests (RecommendationRequestSchema.load_request)
_BODY_KEYS = frozenset(("customer", "context", "n", "filters", "exclude", "exclude_history", "explain"))
_CONTEXT_KEYS = frozenset(("channel", "store_id", "locale", "page", "item_id", "category", "cart", "at"))
_NOT_PRINTABLE = re.compile(r"[\x00-\x1f\x7f]")
_LOCALE = re.compile(LOCALE_PATTERN)


def _plain_id(v) -> bool:
    return type(v) is str and 0 < len(v) <= ID_MAX and _NOT_PRINTABLE.search(v) is None


def _plain_ids(v, most: int) -> bool:
    return type(v) is list and len(v) <= most and all(_plain_id(x) for x in v)


def _optional_text(v, most: int) -> bool:
    return v is None or (type(v) is str and 0 < len(v) <= most)


def _plain_context(c) -> Context | None:
    if type(c) is not dict or not c.keys() <= _CONTEXT_KEYS or c.get("at") is not None:
        return None
    channel, store_id, locale = c.get("channel"), c.get("store_id"), c.get("locale")
    item_id, cart = c.get("item_id"), c.get("cart", [])
    page, category = c.get("page"), c.get("category")
    if not (type(channel) is str and channel in CHANNELS
            and (store_id is None or _plain_id(store_id)) and (item_id is None or _plain_id(item_id))
            and (locale is None or (type(locale) is str and _LOCALE.fullmatch(locale) is not None))
            and _optional_text(page, 64) and _optional_text(category, 128) and _plain_ids(cart, 200)):
        return None
    return Context(channel=channel, store_id=store_id, locale=locale, page=page, item_id=item_id,
                   category=category, cart=tuple(cart), at=None)


def _plain_request(body, schema: RecommendationRequestSchema) -> RecommendationRequest | None:
    """What `schema.load(body)` returns when the body is an everyday one; None when unsure."""
    if type(body) is not dict or not body.keys() <= _BODY_KEYS or body.get("filters") is not None:
        return None
    customer = body.get("customer")
    if customer is not None:
        if type(customer) is not dict or customer.keys() != {"customer_id"} or not _plain_id(customer["customer_id"]):
            return None
        customer = CustomerRef(customer_id=customer["customer_id"])
    context = _plain_context(body.get("context"))
    n, exclude = body.get("n", 10), body.get("exclude", [])
    explain, exclude_history = body.get("explain", True), body.get("exclude_history", "purchased")
    if (context is None or type(n) is not int or not 1 <= n <= 100 or not _plain_ids(exclude, 1000)
            or type(explain) is not bool or type(exclude_history) is not str or exclude_history not in EXCLUDE_MODES):
        return None
    options = schema._options(n, tuple(exclude), explain, exclude_history)
    return RecommendationRequest(customer=customer, context=context, options=options)

"""GET /v1/items/{item_id}/similar."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from recsvc.core.types import CHANNELS
from recsvc.schemas.common import Id
from recsvc.schemas.recommendations import LOCALE_PATTERN, OfferSchema


class SimilarQuerySchema(Schema):
    n = fields.Integer(load_default=10, strict=False, validate=validate.Range(1, 100))
    channel = fields.String(
        load_default="web",
        validate=validate.OneOf(CHANNELS),
        metadata={"description": "only filters items sold on that channel"},
    )
    store_id = Id(load_default=None, metadata={"description": "availability in this store"})
    locale = fields.String(
        load_default=None, validate=validate.Regexp(LOCALE_PATTERN, error="not a locale like fr-FR or en")
    )


class SimilarResponseSchema(Schema):
    item_id = fields.String(required=True)
    model_id = fields.String(required=True)
    items = fields.List(fields.Nested(OfferSchema), required=True)

"""PUT/GET /v1/stores/{store_id}/stock."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from recsvc.schemas.common import Id, StrictBool

MAX_LINES = 10000
MAX_QUANTITY = 10**9


class StockLineSchema(Schema):
    item_id = Id(required=True)
    quantity = fields.Integer(required=True, strict=True, validate=validate.Range(0, MAX_QUANTITY))


class StockUpdateSchema(Schema):
    items = fields.List(
        fields.Nested(StockLineSchema), required=True, validate=validate.Length(max=MAX_LINES)
    )
    replace = StrictBool(
        load_default=False,
        metadata={
            "description": "true: items not listed become out of stock; false (default): only the listed "
            "items change"
        },
    )


class StockUpdateResponseSchema(Schema):
    store_id = fields.String(required=True)
    updated = fields.Integer(required=True)
    version = fields.Integer(required=True, metadata={"description": "bumped by every stock write"})


class StockQuerySchema(Schema):
    item_id = fields.List(
        Id(),
        load_default=list,
        validate=validate.Length(max=1000),
        metadata={"description": "repeat to ask for several items; none: every item"},
    )


class StockResponseSchema(Schema):
    store_id = fields.String(required=True)
    source = fields.String(
        required=True,
        validate=validate.OneOf(("live", "model")),
        metadata={
            "description": "live: set through this API; model: the snapshot the model was trained with"
        },
    )
    items = fields.List(fields.Nested(StockLineSchema), required=True)

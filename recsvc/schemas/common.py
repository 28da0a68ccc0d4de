"""Fields and schemas shared by every endpoint: ids, the error body."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

ID_MAX = 128
# printable: no control characters (they have no business in an id and break logs and key names)
ID_PATTERN = r"^[^\x00-\x1f\x7f]+$"


def Id(**kw) -> fields.String:
    """An external id (customer, item, store): a non-empty string of at most 128 printable characters."""
    return fields.String(
        validate=[
            validate.Length(1, ID_MAX),
            validate.Regexp(ID_PATTERN, error="control characters are not allowed"),
        ],
        **kw,
    )


class StrictBool(fields.Boolean):
    """JSON true/false only (marshmallow's Boolean also takes 0, 1, "yes", ...)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if type(value) is not bool:
            raise self.make_error("invalid", input=value)
        return value


class ErrorDetailSchema(Schema):
    field = fields.String(
        required=True, metadata={"description": "path of the offending field, e.g. context.cart[2]"}
    )
    reason = fields.String(required=True)


class ErrorSchema(Schema):
    code = fields.String(required=True, metadata={"description": "stable snake_case code, e.g. unknown_item"})
    message = fields.String(required=True)
    details = fields.List(fields.Nested(ErrorDetailSchema), required=True)


class ErrorBodySchema(Schema):
    """Every 4xx/5xx answer."""

    error = fields.Nested(ErrorSchema, required=True)
    request_id = fields.String(required=True)

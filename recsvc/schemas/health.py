"""/healthz and /readyz."""

from __future__ import annotations

from marshmallow import Schema, fields

from recsvc.schemas.common import ErrorBodySchema


class HealthSchema(Schema):
    status = fields.String(required=True)


class ReadySchema(Schema):
    ready = fields.Boolean(required=True)
    model_id = fields.String(required=True, allow_none=True)
    store = fields.String(required=True, metadata={"description": "ok, or why the store does not answer"})
    last_error = fields.String(
        allow_none=True, metadata={"description": "why the last model change was refused"}
    )


class NotReadySchema(ErrorBodySchema):
    """503: the error body plus the readiness fields."""

    ready = fields.Boolean(required=True)
    model_id = fields.String(required=True, allow_none=True)
    store = fields.String(required=True)
    last_error = fields.String(allow_none=True)

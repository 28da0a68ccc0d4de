"""GET /v1/models, GET /v1/models/current, POST /v1/models/reload."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

MODEL_REF_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"


class ModelEntrySchema(Schema):
    model_id = fields.String(required=True)
    learner = fields.String(allow_none=True)
    created_at = fields.String(allow_none=True)
    aliases = fields.List(fields.String(), required=True)
    serving = fields.Boolean(required=True, metadata={"description": "this worker serves it"})
    metrics = fields.Dict(allow_none=True)
    error = fields.String(metadata={"description": "why the manifest cannot be read"})


class ModelListSchema(Schema):
    models = fields.List(fields.Nested(ModelEntrySchema), required=True)
    aliases = fields.Dict(keys=fields.String(), values=fields.String(), required=True)
    serving = fields.String(required=True, allow_none=True)


class ModelSummarySchema(Schema):
    model_id = fields.String(required=True)
    learner = fields.String(required=True)
    created_at = fields.String(required=True)
    format_version = fields.Integer(required=True)
    scoring = fields.String(required=True)
    params = fields.Dict(required=True)
    seed = fields.Integer(required=True)
    data = fields.Dict(required=True)
    metrics = fields.Dict(required=True)
    libraries = fields.Dict(required=True)
    items = fields.Integer(required=True)
    customers = fields.Integer(required=True)
    ref = fields.String(required=True, metadata={"description": "the id or alias it was loaded from"})
    path = fields.String(required=True)
    loaded_at = fields.String(required=True)


class ReloadRequestSchema(Schema):
    model = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Regexp(MODEL_REF_PATTERN, error="a model id or alias of the registry"),
        metadata={"description": "model id or alias; absent: the configured one (RECSVC_MODEL)"},
    )


class ReloadResponseSchema(Schema):
    model_id = fields.String(required=True)
    previous_model_id = fields.String(required=True, allow_none=True)
    changed = fields.Boolean(required=True)
    ref = fields.String(required=True)

"""/v1/experiments: the shape of a definition (structure here; the rules that span fields, such as
shares summing to 1 and the one control, are in `recsvc.experiments.definition`, which words them)."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from recsvc.core.experiment_attribution import METRICS
from recsvc.core.types import CHANNELS, EXCLUDE_MODES

NAMES = fields.List(fields.String(validate=validate.Length(1, 128)), validate=validate.Length(max=1000))


class Timestamp(fields.Field):
    """ISO-8601 string or epoch seconds (passed through; the definition parser reads it)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise self.make_error("invalid")
        return value

    default_error_messages = {  # noqa: RUF012 - marshmallow's own class attribute
        "invalid": "expected an ISO-8601 time like 2026-11-23T00:00:00Z or epoch seconds"}


class VariantOptionsSchema(Schema):
    n = fields.Integer(strict=True, validate=validate.Range(1, 100), metadata={"description": "offers shown"})
    max_per_category = fields.Integer(strict=True, validate=validate.Range(1, 100),
                                      metadata={"description": "diversity: at most this many per category"})
    exclude_history = fields.String(validate=validate.OneOf(EXCLUDE_MODES),
                                    metadata={"description": "repurchase policy: none re-offers past purchases"})
    min_price = fields.Float(allow_nan=False, validate=validate.Range(0, 1e12))
    max_price = fields.Float(allow_nan=False, validate=validate.Range(0, 1e12))


VARIANT_NAME = validate.Regexp(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$", error="1-32 letters, digits, - or _")


class VariantSchema(Schema):
    name = fields.String(required=True, validate=VARIANT_NAME)
    share = fields.Float(required=True, allow_nan=False, validate=validate.Range(0, 1))
    control = fields.Boolean(load_default=False, truthy={True}, falsy={False})
    model = fields.String(allow_none=True, validate=validate.Length(1, 200),
                          metadata={"description": "model id or alias (e.g. challenger); null: the champion"})
    options = fields.Nested(VariantOptionsSchema, allow_none=True)


class EligibilitySchema(Schema):
    channels = fields.List(fields.String(validate=validate.OneOf(CHANNELS)), validate=validate.Length(max=4))
    stores = NAMES
    locales = NAMES
    segments = NAMES


class ExperimentSchema(Schema):
    """A new experiment (POST /v1/experiments)."""

    experiment_id = fields.String(required=True, validate=validate.Regexp(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"),
                                  metadata={"example": "challenger-2026-11"})
    description = fields.String(validate=validate.Length(max=2000),
                                metadata={"example": "the challenger model against the champion"})
    variants = fields.List(fields.Nested(VariantSchema), required=True, validate=validate.Length(2, 8),
                           metadata={"description": "shares sum to 1; exactly one variant is the control",
                                     "example": [{"name": "control", "share": 0.5, "control": True},
                                                 {"name": "B", "share": 0.5, "options": {"max_per_category": 2}}]})
    eligibility = fields.Nested(EligibilitySchema, metadata={"description": "empty or absent lists: everyone",
                                                             "example": {"channels": ["web", "app", "store"]}})
    start = Timestamp(metadata={"description": "default: now", "example": "2026-11-23T00:00:00Z"})
    end = Timestamp(allow_none=True, metadata={"example": "2026-12-07T00:00:00Z"})
    primary_metric = fields.String(validate=validate.OneOf(METRICS), metadata={"example": "conversion"})
    attribution_window_hours = fields.Float(allow_nan=False, validate=validate.Range(0.01, 24 * 90),
                                            metadata={"example": 168})
    alpha = fields.Float(allow_nan=False, validate=validate.Range(1e-6, 0.5), metadata={"example": 0.05})
    salt = fields.String(validate=validate.Length(1, 128),
                         metadata={"description": "default: the experiment id", "example": "challenger-2026-11"})


class VariantShareSchema(Schema):
    name = fields.String(required=True, validate=VARIANT_NAME)
    share = fields.Float(required=True, allow_nan=False, validate=validate.Range(0, 1))


class ExperimentUpdateSchema(Schema):
    """PUT /v1/experiments/{id}: customers already assigned keep their variant."""

    variants = fields.List(fields.Nested(VariantShareSchema), validate=validate.Length(2, 8))
    end = Timestamp(allow_none=True)
    description = fields.String(validate=validate.Length(max=2000))
    eligibility = fields.Nested(EligibilitySchema)
    alpha = fields.Float(allow_nan=False, validate=validate.Range(1e-6, 0.5))
    primary_metric = fields.String(validate=validate.OneOf(METRICS))


class SharePeriodSchema(Schema):
    version = fields.Integer(required=True)
    since = fields.String(required=True)
    shares = fields.Dict(keys=fields.String(), values=fields.Float(), required=True)


class ExperimentOutSchema(ExperimentSchema):
    state = fields.String(required=True, metadata={"description": "scheduled | running | ended | stopped"})
    status = fields.String(required=True)
    created_at = fields.String(required=True)
    stopped_at = fields.String(allow_none=True)
    share_history = fields.List(fields.Nested(SharePeriodSchema), required=True)


class ExperimentListSchema(Schema):
    experiments = fields.List(fields.Nested(ExperimentOutSchema), required=True)


class ReportQuerySchema(Schema):
    format = fields.String(load_default="json", validate=validate.OneOf(("json", "png")))


class ReportSchema(Schema):
    """The report (see the README, "Running an experiment"): per variant and scope (overall, then each
    channel shown) counts and metrics with 95% intervals, lift over control, p-values; srm; flags."""

    experiment_id = fields.String(required=True)
    status = fields.String(required=True)
    primary_metric = fields.String(required=True)
    control = fields.String(required=True)
    tests = fields.Dict(required=True)
    customers = fields.Integer(required=True)
    scopes = fields.List(fields.String(), required=True)
    variants = fields.Dict(required=True)
    srm = fields.Dict(required=True)
    shown_bought = fields.Dict(required=True)
    flags = fields.List(fields.Dict(), required=True)
    verdict = fields.Dict(required=True)

"""/v1/audit, /v1/keys, /v1/auth/me."""

from __future__ import annotations

import datetime as dt

from marshmallow import Schema, ValidationError, fields, validate

from recsvc.schemas.common import Id
from recsvc.security.audit import ACTIONS
from recsvc.security.keys import CHANNELS, ROLES


class Since(fields.Field):
    """ISO-8601 (a date alone is 00:00 UTC) or epoch seconds -> epoch seconds."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str) or not value.strip() or len(value) > 40:
            raise ValidationError("expected an ISO-8601 time or epoch seconds")
        v = value.strip()
        try:
            t = float(v)
        except ValueError:
            try:
                d = dt.datetime.fromisoformat(v)
            except ValueError:
                raise ValidationError("expected an ISO-8601 time or epoch seconds") from None
            if d.tzinfo is None:
                d = d.replace(tzinfo=dt.UTC)
            return d.timestamp()
        if not 0 <= t < 1e11:
            raise ValidationError("expected epoch seconds from 0 to 1e11")
        return t


class AuditQuerySchema(Schema):
    customer_id = Id(load_default=None, metadata={"description": "entries about this customer"})
    key_id = fields.String(load_default=None, validate=validate.Regexp(r"^[0-9a-f]{12}$"),
                           metadata={"description": "entries made with this key"})
    store_id = Id(load_default=None, metadata={"description": "entries made with keys of this store"})
    action = fields.String(load_default=None, validate=validate.OneOf(sorted(ACTIONS)))
    since = Since(load_default=None, metadata={"description": "ISO-8601 time or epoch seconds"})
    limit = fields.Integer(load_default=100, validate=validate.Range(1, 1000))


class AuditEntrySchema(Schema):
    at = fields.String(required=True, metadata={"description": "ISO-8601 UTC"})
    ts = fields.Float(required=True)
    action = fields.String(required=True, validate=validate.OneOf(sorted(ACTIONS)))
    endpoint = fields.String(required=True)
    why = fields.String(required=True, metadata={"description": "the action's purpose, plus X-Audit-Reason"})
    key_id = fields.String(required=True, allow_none=True)
    key_name = fields.String(required=True, allow_none=True)
    role = fields.String(required=True)
    key_store_id = fields.String(required=True, allow_none=True, metadata={"description": "the key's store"})
    request_id = fields.String(required=True, allow_none=True)
    customer_id = fields.String(required=True, allow_none=True,
                                metadata={"description": "null: none found, or erased since"})
    customer_erased = fields.Boolean(required=True)
    identifier_type = fields.String(metadata={"description": "the type only; values are never recorded"})
    found = fields.Boolean()
    store_id = fields.String(allow_none=True)
    personalisation = fields.Boolean()
    source = fields.String(allow_none=True)
    channel = fields.String(allow_none=True)
    link = fields.String()
    unlinked = fields.Boolean()


class AuditListSchema(Schema):
    entries = fields.List(fields.Nested(AuditEntrySchema), required=True,
                          metadata={"description": "newest first"})


class KeySchema(Schema):
    id = fields.String(required=True)
    name = fields.String(required=True, allow_none=True)
    role = fields.String(required=True, validate=validate.OneOf(ROLES))
    store_id = fields.String(required=True, allow_none=True)
    channels = fields.List(fields.String(validate=validate.OneOf(CHANNELS)), required=True)
    rate_limit = fields.Integer(required=True, allow_none=True)
    created_at = fields.String(required=True, allow_none=True)
    revoked_at = fields.String(required=True, allow_none=True)


class KeyListSchema(Schema):
    keys = fields.List(fields.Nested(KeySchema), required=True, metadata={"description": "never secrets"})


class RateSchema(Schema):
    requests = fields.Integer(required=True, metadata={"description": "0: no limit"})
    window_s = fields.Integer(required=True)


class WhoAmISchema(Schema):
    auth = fields.Boolean(required=True, metadata={"description": "false: RECSVC_AUTH=off"})
    key_id = fields.String(required=True, allow_none=True)
    name = fields.String(required=True, allow_none=True)
    role = fields.String(required=True)
    store_id = fields.String(required=True, allow_none=True)
    channels = fields.List(fields.String(), required=True)
    rate_limit = fields.Nested(RateSchema, required=True)

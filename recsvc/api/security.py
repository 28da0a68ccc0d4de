"""GET /v1/audit (admins: the audit trail), GET /v1/keys (admins: keys without secrets), GET /v1/auth/me
(any key: what this key is, so a front end can check a key at sign-in). Keys are created and revoked
with `recsvc keys`, on a machine holding the keys file, never over HTTP."""

from __future__ import annotations

from flask import Blueprint, current_app, request

from recsvc.api import doc, json_response, services
from recsvc.schemas.common import ErrorBodySchema
from recsvc.schemas.security import AuditListSchema, AuditQuerySchema, KeyListSchema, WhoAmISchema
from recsvc.security import ANALYST, CLERK, STOREFRONT, allow, principal
from recsvc.security.keys import list_keys

bp = Blueprint("security", __name__)
EXTENSION = "recsvc.security.schemas"


@bp.record_once
def _setup(state) -> None:
    state.app.extensions[EXTENSION] = AuditQuerySchema()


@bp.get("/v1/audit")
@doc(
    "The audit trail of access to customer data",
    tag="security",
    query=AuditQuerySchema,
    responses={200: AuditListSchema, 422: ErrorBodySchema, 503: ErrorBodySchema},
    description="Customer lookups by identifier (also a clerk's recommendation by identifier), customer views, "
    "consent changes, identifier links and unlinks, erasures: who (key id, name, role, the key's store), "
    "when, which customer, why. Newest first; filters combine. Entries of an erased customer no longer "
    "name them (`customer_erased`). Admin keys only.",
)
@allow()
def audit():
    q = current_app.extensions[EXTENSION].load(request.args.to_dict(flat=True))
    where = {k: v for k, v in (("key_id", q["key_id"]), ("key_store_id", q["store_id"]),
                               ("action", q["action"])) if v is not None}
    entries = services().store.audit_read(q["limit"], customer_id=q["customer_id"], where=where, since=q["since"])
    return json_response({"entries": entries})


@bp.get("/v1/keys")
@doc("API keys (never their secrets)", tag="security", responses={200: KeyListSchema},
     description="Every key of the keys file with its role, bindings, creation and revocation time. "
     "Create and revoke keys with `recsvc keys create|revoke`. Admin keys only.")
@allow()
def keys():
    return json_response({"keys": list_keys(services().config.keys_file)})


@bp.get("/v1/auth/me")
@doc("What the calling key is", tag="security", responses={200: WhoAmISchema},
     description="Role, bindings and rate limit of the key sent (any role): front ends check a key with it at "
     "sign-in. With RECSVC_AUTH=off: `auth` false.")
@allow(STOREFRONT, CLERK, ANALYST)
def whoami():
    svc = services()
    p = principal()
    limiter = svc.gate.limiter
    return json_response({
        "auth": svc.gate.enabled, "key_id": p.key_id, "name": p.name, "role": p.role, "store_id": p.store_id,
        "channels": list(p.channels),
        "rate_limit": {"requests": limiter.limit_of(p) if p.key_id else 0, "window_s": limiter.window_s},
    })

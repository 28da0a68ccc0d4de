"""Who may ask what: API keys with roles (keys), the per-endpoint role declarations and key bindings
(policy), the check every /v1/ request passes (gate), per-key rate limits (ratelimit), CORS (cors) and
the audit trail of access to customer data (audit). `recsvc keys ...` is in recsvc.security.cli."""

from recsvc.security.audit import audited
from recsvc.security.audit import note as audit_note
from recsvc.security.gate import Gate, principal, require_events_scope, require_scope
from recsvc.security.keys import AUTH_OFF, Principal
from recsvc.security.policy import ADMIN, ANALYST, CLERK, STOREFRONT, allow

__all__ = ["ADMIN", "ANALYST", "AUTH_OFF", "CLERK", "STOREFRONT", "Gate", "Principal", "allow", "audit_note",
           "audited", "principal", "require_events_scope", "require_scope"]

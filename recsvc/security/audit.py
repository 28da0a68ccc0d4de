"""The audit trail of access to customer data: who (key id, name, role, the key's store), what (action
and endpoint), which customer (internal id; identifier *types* only, never values), when, and why (the
endpoint's purpose, plus the caller's `X-Audit-Reason` header when sent).

Recorded: every customer lookup by identifier (POST /v1/customers/lookup, and a clerk's
recommendation asked by identifier, which is how the clerk page finds a customer), every customer
view (GET /v1/customers/{id}), every consent change, identifier link and unlink, and erasure, whichever
key made them. Kept in live state: a capped Redis stream `<prefix>:audit` (AUDIT_CAP newest entries)
or a capped in-process list; read by admins through GET /v1/audit.

Erasure and the audit: an entry names its customer by a keyed hash (the erasure key) and live state
maps hash -> id in `<prefix>:audit:subjects`; erasing the customer drops that mapping, so the entries
stay (who looked at whom, when) but no longer say who the customer was (`customer_erased: true`).

A view declares it is audited with `@audited("action")`; the entry is written after the view answered
2xx, before the answer leaves; a failure to write it fails the request (503): no unrecorded access.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import time

from flask import current_app, g, request

from recsvc.security.keys import Principal

AUDIT_CAP = 100_000  # entries kept (newest)
AUDIT_SCAN = 20_000  # entries a read looks through at most to fill its page
REASON = re.compile(r"[^\x20-\x7e]")

ACTIONS = {
    "customer.lookup": "look up a customer by identifier",
    "customer.view": "view a customer's identifiers, consent and activity",
    "recommendations.by_identifier": "find a customer by identifier for offers",
    "consent.change": "record the customer's consent choice",
    "identifier.link": "link an identifier to the customer",
    "identifier.unlink": "unlink an identifier from the customer",
    "customer.erase": "erase the customer",
}


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def entry(action: str, who: Principal, request_id: str | None, endpoint: str, reason: str | None = None,
          ts: float | None = None, **facts) -> dict:
    """One audit record (without the customer: the store adds its keyed reference)."""
    ts = time.time() if ts is None else ts
    why = ACTIONS.get(action, action)
    if reason:
        why += ": " + REASON.sub("", reason)[:200]
    return {"ts": round(ts, 3), "at": _iso(ts), "action": action, "endpoint": endpoint, "why": why,
            "key_id": who.key_id, "key_name": who.name, "role": who.role, "key_store_id": who.store_id,
            "request_id": request_id, **{k: v for k, v in facts.items() if v is not None}}


def record(store, action: str, who: Principal, customer_id: str | None, request_id: str | None,
           endpoint: str, reason: str | None = None, **facts) -> None:
    store.audit_append(entry(action, who, request_id, endpoint, reason, **facts), customer_id)


def note(customer_id: str | None = None, **facts) -> None:
    """What the audited view found out (the customer an identifier resolved to, the choice recorded)."""
    g.audit_customer = customer_id
    g.audit_facts = {**getattr(g, "audit_facts", {}), **facts}


def audited(action: str):
    """Record `action` for the customer of the request (the view's `customer_id` argument, or what it
    passed to `note`) once the view answered 2xx."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")

    def wrap(view):
        @functools.wraps(view)
        def inner(*args, **kw):
            resp = view(*args, **kw)
            status = resp.status_code if hasattr(resp, "status_code") else 200
            if 200 <= status < 300:
                customer = g.get("audit_customer", kw.get("customer_id"))
                rule = request.url_rule
                record(current_app.extensions["recsvc"].store, action, g.get("principal") or _unknown(),
                       customer, g.get("request_id"), f"{request.method} {rule.rule if rule else request.path}",
                       request.headers.get("X-Audit-Reason"), **g.get("audit_facts", {}))
            return resp

        inner._audited = action
        return inner

    return wrap


def _unknown() -> Principal:
    return Principal(key_id=None, name=None, role="unknown")

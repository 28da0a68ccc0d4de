"""Who may ask what: roles declared on each /v1/ view, and what a key's bindings allow.

    @bp.get("/v1/customers/<customer_id>")
    @doc(...)
    @allow(CLERK)            # admin is always allowed
    def get_customer(...)

The gate (recsvc.security.gate) reads these declarations once at start and checks every request
before its view runs; a /v1/ view that declares nothing is admin-only. Bindings (a clerk key's store,
a storefront key's channels) depend on the request body, so the views that take a store or a channel
call `require_scope(...)` / `require_events_scope(...)` once the body is parsed; the rules themselves
live here, in `scope_problems`.

| role        | may call |
|-------------|----------|
| storefront  | recommendations, similar items, events (its channels / store when bound; never as a clerk) |
| clerk       | recommendations, similar items and stock of its store; customer view, lookup by identifier, consent, identifier link/unlink; events as a clerk in its store |
| analyst     | models (list, current, reload), experiments and their reports; no customer data |
| admin       | everything: stock writes, erasure, audit, keys |
"""

from __future__ import annotations

from recsvc.security.keys import Principal

STOREFRONT, CLERK, ANALYST, ADMIN = "storefront", "clerk", "analyst", "admin"
ADMIN_ONLY = frozenset({ADMIN})
ANY_ROLE = frozenset({STOREFRONT, CLERK, ANALYST, ADMIN})


def allow(*roles: str):
    """Declare the roles that may call a view (admin always may)."""
    unknown = set(roles) - ANY_ROLE
    if unknown:
        raise ValueError(f"unknown roles {sorted(unknown)}")

    def wrap(view):
        view._roles = frozenset(roles) | ADMIN_ONLY
        return view

    return wrap


def roles_of(view) -> frozenset[str]:
    return getattr(view, "_roles", ADMIN_ONLY)


def scope_problems(p: Principal, store_id: str | None, channel: str | None, prefix: str = "",
                   store_field: str = "store_id", channel_field: str = "channel") -> list[dict]:
    """Details of what a request's store and channel do not match in the key's bindings ([] = fine)."""
    out = []
    if p.store_id is not None and store_id != p.store_id:
        reason = (f"this {p.role} key is bound to store {p.store_id!r}" if store_id is not None
                  else f"this {p.role} key is bound to store {p.store_id!r}: send {store_field}={p.store_id!r}")
        out.append({"field": prefix + store_field, "reason": reason})
    if p.channels and channel is not None and channel not in p.channels:
        out.append({"field": prefix + channel_field,
                    "reason": f"this {p.role} key is bound to channel(s) {', '.join(p.channels)}"})
    return out


def actor_problems(p: Principal, actor_type: str | None, prefix: str = "") -> list[dict]:
    """A clerk key records events as a clerk; no other key (but admin) may claim to be one."""
    if p.role == CLERK and actor_type != "clerk":
        return [{"field": prefix + "actor.type", "reason": "a clerk key records events with actor type clerk"}]
    if p.role not in (CLERK, ADMIN) and actor_type == "clerk":
        return [{"field": prefix + "actor.type", "reason": f"a {p.role} key may not record events as a clerk"}]
    return []

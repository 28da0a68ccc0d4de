"""The one check every /v1/ request passes before its view: key -> principal, role, rate limit.

Called from recsvc's own before-request hook (recsvc.app) and, for the everyday recommendation, from
the express lane (recsvc.api.express), so both answer alike: missing, malformed, unknown or revoked key
-> 401 with `WWW-Authenticate: Bearer`; a role the endpoint does not allow, or a store or channel
outside the key's bindings -> 403; over the key's rate limit -> 429 with `Retry-After`. Outside /v1/
(health, readiness, metrics, OpenAPI, docs, the clerk page) and CORS preflights need no key.

The cost per request is a dict lookup, one HMAC-SHA256 of the token and a constant-time compare
(about 2 microseconds; the keys file is re-read only when it changes), plus, with rate limits, one
live-state round trip per block of requests (recsvc.security.ratelimit).
"""

from __future__ import annotations

import logging

from flask import Flask, g

from recsvc.http_errors import ApiError
from recsvc.security.keys import AUTH_OFF, KeyRing, Principal
from recsvc.security.policy import ADMIN_ONLY, actor_problems, roles_of, scope_problems
from recsvc.security.ratelimit import RateLimiter

log = logging.getLogger("recsvc.security")
V1 = "/v1/"
CHALLENGE = 'Bearer realm="recsvc"'


class Unauthorized(ApiError):
    status = 401
    code = "unauthorized"

    def __init__(self, message: str, reason: str, error: str | None = "invalid_token"):
        super().__init__(message, [{"field": "Authorization", "reason": reason}])
        self.headers = {"WWW-Authenticate": CHALLENGE + (f', error="{error}"' if error else "")}


class Forbidden(ApiError):
    status = 403
    code = "forbidden"


class RateLimited(ApiError):
    status = 429
    code = "rate_limited"

    def __init__(self, message: str, details: list, retry_after: float):
        super().__init__(message, details)
        self.headers = {"Retry-After": str(int(retry_after))}


class Gate:
    def __init__(self, config, store, metrics=None, on_store_error=None):
        self.enabled = bool(config.auth)
        self.metrics = metrics
        self.keys = KeyRing(config.keys_file, config.keys_secret, on_reload=self._reloaded) if self.enabled else None
        self.limiter = RateLimiter(store, dict(config.rate_limits), config.rate_window_s,
                                   on_store_error=on_store_error)
        self.routes: dict[str, frozenset[str]] = {}
        self._last_problem: str | None = None

    def bind(self, app: Flask) -> None:
        """Learn every /v1/ endpoint's roles (a view that declares none is admin-only)."""
        for rule in app.url_map.iter_rules():
            if rule.rule.startswith(V1):
                self.routes[rule.endpoint] = roles_of(app.view_functions[rule.endpoint])

    def _reloaded(self, ring: KeyRing) -> None:
        if ring.problem and ring.problem != getattr(self, "_last_problem", None):
            log.warning("API keys: %s", ring.problem)
        elif not ring.problem and getattr(self, "_last_problem", None):
            log.info("API keys: %d active keys in %s", ring.active, ring.path)
        self._last_problem = ring.problem

    def _denied(self, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.auth_denied.labels(reason).inc()

    # -- the checks
    def authenticate(self, authorization: str | None) -> Principal:
        """The key's principal; Unauthorized when there is no valid key."""
        if not self.enabled:
            return AUTH_OFF
        if not authorization:
            self._denied("missing_key")
            raise Unauthorized("this endpoint needs an API key: send `Authorization: Bearer <key>`",
                               "missing", error=None)
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            self._denied("bad_key")
            raise Unauthorized("send the API key as `Authorization: Bearer <key>`", "not a Bearer key",
                               error="invalid_request")
        p = self.keys.verify(token.strip())
        if p is None:
            self._denied("bad_key")
            raise Unauthorized("the API key is not valid (unknown, revoked or mistyped)",
                               "unknown or revoked key")
        return p

    def authorize(self, p: Principal, endpoint: str | None, method: str, rule: str | None) -> None:
        roles = self.routes.get(endpoint) if endpoint is not None else None
        if roles is None:  # no such route: Flask answers 404/405 (to a valid key only)
            return
        if p.role not in roles:
            self._denied("role")
            allowed = ", ".join(sorted(roles - ADMIN_ONLY)) or "none"
            raise Forbidden(f"a {p.role} key may not call {method} {rule}",
                            [{"field": "Authorization",
                              "reason": f"role {p.role} not allowed here (allowed: admin, {allowed})"
                              if allowed != "none" else f"role {p.role} not allowed here (admin only)"}])

    def admit(self, p: Principal) -> None:
        retry = self.limiter.admit(p)
        if retry is not None:
            self._denied("rate_limited")
            limit = self.limiter.limit_of(p)
            raise RateLimited(
                f"rate limit of this key reached: {limit} requests per {self.limiter.window_s} s; "
                f"retry in {int(retry)} s",
                [{"field": "Authorization", "reason": f"more than {limit} requests in {self.limiter.window_s} s"}],
                retry)

    def check(self, authorization: str | None, path: str, method: str, endpoint: str | None,
              rule: str | None) -> Principal | None:
        """The whole check of one request (None: outside /v1/ or a preflight: no key needed)."""
        if not path.startswith(V1) or method == "OPTIONS":
            return None
        p = self.authenticate(authorization)
        if p.key_id is None:  # auth off
            return p
        self.authorize(p, endpoint, method, rule)
        self.admit(p)
        return p

    def lane_principal(self, authorization: str | None, endpoint: str) -> Principal | None:
        """The express lane's check, with nothing raised or counted: None means "let Flask answer" (it
        runs `check` again and gives the 401/403/429 the lane does not write itself)."""
        if not self.enabled:
            return AUTH_OFF
        if not authorization or authorization[:7].lower() != "bearer ":
            return None
        p = self.keys.verify(authorization[7:].strip())
        if p is None or p.role not in self.routes.get(endpoint, ADMIN_ONLY):
            return None
        return p


def principal() -> Principal:
    """This request's principal (AUTH_OFF outside /v1/ or when auth is off)."""
    return g.get("principal") or AUTH_OFF


def require_scope(store_id: str | None, channel: str | None, prefix: str = "", store_field: str = "store_id",
                  channel_field: str = "channel") -> None:
    """403 when the request's store or channel is outside the key's bindings."""
    p = principal()
    problems = scope_problems(p, store_id, channel, prefix, store_field, channel_field)
    if problems:
        _forbidden_scope(p, problems)


def require_events_scope(batch) -> None:
    """403 naming every event of the batch outside the key's bindings (store, channel, actor)."""
    p = principal()
    if p.key_id is None or p.role == "admin":
        return
    problems = []
    for i, e in enumerate(batch):
        pre = f"events[{i}]."
        problems += scope_problems(p, e.store_id, e.channel, pre)
        problems += actor_problems(p, e.actor_type, pre)
        if len(problems) >= 20:
            break
    if problems:
        _forbidden_scope(p, problems)


def _forbidden_scope(p: Principal, problems: list[dict]) -> None:
    from flask import current_app

    gate = current_app.extensions["recsvc"].gate
    gate._denied("scope")
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    raise Forbidden(f"{problems[0]['field']}: {problems[0]['reason']}{more}", problems[:20])

"""CORS for the front ends' origins (`RECSVC_CORS_ORIGINS`), answered by recsvc's own request hooks.

A library (flask-cors) would install its own `after_request` hook, and the recommendations express
lane (recsvc.api.express) stands aside while the app has hooks other than recsvc's own, which would
cost the everyday request most of its speed. The rules are few, so they are written here once and
used by both the Flask hook and the lane:

- an `Origin` on the allow-list (or any origin with `*`) gets `Access-Control-Allow-Origin: <origin>`,
  `Vary: Origin` and the exposed headers (`X-Request-ID`, `Retry-After`); other origins get nothing, so
  browsers refuse to hand them the answer;
- a preflight (`OPTIONS` with `Access-Control-Request-Method`) from an allowed origin also gets the
  methods of the resource, the allowed request headers (`Authorization`, `Content-Type`,
  `X-Request-ID`) and `Access-Control-Max-Age: 600`. Preflights carry no key (browsers never send one)
  and need none. No cookies are used, so `Access-Control-Allow-Credentials` is never sent.
"""

from __future__ import annotations

ALLOW_HEADERS = "Authorization, Content-Type, X-Request-ID, X-Audit-Reason"
EXPOSE_HEADERS = "X-Request-ID, Retry-After, WWW-Authenticate"
MAX_AGE = "600"


class Cors:
    def __init__(self, origins: tuple[str, ...] | list[str]):
        self.any = "*" in origins
        self.origins = frozenset(o for o in origins if o != "*")
        self.enabled = bool(self.any or self.origins)

    def allowed(self, origin: str | None) -> bool:
        return bool(origin) and (self.any or origin in self.origins)

    def headers(self, origin: str | None) -> list[tuple[str, str]]:
        """Headers of an ordinary answer to `origin` ([] when it is not allowed)."""
        if not self.enabled or not origin:
            return []
        if not self.allowed(origin):
            return [("Vary", "Origin")]
        return [("Access-Control-Allow-Origin", origin), ("Vary", "Origin"),
                ("Access-Control-Expose-Headers", EXPOSE_HEADERS)]

    def apply(self, request, resp) -> None:
        """Add the CORS headers of this request to a Flask response."""
        if not self.enabled:
            return
        origin = request.headers.get("Origin")
        if not self.allowed(origin):
            if origin:
                resp.vary.add("Origin")
            return
        resp.headers["Access-Control-Allow-Origin"] = origin
        resp.vary.add("Origin")
        resp.headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
        if request.method == "OPTIONS" and request.headers.get("Access-Control-Request-Method"):
            resp.headers["Access-Control-Allow-Methods"] = resp.headers.get("Allow") or "GET, POST, PUT, DELETE"
            resp.headers["Access-Control-Allow-Headers"] = ALLOW_HEADERS
            resp.headers["Access-Control-Max-Age"] = MAX_AGE

"""The express lane: POST /v1/recommendations answered straight from WSGI for the everyday request.

Flask's request machinery (context, URL adapter, session, hooks, response object) costs about as much
CPU per request as ranking a 20k-item catalogue. The lane answers the common request without it: a
JSON body of the everyday shape (`RecommendationRequestSchema.load_everyday`) whose items the model
knows. It runs the same code as the Flask view (`recommendations.answer`) and the same request hooks
(`RequestHooks`: request id, model poll, metrics, log line), so its answers, headers, metrics and logs
are the ones the view gives.

The lane runs the same API-key check as recsvc's before-request hook (recsvc.security.gate: the key,
its role, its store and channel bindings, its rate limit) and adds the same CORS headers; a request the
check would refuse goes to Flask, which refuses it (401/403/429) exactly as for any other endpoint.

Everything else goes to Flask untouched: other paths and methods, other content types, no or too long
a Content-Length, invalid JSON, bodies `load_everyday` is unsure of, unknown items, no model yet, a key
the check refuses, and any exception (Flask then answers it, with the contract's error body). The lane
also stands aside while the app has request hooks other than recsvc's own (another extension's hook, a
teardown), so nothing registered on the app is ever skipped.
"""

from __future__ import annotations

import io
import time

import orjson

from recsvc.api.recommendations import answer, check_items
from recsvc.http_errors import UnknownItemInRequest
from recsvc.security.policy import scope_problems

PATH = "/v1/recommendations"
ENDPOINT = "recommendations.recommend"
SCOPES = (None, "recommendations")  # hooks of the app and of the endpoint's blueprint


def _applying(registry: dict) -> dict:
    return {k: v for k, v in registry.items() if v and k in SCOPES}


class ExpressLane:
    """WSGI middleware around Flask's wsgi_app (installed by create_app)."""

    def __init__(self, app, svc, hooks, flask_hooks: tuple, inner):
        self.app, self.svc, self.hooks, self.inner = app, svc, hooks, inner
        begin, end = flask_hooks
        self._own = ({None: [begin]}, {None: [end]})
        self.max_body = app.config.get("MAX_CONTENT_LENGTH")
        self.answered = 0  # requests this lane answered itself (the rest went to Flask)

    def open(self) -> bool:
        """True while recsvc's own before/after hooks are the only request hooks Flask would run for
        this endpoint (the app's, and its blueprint's: another blueprint's hooks do not apply)."""
        app = self.app
        return (_applying(app.before_request_funcs) == self._own[0]
                and _applying(app.after_request_funcs) == self._own[1]
                and not _applying(app.teardown_request_funcs) and not _applying(app.url_value_preprocessors))

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") != PATH or environ.get("REQUEST_METHOD") != "POST" or not self.open():
            return self.inner(environ, start_response)
        t0 = time.perf_counter()
        raw = self._body(environ)
        if raw is None:
            return self.inner(environ, start_response)
        try:
            out = self._answer(environ, raw, t0, start_response)
        except Exception:  # noqa: BLE001 - not hidden: Flask runs the request again and answers the error
            out = None
        if out is None:
            environ["wsgi.input"] = io.BytesIO(raw)
            environ["CONTENT_LENGTH"] = str(len(raw))
            return self.inner(environ, start_response)
        return out

    def _body(self, environ) -> bytes | None:
        """The JSON body (Content-Length within the app's limit), or None, with nothing read."""
        ctype = environ.get("CONTENT_TYPE", "")
        if ctype != "application/json" and ctype.split(";", 1)[0].strip().lower() != "application/json":
            return None
        length = environ.get("CONTENT_LENGTH", "")
        if not length.isdigit():
            return None
        n = int(length)
        if n == 0 or (self.max_body is not None and n > self.max_body):
            return None
        return environ["wsgi.input"].read(n)

    def _answer(self, environ, raw: bytes, t0: float, start_response) -> list[bytes] | None:
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
        svc = self.svc
        req = svc.schemas.recommendation.load_everyday(body)
        if req is None:
            return None
        request_id = self.hooks.begin(environ.get("HTTP_X_REQUEST_ID"))
        gate = svc.gate
        who = gate.lane_principal(environ.get("HTTP_AUTHORIZATION"), ENDPOINT)
        if who is None or ((who.store_id is not None or who.channels)
                           and scope_problems(who, req.context.store_id, req.context.channel)):
            return None
        model = svc.holder.model
        if model is None:
            return None
        try:
            check_items(model, req)
        except UnknownItemInRequest:
            return None
        if who.key_id is not None and gate.limiter.enabled and gate.limiter.admit(who) is not None:
            return None
        payload, fields = answer(svc, model, req, who, request_id)
        out = orjson.dumps(payload)
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(out))),
                   ("X-Request-ID", request_id)]
        if svc.cors.enabled:
            headers += svc.cors.headers(environ.get("HTTP_ORIGIN"))
        start_response("200 OK", headers)
        if who.key_id is not None:
            fields["key_id"] = who.key_id
        self.hooks.end("POST", PATH, 200, time.perf_counter() - t0, request_id, fields)
        self.answered += 1
        return [out]

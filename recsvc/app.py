"""create_app(config): wires config, live state, the served model, metrics, logging and the blueprints.

Nothing happens at import; each call builds an independent app (tests build many). Per-app state
lives in `app.extensions["recsvc"]` (a `Services`). Every response carries `X-Request-ID` (a sane
incoming one is kept) and is logged as one JSON line.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from flask import Flask, g, request

from recsvc import http_errors
from recsvc import logging as jsonlog
from recsvc.config import Config
from recsvc.core.types import RankOptions
from recsvc.metrics import Metrics
from recsvc.model_holder import ModelHolder
from recsvc.state import StateStore, open_store
from recsvc.state.base import StoreUnavailable

log = logging.getLogger("recsvc.app")

REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class Schemas:
    """Schema instances built once per app (building them per request costs more than loading)."""

    def __init__(self, config: Config):
        from recsvc.schemas.items import SimilarQuerySchema
        from recsvc.schemas.models import ReloadRequestSchema
        from recsvc.schemas.recommendations import RecommendationRequestSchema
        from recsvc.schemas.stores import StockQuerySchema, StockUpdateSchema

        defaults = RankOptions(
            max_per_category=config.max_per_category, consent_default=config.consent_default
        )
        self.recommendation = RecommendationRequestSchema(defaults=defaults)
        self.similar_query = SimilarQuerySchema()
        self.stock_update = StockUpdateSchema()
        self.stock_query = StockQuerySchema()
        self.reload = ReloadRequestSchema()


class Services:
    """What the views of one app share: config, store, served model, metrics, schemas, OpenAPI."""

    def __init__(self, config: Config, store: StateStore, holder: ModelHolder, metrics: Metrics):
        self.config = config
        self.store = store
        self.holder = holder
        self.metrics = metrics
        self.schemas = Schemas(config)
        self.openapi: dict = {}
        self.experiments = None  # recsvc.experiments.Experiments, opened once the model is loaded
        self._last_store_log = 0.0
        from recsvc.security import Gate
        from recsvc.security.cors import Cors

        self.gate = Gate(config, store, metrics, on_store_error=self.store_failed)  # keys, roles, limits
        self.cors = Cors(config.cors_origins)

    def store_failed(self, operation: str, error: StoreUnavailable) -> None:
        """Count a failed live-state call; log it at most once a second per worker."""
        self.metrics.store_errors.labels(operation).inc()
        now = time.monotonic()
        if now - self._last_store_log >= 1.0:
            self._last_store_log = now
            log.warning("live state unavailable (%s): %s", operation, error.message)


def create_app(config: Config | None = None, store: StateStore | None = None) -> Flask:
    config = config or Config.from_env()
    jsonlog.configure(config.log_level)
    app = Flask("recsvc")
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    metrics = Metrics()
    store = store or open_store(config.store_url, timeout_ms=config.redis_timeout_ms,
                                erasure_key=config.erasure_key_bytes(), event_log=config.event_log)
    holder = ModelHolder(
        config.models_dir,
        config.model,
        poll_s=config.reload_poll_s,
        runtime_dir=config.runtime_dir,
        on_swap=metrics.model_swapped,
        ann_min_items=config.ann_min_items,
    )
    svc = Services(config, store, holder, metrics)
    app.extensions["recsvc"] = svc
    _warn_auth(svc)

    from recsvc.api import clerk, docs, health, items, models, recommendations, stores

    for bp in (recommendations.bp, items.bp, stores.bp, models.bp, health.bp, docs.bp):
        app.register_blueprint(bp)
    app.register_blueprint(clerk.bp)
    from recsvc.api import customers, events  # real time: events, identity, consent, erasure

    app.register_blueprint(events.bp)
    app.register_blueprint(customers.bp)
    from recsvc.api import experiments  # A/B experiments across channels

    app.register_blueprint(experiments.bp)
    from recsvc.api import security  # audit trail, keys, who am I

    app.register_blueprint(security.bp)
    svc.gate.bind(app)
    http_errors.register(app)
    hooks, flask_hooks = _hooks(app, svc)

    from recsvc.openapi import build_spec

    svc.openapi = build_spec(app)
    holder.start()
    from recsvc.experiments import Experiments

    svc.experiments = Experiments.open(store, holder, file=config.experiments_file,
                                       poll_s=config.experiments_poll_s, on_store_error=svc.store_failed)
    from recsvc.api.express import ExpressLane

    app.wsgi_app = ExpressLane(app, svc, hooks, flask_hooks, app.wsgi_app)  # type: ignore[method-assign]
    log.info(
        "recsvc ready to serve",
        extra={
            "model_id": holder.model.model_id if holder.model else None,
            "store": repr(store),
            "models_dir": config.models_dir,
        },
    )
    return app


def _warn_auth(svc: Services) -> None:
    config = svc.config
    if not config.auth:
        log.warning(
            "!!! RECSVC_AUTH=off: API KEYS ARE NOT CHECKED. Every /v1/ request is accepted from anyone who "
            "can reach this port, customer data and erasure included. Use this only on a trusted test "
            "machine; unset RECSVC_AUTH (default on) anywhere else. !!!"
        )
        return
    ring = svc.gate.keys
    if ring.problem is None:
        log.info("API keys required on /v1/: %d active keys in %s", ring.active, ring.path)


class RequestHooks:
    """What happens around every request: an id (a sane incoming X-Request-ID is kept), the served
    model's poll, then metrics and one JSON log line. Flask's before/after hooks call it, and so does
    the recommendations express lane (recsvc.api.express), which answers without Flask."""

    def __init__(self, svc: Services):
        self.holder, self.metrics = svc.holder, svc.metrics
        self.access = jsonlog.AccessLog(enabled=svc.config.log_level in ("DEBUG", "INFO"))

    def begin(self, incoming_id: str | None) -> str:
        self.holder.poll(time.monotonic())
        return incoming_id if incoming_id and REQUEST_ID.match(incoming_id) else uuid.uuid4().hex

    def end(self, method: str, endpoint: str, status: int, seconds: float, request_id: str, fields: dict) -> None:
        self.metrics.observe_request(endpoint, fields.get("channel") or "-", status, seconds)
        self.access.write(
            f"{method} {endpoint} {status}",
            {
                "request_id": request_id,
                "method": method,
                "endpoint": endpoint,
                "status": status,
                "latency_ms": round(seconds * 1000, 2),
                **fields,
            },
        )


def _hooks(app: Flask, svc: Services) -> tuple[RequestHooks, tuple]:
    """Install the request hooks; returns them and the two Flask functions (the express lane runs
    only while these are the app's only request hooks)."""
    hooks = RequestHooks(svc)
    perf = time.perf_counter

    gate, cors = svc.gate, svc.cors

    @app.before_request
    def _begin():
        g.t0 = perf()
        g.request_id = hooks.begin(request.headers.get("X-Request-ID"))
        rule = request.url_rule  # the API key, its role and rate limit (recsvc.security.gate)
        g.principal = gate.check(request.headers.get("Authorization"), request.path, request.method,
                                 request.endpoint, rule.rule if rule is not None else None)

    @app.after_request
    def _end(resp):
        rid = getattr(g, "request_id", None) or uuid.uuid4().hex
        resp.headers["X-Request-ID"] = rid
        seconds = perf() - g.get("t0", perf())
        rule = request.url_rule
        endpoint = rule.rule if rule is not None else "unmatched"
        fields = g.get("log_fields") or {}
        who = g.get("principal")
        if who is not None and who.key_id is not None:
            fields = {**fields, "key_id": who.key_id}
        if cors.enabled:
            cors.apply(request, resp)
        hooks.end(request.method, endpoint, resp.status_code, seconds, rid, fields)
        return resp

    return hooks, (_begin, _end)

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
        self._last_store_log = 0.0

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
    store = store or open_store(config.store_url, timeout_ms=config.redis_timeout_ms)
    holder = ModelHolder(
        config.models_dir,
        config.model,
        poll_s=config.reload_poll_s,
        runtime_dir=config.runtime_dir,
        on_swap=metrics.model_swapped,
    )
    svc = Services(config, store, holder, metrics)
    app.extensions["recsvc"] = svc
    _warn_auth(config)

    from recsvc.api import docs, health, items, models, recommendations, stores

    for bp in (recommendations.bp, items.bp, stores.bp, models.bp, health.bp, docs.bp):
        app.register_blueprint(bp)
    http_errors.register(app)
    _hooks(app, svc)

    from recsvc.openapi import build_spec

    svc.openapi = build_spec(app)
    holder.start()
    log.info(
        "recsvc ready to serve",
        extra={
            "model_id": holder.model.model_id if holder.model else None,
            "store": repr(store),
            "models_dir": config.models_dir,
        },
    )
    return app


def _warn_auth(config: Config) -> None:
    if config.auth:
        log.warning(
            "RECSVC_AUTH=on but API keys are not implemented in this version: requests are not "
            "authenticated; keep the service behind a trusted proxy"
        )
    else:
        log.warning("RECSVC_AUTH=off: every /v1 request is accepted without an API key")


def _hooks(app: Flask, svc: Services) -> None:
    holder, metrics = svc.holder, svc.metrics
    perf = time.perf_counter
    access = jsonlog.AccessLog(enabled=svc.config.log_level in ("DEBUG", "INFO"))

    @app.before_request
    def _begin():
        g.t0 = perf()
        rid = request.headers.get("X-Request-ID")
        g.request_id = rid if rid and REQUEST_ID.match(rid) else uuid.uuid4().hex
        holder.poll(time.monotonic())

    @app.after_request
    def _end(resp):
        rid = getattr(g, "request_id", None) or uuid.uuid4().hex
        resp.headers["X-Request-ID"] = rid
        seconds = perf() - g.get("t0", perf())
        rule = request.url_rule
        endpoint = rule.rule if rule is not None else "unmatched"
        fields = g.get("log_fields") or {}
        channel = fields.get("channel") or "-"
        metrics.observe_request(endpoint, channel, resp.status_code, seconds)
        access.write(
            f"{request.method} {endpoint} {resp.status_code}",
            {
                "request_id": rid,
                "method": request.method,
                "endpoint": endpoint,
                "status": resp.status_code,
                "latency_ms": round(seconds * 1000, 2),
                **fields,
            },
        )
        return resp

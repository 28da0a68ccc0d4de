"""Prometheus metrics of one app. Under gunicorn, `PROMETHEUS_MULTIPROC_DIR` (set up by gunicorn.conf.py
before any worker imports prometheus_client) makes every worker write its values to shared files,
and /metrics aggregates them, whichever worker answers.

    recsvc_requests_total{endpoint,channel,status}        requests answered
    recsvc_request_duration_seconds{endpoint,channel}     latency histogram
    recsvc_recommendations_total{strategy}                lists served, by the strategy that filled them
    recsvc_fallbacks_total{reason}                        non-personalised lists, by fallback_reason
    recsvc_store_errors_total{operation}                  live-state calls that failed (Redis down/slow)
    recsvc_model_info{model_id}                           workers serving each model (1 per worker)
    recsvc_model_reloads_total{result}                    reloads: ok | refused | unchanged
    recsvc_auth_denied_total{reason}                      refused by the key check: missing_key | bad_key |
                                                          role | scope | rate_limited
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    def __init__(self):
        self.multiprocess_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "recsvc_requests", "Requests answered", ["endpoint", "channel", "status"], registry=r
        )
        self.latency = Histogram(
            "recsvc_request_duration_seconds",
            "Request latency",
            ["endpoint", "channel"],
            buckets=BUCKETS,
            registry=r,
        )
        self.recommendations = Counter(
            "recsvc_recommendations", "Lists served by strategy", ["strategy"], registry=r
        )
        self.fallbacks = Counter(
            "recsvc_fallbacks", "Non-personalised lists by fallback_reason", ["reason"], registry=r
        )
        self.store_errors = Counter(
            "recsvc_store_errors", "Live-state calls that failed", ["operation"], registry=r
        )
        self.model = Gauge(
            "recsvc_model_info",
            "Workers serving each model id",
            ["model_id"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.reloads = Counter("recsvc_model_reloads", "Model reloads by result", ["result"], registry=r)
        self.auth_denied = Counter(
            "recsvc_auth_denied", "Requests refused by the API-key check, by reason", ["reason"], registry=r
        )
        self._children: dict[tuple, tuple] = {}  # label children of observe_request, by labels
        self._served: dict[tuple, tuple] = {}  # label children of served, by (strategy, reason)

    def observe_request(self, endpoint: str, channel: str, status: int, seconds: float) -> None:
        key = (endpoint, channel, status)
        c = self._children.get(key)
        if c is None:
            c = (self.requests.labels(endpoint, channel, str(status)), self.latency.labels(endpoint, channel))
            if len(self._children) < 10000:
                self._children[key] = c
        c[0].inc()
        c[1].observe(seconds)

    def served(self, strategy: str, fallback_reason: str | None) -> None:
        key = (strategy, fallback_reason)
        c = self._served.get(key)
        if c is None:  # strategies and reasons are a handful of fixed names: the cache stays small
            c = (self.recommendations.labels(strategy), self.fallbacks.labels(fallback_reason) if fallback_reason else None)
            if len(self._served) < 1000:
                self._served[key] = c
        c[0].inc()
        if c[1] is not None:
            c[1].inc()

    def model_swapped(self, old: str | None, new: str) -> None:
        if old:
            self.model.labels(old).set(0)
        self.model.labels(new).set(1)

    def exposition(self) -> tuple[bytes, str]:
        if self.multiprocess_dir:
            from prometheus_client import multiprocess

            reg = CollectorRegistry()
            multiprocess.MultiProcessCollector(reg, path=self.multiprocess_dir)
            return generate_latest(reg), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

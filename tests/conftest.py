"""Shared fixtures: a small complete test model on disk, and a real-Redis key prefix per test."""

from __future__ import annotations

import os
import uuid

import pytest

from tests.modelkit import make_model

REDIS_URL = os.environ.get("RECSVC_TEST_REDIS", "redis://127.0.0.1:6379/0")


@pytest.fixture
def models_dir(tmp_path):
    """A registry folder holding one test model, with `champion` pointing at it."""
    d = tmp_path / "models"
    d.mkdir()
    make_model(str(d))
    return str(d)


@pytest.fixture
def redis_prefix():
    """A unique key prefix on the real Redis; every key under it is deleted after the test."""
    import redis

    prefix = f"t-{uuid.uuid4().hex[:12]}"
    yield prefix
    r = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(r.scan_iter(match=f"{prefix}:*", count=1000))
        for k in range(0, len(keys), 500):
            r.delete(*keys[k : k + 500])
    finally:
        r.close()


@pytest.fixture
def redis_url(redis_prefix):
    return f"{REDIS_URL}?prefix={redis_prefix}"


@pytest.fixture
def make_app(models_dir):
    """factory(**config fields) -> a fresh app on the test model (memory store unless store_url given)."""
    from recsvc.app import create_app
    from recsvc.config import Config

    made = []

    def factory(store=None, **kw):
        kw.setdefault("models_dir", models_dir)
        kw.setdefault("log_level", "WARNING")
        kw.setdefault("auth", False)  # tests of API keys turn it on (tests/security)
        app = create_app(Config(**kw), store=store)
        made.append(app)
        return app

    yield factory
    for app in made:
        app.extensions["recsvc"].store.close()


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()

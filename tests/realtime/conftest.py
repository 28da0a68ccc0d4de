"""Fixtures of the real-time tests."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def store_kind(request) -> str:
    return request.param


@pytest.fixture
def rt_app(store_kind, make_app, request):
    """factory(**config) -> an app on the test model, on the parametrised store (Redis: a key prefix of
    the test's own on the real server, the generated erasure key kept there too)."""

    def factory(**kw):
        if store_kind == "redis":
            kw.setdefault("store_url", request.getfixturevalue("redis_url"))
            kw.setdefault("redis_timeout_ms", 2000)
        return make_app(**kw)

    return factory

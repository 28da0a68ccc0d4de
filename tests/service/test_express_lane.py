"""The express lane answers the everyday POST /v1/recommendations without Flask: exactly what the Flask
view answers (body, headers, metrics, log line), and it hands everything else to Flask."""

from __future__ import annotations

import json

import pytest

from recsvc.state import open_store
from recsvc.state.base import Consent

URL = "/v1/recommendations"


def lane(app):
    return app.wsgi_app


@pytest.fixture
def pair(make_app):
    """Two apps on the same model: one with the lane, one where an extra hook makes it stand aside."""
    fast, slow = make_app(), make_app()
    slow.before_request(lambda: None)  # as an API-key check would be
    return fast, slow


def post(app, body, **kw):
    return app.test_client().post(URL, data=json.dumps(body) if not isinstance(body, (bytes, str)) else body,
                                  content_type=kw.pop("content_type", "application/json"), **kw)


def same_answer(a, b):
    ja, jb = a.get_json(), b.get_json()
    assert ja["recommendation_id"] != jb["recommendation_id"]
    ja.pop("recommendation_id"), jb.pop("recommendation_id")
    assert ja == jb
    assert a.status_code == b.status_code
    keep = ("Content-Type", "Content-Length", "X-Request-ID")
    assert {k: a.headers.get(k) for k in keep} == {k: b.headers.get(k) for k in keep}


BODIES = [
    {"customer": {"customer_id": "c00003"}, "context": {"channel": "store", "store_id": "s1"}, "n": 5},
    {"customer": {"customer_id": "c00007"}, "context": {"channel": "web", "locale": "fr-FR", "item_id": "i00004",
                                                        "cart": ["i00009"], "page": "product"}, "explain": False},
    {"context": {"channel": "app", "category": "cat2"}, "n": 12, "exclude": ["i00001"], "exclude_history": "seen"},
    {"customer": {"customer_id": "stranger"}, "context": {"channel": "call_center", "store_id": "nowhere"}},
    {"customer": None, "context": {"channel": "web", "store_id": None}, "n": 100},
]


@pytest.mark.parametrize("body", BODIES)
def test_the_lane_answers_what_the_flask_view_answers(pair, body):
    fast, slow = pair
    a = post(fast, body, headers={"X-Request-ID": "abc-123"})
    b = post(slow, body, headers={"X-Request-ID": "abc-123"})
    assert lane(fast).answered == 1 and lane(slow).answered == 0
    same_answer(a, b)
    assert a.headers["X-Request-ID"] == "abc-123" and a.status_code == 200


def test_the_lane_counts_and_logs_like_flask(make_app, capfd):
    app = make_app(log_level="INFO")
    capfd.readouterr()
    post(app, BODIES[0], headers={"X-Request-ID": "req-1"})
    assert lane(app).answered == 1
    lines = [json.loads(x) for x in capfd.readouterr().err.splitlines() if '"recsvc.access"' in x]
    assert len(lines) == 1
    line = lines[0]
    assert {k: line[k] for k in ("msg", "request_id", "method", "endpoint", "status", "channel", "strategy",
                                 "customer_id", "fallback_reason")} == {
        "msg": "POST /v1/recommendations 200", "request_id": "req-1", "method": "POST",
        "endpoint": "/v1/recommendations", "status": 200, "channel": "store", "strategy": "personalised",
        "customer_id": "c00003", "fallback_reason": None}
    metrics = app.test_client().get("/metrics").get_data(as_text=True)
    assert 'recsvc_requests_total{channel="store",endpoint="/v1/recommendations",status="200"} 1.0' in metrics
    assert 'recsvc_recommendations_total{strategy="personalised"} 1.0' in metrics


@pytest.mark.parametrize("body,content_type,status", [
    (b"{not json", "application/json", 400),
    (b"", "application/json", 400),
    (b"[1, 2]", "application/json", 422),
    (json.dumps(BODIES[0]), "text/plain", 415),
    ({"context": {"channel": "web"}, "n": 0}, "application/json", 422),
    ({"context": {"channel": "web"}, "n": True}, "application/json", 422),
    ({"context": {"channel": "tv"}}, "application/json", 422),
    ({"context": {"channel": "web", "item_id": "no-such-item"}}, "application/json", 422),
    ({"context": {"channel": "web"}, "exclude": ["i00001", "nope"]}, "application/json", 422),
    ({"context": {"channel": "web"}, "surprise": 1}, "application/json", 422),
    ({"customer": {"identifier": {"type": "loyalty_card", "value": "0000"}}, "context": {"channel": "web"}},
     "application/json", 200),
    ({"context": {"channel": "web"}, "filters": {"max_price": 30}}, "application/json", 200),
    ({"context": {"channel": "web", "at": "2026-11-23T10:00:00Z"}}, "application/json", 200),
])
def test_everything_else_goes_to_flask(pair, body, content_type, status):
    fast, slow = pair
    a = post(fast, body, content_type=content_type, headers={"X-Request-ID": "r1"})
    b = post(slow, body, content_type=content_type, headers={"X-Request-ID": "r1"})
    assert lane(fast).answered == 0
    assert a.status_code == b.status_code == status
    if status == 200:
        same_answer(a, b)
    else:
        ja, jb = a.get_json(), b.get_json()
        ja.pop("request_id"), jb.pop("request_id")
        assert ja == jb and set(ja["error"]) == {"code", "message", "details"}


def test_an_error_inside_the_lane_is_answered_by_flask(make_app, monkeypatch):
    app = make_app()
    svc = app.extensions["recsvc"]

    def broken(*a, **kw):
        raise KeyError("a bug")

    monkeypatch.setattr(svc.store, "begin_state", broken)
    r = post(app, BODIES[0])
    assert lane(app).answered == 0
    assert r.status_code == 500 and r.get_json()["error"]["code"]


def test_another_blueprint_s_hooks_do_not_stop_the_lane_but_the_app_s_do(make_app):
    app = make_app()
    app.after_request_funcs.setdefault("clerk", []).append(lambda r: r)
    post(app, BODIES[0])
    assert lane(app).answered == 1
    app.teardown_request(lambda e: None)
    post(app, BODIES[0])
    assert lane(app).answered == 1


@pytest.mark.redis
def test_the_lane_reads_live_state_from_redis(make_app, redis_url):
    app = make_app(store_url=redis_url)
    store = app.extensions["recsvc"].store
    store.set_consent("c00003", Consent(granted=False, source="test"))
    js = post(app, BODIES[0]).get_json()
    assert lane(app).answered == 1
    assert js["personalised"] is False and js["fallback_reason"] == "no_consent"
    other = open_store(redis_url)
    try:
        other.set_consent("c00003", Consent(granted=True, source="test"))
    finally:
        other.close()
    assert post(app, BODIES[0]).get_json()["personalised"] is True

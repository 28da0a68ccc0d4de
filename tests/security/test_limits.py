"""Size limits (body 413, batch 413, n, identifier and id lengths 422, each naming the field), rate
limits per key and role (429 + Retry-After, on the Flask path and the express lane alike), and CORS for
the allowed origins only (preflights need no key)."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.service import bearer


def post(client, path, body, key, **kw):
    return client.post(path, data=json.dumps(body) if not isinstance(body, bytes) else body,
                       content_type="application/json", headers={**bearer(key), **kw.pop("headers", {})}, **kw)


def fields(r) -> list[str]:
    return [d["field"] for d in r.get_json()["error"]["details"]]


def test_sizes_are_limited_and_name_the_field(auth_app, keys):
    client = auth_app(max_body_bytes=64 * 1024).test_client()
    admin, sf = keys["admin"], keys["storefront"]
    big = {"context": {"channel": "web"}, "exclude": ["i00001"] * 20000}
    r = post(client, "/v1/recommendations", big, sf)
    assert r.status_code == 413 and r.get_json()["error"]["code"] == "body_too_large"
    r = post(client, "/v1/recommendations", {"context": {"channel": "web"}, "n": 101}, sf)
    assert r.status_code == 422 and fields(r) == ["n"]
    r = post(client, "/v1/recommendations", {"context": {"channel": "web"}, "n": 0}, sf)
    assert r.status_code == 422 and fields(r) == ["n"]
    r = post(client, "/v1/recommendations", {"customer": {"identifier": {"type": "loyalty_card", "value": "9" * 257}},
                                             "context": {"channel": "web"}}, sf)
    assert r.status_code == 422 and fields(r) == ["customer.identifier.value"]
    r = post(client, "/v1/recommendations", {"customer": {"customer_id": "c" * 129}, "context": {"channel": "web"}}, sf)
    assert r.status_code == 422 and fields(r) == ["customer.customer_id"]
    r = post(client, "/v1/customers/lookup", {"type": "email_sha256", "value": "ada@example.com"}, admin)
    assert r.status_code == 422 and fields(r) == ["value"] and "ada@example.com" not in r.get_data(as_text=True)
    r = post(client, "/v1/customers/lookup", {"type": "loyalty_card", "value": "1" * 257}, admin)
    assert r.status_code == 422 and fields(r) == ["value"]
    assert client.get("/v1/customers/" + "c" * 129, headers=bearer(admin)).status_code == 404
    e = {"customer": {"customer_id": "c00001"}, "item_id": "i00001", "event": "view", "channel": "web",
         "timestamp": "2026-11-20T10:00:00Z"}
    batch = [{**e, "event_id": f"x{k}"} for k in range(1001)]
    r = post(auth_app().test_client(), "/v1/events", {"events": batch}, admin)
    assert r.status_code == 413 and r.get_json()["error"]["code"] == "too_many_events" and fields(r) == ["events"]
    r = client.put("/v1/stores/s1/stock", data=json.dumps({"items": [{"item_id": "i00001", "quantity": -1}]}),
                   content_type="application/json", headers=bearer(admin))
    assert r.status_code == 422 and fields(r) == ["items[0].quantity"]
    r = client.get("/v1/items/i00001/similar?channel=web&n=500", headers=bearer(sf))
    assert r.status_code == 422 and fields(r) == ["n"]


@pytest.mark.parametrize("lane_open", [True, False])
def test_rate_limits_by_role_answer_429_with_retry_after(auth_app, keys, lane_open):
    app = auth_app(rate_limits=(("admin", 0), ("analyst", 2), ("clerk", 3), ("storefront", 4)), rate_window_s=3600)
    if not lane_open:
        app.before_request(lambda: None)
    client = app.test_client()
    body = {"context": {"channel": "store", "store_id": "s1"}}
    got = [post(client, "/v1/recommendations", body, keys["clerk"]) for _ in range(5)]
    assert [r.status_code for r in got] == [200, 200, 200, 429, 429]
    r = got[-1]
    assert 0 < int(r.headers["Retry-After"]) <= 3600
    js = r.get_json()
    assert js["error"]["code"] == "rate_limited" and js["error"]["details"] == [
        {"field": "Authorization", "reason": "more than 3 requests in 3600 s"}]
    assert app.wsgi_app.answered == (3 if lane_open else 0)
    # each key has its own count; every endpoint counts
    assert [client.get("/v1/models", headers=bearer(keys["analyst"])).status_code for _ in range(3)] == [200, 200, 429]
    assert post(client, "/v1/recommendations", body, keys["clerk_s2"]).status_code == 403  # s2's key, s1's store
    assert all(post(client, "/v1/recommendations", {"context": {"channel": "web"}}, keys["admin"]).status_code == 200
               for _ in range(10))  # 0: no limit
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'recsvc_auth_denied_total{reason="rate_limited"}' in metrics


ORIGIN = "https://shop.example.com"


@pytest.mark.parametrize("lane_open", [True, False])
def test_cors_for_the_allowed_origins_only(auth_app, keys, lane_open):
    app = auth_app(cors_origins=(ORIGIN,))
    if not lane_open:
        app.before_request(lambda: None)
    client = app.test_client()
    body = {"context": {"channel": "web"}}
    r = post(client, "/v1/recommendations", body, keys["storefront"], headers={"Origin": ORIGIN})
    assert r.status_code == 200 and r.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "Origin" in r.headers["Vary"] and "X-Request-ID" in r.headers["Access-Control-Expose-Headers"]
    assert app.wsgi_app.answered == (1 if lane_open else 0)
    r = post(client, "/v1/recommendations", body, keys["storefront"], headers={"Origin": "https://evil.example"})
    assert r.status_code == 200 and "Access-Control-Allow-Origin" not in r.headers
    r = post(client, "/v1/recommendations", body, keys["storefront"])
    assert "Access-Control-Allow-Origin" not in r.headers
    # the preflight carries no key and needs none
    r = client.options("/v1/recommendations", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
                                                       "Access-Control-Request-Headers": "authorization, content-type"})
    assert r.status_code == 200 and r.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "POST" in r.headers["Access-Control-Allow-Methods"]
    assert "Authorization" in r.headers["Access-Control-Allow-Headers"] and r.headers["Access-Control-Max-Age"]
    r = client.options("/v1/recommendations", headers={"Origin": "https://evil.example",
                                                       "Access-Control-Request-Method": "POST"})
    assert "Access-Control-Allow-Origin" not in r.headers
    # errors carry the headers too, so the front end can read them
    r = client.post("/v1/recommendations", json=body, headers={"Origin": ORIGIN})
    assert r.status_code == 401 and r.headers["Access-Control-Allow-Origin"] == ORIGIN


def test_without_an_allow_list_no_cors_header_is_sent(auth_app, keys):
    client = auth_app().test_client()
    r = post(client, "/v1/recommendations", {"context": {"channel": "web"}}, keys["storefront"],
             headers={"Origin": ORIGIN})
    assert r.status_code == 200 and not [h for h in r.headers.keys() if h.startswith("Access-Control")]  # noqa: SIM118 (Headers iterate as pairs)


def test_any_origin_with_a_star(auth_app, keys):
    client = auth_app(cors_origins=("*",)).test_client()
    origin = f"https://{uuid.uuid4().hex[:8]}.example"
    r = post(client, "/v1/recommendations", {"context": {"channel": "web"}}, keys["storefront"],
             headers={"Origin": origin})
    assert r.headers["Access-Control-Allow-Origin"] == origin and "Access-Control-Allow-Credentials" not in r.headers

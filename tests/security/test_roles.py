"""The role matrix over every /v1/ endpoint, key bindings (a clerk's store, a storefront's channels, who
may record events as a clerk), 401 for missing or bad keys, and the express lane giving the same
answers as Flask with keys on."""

from __future__ import annotations

import json
import uuid

import pytest

from recsvc.security.policy import ANY_ROLE
from tests.service import bearer


def event(channel="web", store_id=None, actor="customer", customer="c00001"):
    e = {"event_id": f"t-{uuid.uuid4().hex}", "customer": {"customer_id": customer}, "item_id": "i00003",
         "event": "view", "channel": channel, "timestamp": "2026-11-20T10:00:00Z",
         "actor": {"type": actor, "id": "a-1"}}
    if store_id:
        e["store_id"] = store_id
    return e


EXPERIMENT = {"experiment_id": "exp-roles", "variants": [{"name": "control", "share": 0.5, "control": True},
                                                         {"name": "B", "share": 0.5}]}
CALLS = {
    "recommend": ("POST", "/v1/recommendations", {"context": {"channel": "store", "store_id": "s1"}, "n": 3}),
    "similar": ("GET", "/v1/items/i00001/similar?channel=store&store_id=s1", None),
    "stock_read": ("GET", "/v1/stores/s1/stock", None),
    "stock_write": ("PUT", "/v1/stores/s1/stock", {"items": [{"item_id": "i00001", "quantity": 2}]}),
    "events_customer": ("POST", "/v1/events", {"events": [event()]}),
    "events_clerk": ("POST", "/v1/events", {"events": [event("store", "s1", "clerk")]}),
    "customer_view": ("GET", "/v1/customers/c00001", None),
    "lookup": ("POST", "/v1/customers/lookup", {"type": "loyalty_card", "value": "4970000000000001"}),
    "consent": ("PUT", "/v1/customers/c00001/consent", {"personalisation": True, "source": "clerk", "channel": "store"}),
    "link": ("POST", "/v1/customers/c00002/identifiers", {"type": "loyalty_card", "value": "4970000000000002"}),
    "unlink": ("DELETE", "/v1/customers/c00002/identifiers/loyalty_card/4970000000000002", None),
    "erase": ("DELETE", "/v1/customers/c00039", None),
    "models": ("GET", "/v1/models", None),
    "model_current": ("GET", "/v1/models/current", None),
    "reload": ("POST", "/v1/models/reload", {}),
    "experiments": ("GET", "/v1/experiments", None),
    "experiment_create": ("POST", "/v1/experiments", EXPERIMENT),
    "experiment_report": ("GET", "/v1/experiments/exp-roles/report", None),
    "audit": ("GET", "/v1/audit", None),
    "keys": ("GET", "/v1/keys", None),
    "me": ("GET", "/v1/auth/me", None),
}
ALLOWED = {
    "storefront": {"recommend", "similar", "events_customer", "me"},
    "clerk": {"recommend", "similar", "stock_read", "events_clerk", "customer_view", "lookup", "consent", "link",
              "unlink", "me"},
    "analyst": {"models", "model_current", "reload", "experiments", "experiment_create", "experiment_report", "me"},
    "admin": set(CALLS),
}


def call(client, name, key=None):
    method, path, body = CALLS[name]
    headers = bearer(key) if key else {}
    if body is None:
        return client.open(path, method=method, headers=headers)
    return client.open(path, method=method, headers=headers, data=json.dumps(body), content_type="application/json")


def is_error(js) -> bool:
    e = js.get("error") if isinstance(js, dict) else None
    return (isinstance(e, dict) and isinstance(e.get("code"), str) and isinstance(e.get("message"), str)
            and isinstance(e.get("details"), list) and all({"field", "reason"} <= set(d) for d in e["details"])
            and isinstance(js.get("request_id"), str))


@pytest.mark.parametrize("role", ["storefront", "clerk", "analyst", "admin"])
def test_each_role_may_call_its_endpoints_and_gets_403_elsewhere(auth_app, keys, role):
    client = auth_app().test_client()
    key = keys[role]
    for name in CALLS:  # in order: link before unlink, create before report
        r = call(client, name, key)
        if name in ALLOWED[role]:
            assert r.status_code not in (401, 403) and r.status_code < 500, (role, name, r.status_code, r.get_json())
        else:
            js = r.get_json()
            assert r.status_code == 403 and is_error(js) and js["error"]["code"] == "forbidden", (role, name, js)
            assert js["error"]["details"][0]["field"] in ("Authorization", "events[0].actor.type",
                                                          "events[0].store_id"), js


def test_the_role_matrix_covers_every_v1_endpoint(auth_app):
    app = auth_app()
    routed = {(m, rule.rule) for rule in app.url_map.iter_rules() if rule.rule.startswith("/v1/")
              for m in rule.methods - {"HEAD", "OPTIONS"}}
    called = set()
    for method, path, _ in CALLS.values():
        adapter = app.url_map.bind("localhost")
        endpoint, _ = adapter.match(path.split("?")[0], method=method)
        called |= {(method, r.rule) for r in app.url_map.iter_rules(endpoint)}
    untested = routed - called
    # the rest of the experiments endpoints: analyst and admin (declared with the same decorator)
    assert {p for _, p in untested} <= {"/v1/experiments/<experiment_id>", "/v1/experiments/<experiment_id>/stop"}
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/v1/"):
            roles = getattr(app.view_functions[rule.endpoint], "_roles", None)
            assert roles is not None and "admin" in roles and roles <= ANY_ROLE, rule.rule


@pytest.mark.parametrize("name", sorted(CALLS))
def test_no_key_or_a_bad_key_is_401_with_a_bearer_challenge(auth_app, keys, name):
    client = auth_app().test_client()
    good = keys["admin"]
    for headers, reason in (({}, "missing"), (bearer(good[:-1] + ("A" if good[-1] != "A" else "B")), "unknown or revoked key"),
                            (bearer("not-a-key"), "unknown or revoked key"),
                            ({"Authorization": "Basic YWRtaW46YWRtaW4="}, "not a Bearer key"),
                            ({"Authorization": good}, "not a Bearer key")):
        method, path, body = CALLS[name]
        r = client.open(path, method=method, headers=headers,
                        data=json.dumps(body) if body is not None else None, content_type="application/json")
        js = r.get_json()
        assert r.status_code == 401 and is_error(js) and js["error"]["code"] == "unauthorized", (name, js)
        assert js["error"]["details"] == [{"field": "Authorization", "reason": reason}]
        assert r.headers["WWW-Authenticate"].startswith('Bearer realm="recsvc"')
        assert good not in r.get_data(as_text=True)


def test_public_paths_need_no_key_and_unknown_v1_paths_need_one(auth_app, keys):
    client = auth_app().test_client()
    for path in ("/healthz", "/readyz", "/openapi.json", "/docs", "/metrics", "/clerk/"):
        assert client.get(path).status_code == 200, path
    assert client.get("/v1/nothing-here").status_code == 401  # nothing is revealed without a key
    r = client.get("/v1/nothing-here", headers=bearer(keys["storefront"]))
    assert r.status_code == 404 and r.get_json()["error"]["code"] == "not_found"
    r = client.delete("/v1/recommendations", headers=bearer(keys["storefront"]))
    assert r.status_code == 405


def test_a_clerk_key_serves_its_own_store_only(auth_app, keys):
    client = auth_app().test_client()
    h = bearer(keys["clerk"])
    ok = client.post("/v1/recommendations", json={"customer": {"customer_id": "c00001"},
                                                   "context": {"channel": "store", "store_id": "s1"}}, headers=h)
    assert ok.status_code == 200 and ok.get_json()["items"][0]["availability"]["store_id"] == "s1"
    for ctx, reason in (({"channel": "store", "store_id": "s2"}, "this clerk key is bound to store 's1'"),
                        ({"channel": "web"}, "this clerk key is bound to store 's1': send store_id='s1'")):
        r = client.post("/v1/recommendations", json={"context": ctx}, headers=h)
        js = r.get_json()
        assert r.status_code == 403 and js["error"]["details"] == [{"field": "context.store_id", "reason": reason}]
    assert client.get("/v1/items/i00001/similar?channel=store&store_id=s2", headers=h).status_code == 403
    assert client.get("/v1/items/i00001/similar?channel=store", headers=h).status_code == 403
    assert client.get("/v1/items/i00001/similar?channel=store&store_id=s1", headers=h).status_code == 200
    assert client.get("/v1/stores/s2/stock", headers=h).status_code == 403
    assert client.get("/v1/stores/s1/stock", headers=h).status_code == 200
    r = client.post("/v1/events", json={"events": [event("store", "s1", "clerk"), event("store", "s2", "clerk"),
                                                    event("store", "s1", "customer")]}, headers=h)
    js = r.get_json()
    assert r.status_code == 403 and [d["field"] for d in js["error"]["details"]] == [
        "events[1].store_id", "events[2].actor.type"]
    # nothing of a refused batch was written
    view = client.get("/v1/customers/c00001", headers=h).get_json()
    assert view["recent_activity"] == []


def test_a_storefront_key_bound_to_a_channel_and_never_a_clerk(auth_app, keys):
    client = auth_app().test_client()
    web = bearer(keys["web_only"])
    assert client.post("/v1/recommendations", json={"context": {"channel": "web"}}, headers=web).status_code == 200
    r = client.post("/v1/recommendations", json={"context": {"channel": "app"}}, headers=web)
    assert r.status_code == 403 and r.get_json()["error"]["details"][0]["field"] == "context.channel"
    assert client.post("/v1/events", json={"events": [event("web")]}, headers=web).status_code == 202
    r = client.post("/v1/events", json={"events": [event("app")]}, headers=web)
    assert r.status_code == 403 and r.get_json()["error"]["details"][0]["field"] == "events[0].channel"
    r = client.post("/v1/events", json={"events": [event("web", actor="clerk")]}, headers=bearer(keys["storefront"]))
    assert r.status_code == 403 and r.get_json()["error"]["details"][0]["field"] == "events[0].actor.type"


def test_who_am_i(auth_app, keys):
    client = auth_app().test_client()
    js = client.get("/v1/auth/me", headers=bearer(keys["clerk"])).get_json()
    assert js == {"auth": True, "key_id": keys["clerk"].split("_")[1], "name": "clerk", "role": "clerk",
                  "store_id": "s1", "channels": [], "rate_limit": {"requests": 600, "window_s": 60}}
    listed = client.get("/v1/keys", headers=bearer(keys["admin"])).get_json()["keys"]
    assert {k["name"] for k in listed} == set(keys) and all("hash" not in k for k in listed)
    assert not any(key.split("_", 2)[2] in json.dumps(listed) for key in keys.values())


def test_with_auth_off_every_request_is_let_through_and_the_start_warns(make_app, caplog):
    app = make_app(auth=False)
    assert any("RECSVC_AUTH=off" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)
    client = app.test_client()
    assert client.get("/v1/audit").status_code == 200
    assert client.get("/v1/auth/me").get_json()["auth"] is False


# -- the express lane with keys on: the same answers as Flask, the same refusals

def lane(app):
    return app.wsgi_app


@pytest.fixture
def pair(auth_app):
    fast, slow = auth_app(), auth_app()
    slow.before_request(lambda: None)  # the lane stands aside: every request goes through Flask
    return fast, slow


BODY = {"customer": {"customer_id": "c00003"}, "context": {"channel": "store", "store_id": "s1"}, "n": 5}


def post(app, body, headers):
    return app.test_client().post("/v1/recommendations", data=json.dumps(body), content_type="application/json",
                                  headers=headers)


@pytest.mark.parametrize("who", ["storefront", "clerk", "admin", "web_only"])
def test_the_lane_answers_authenticated_everyday_requests_as_flask_does(pair, keys, who):
    fast, slow = pair
    body = BODY if who != "web_only" else {**BODY, "context": {"channel": "web"}}
    a = post(fast, body, {**bearer(keys[who]), "X-Request-ID": "r-1"})
    b = post(slow, body, {**bearer(keys[who]), "X-Request-ID": "r-1"})
    assert lane(fast).answered == 1 and lane(slow).answered == 0
    ja, jb = a.get_json(), b.get_json()
    ja.pop("recommendation_id"), jb.pop("recommendation_id")
    assert a.status_code == b.status_code == 200 and ja == jb


@pytest.mark.parametrize("headers, status", [
    ({}, 401), ({"Authorization": "Bearer rk_000000000000_" + "x" * 43}, 401), ("analyst", 403), ("clerk_s2", 403),
    ("web_only", 403),
])
def test_the_lane_refuses_what_flask_refuses(pair, keys, headers, status):
    fast, slow = pair
    if isinstance(headers, str):
        headers = bearer(keys[headers])
    a, b = post(fast, BODY, {**headers, "X-Request-ID": "r-2"}), post(slow, BODY, {**headers, "X-Request-ID": "r-2"})
    assert a.status_code == b.status_code == status
    assert a.get_json() == b.get_json() and a.headers.get("WWW-Authenticate") == b.headers.get("WWW-Authenticate")
    assert lane(fast).answered == 0

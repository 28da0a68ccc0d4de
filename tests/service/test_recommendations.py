"""POST /v1/recommendations through Flask's test client, on the test model and both stores."""

from __future__ import annotations

import re
import socket

import pytest

from recsvc.core.types import LiveEvent
from recsvc.schemas.recommendations import RecommendationResponseSchema
from recsvc.state import open_store
from recsvc.state.base import Consent, StoredEvent

URL = "/v1/recommendations"


def post(client, body, **kw):
    return client.post(URL, json=body, **kw)


def ids(resp) -> list[str]:
    return [x["item_id"] for x in resp.get_json()["items"]]


def test_known_customer_gets_a_personalised_list_in_the_contract_shape(client, app):
    r = post(
        client,
        {"customer": {"customer_id": "c00003"}, "context": {"channel": "store", "store_id": "s1"}, "n": 5},
    )
    assert r.status_code == 200 and r.mimetype == "application/json"
    js = r.get_json()
    assert RecommendationResponseSchema().validate(js) == {}
    assert re.fullmatch(r"r-[0-9a-f]{32}", js["recommendation_id"])
    assert js["model_id"] == app.extensions["recsvc"].holder.model.model_id
    assert js["customer_id"] == "c00003" and js["personalised"] is True and js["strategy"] == "personalised"
    assert js["variant"] is None and js["fallback_reason"] is None
    assert [x["rank"] for x in js["items"]] == [1, 2, 3, 4, 5]
    scores = [x["score"] for x in js["items"]]
    assert scores == sorted(scores, reverse=True)
    for x in js["items"]:
        assert x["reasons"] and all(r["code"] and r["text"] for r in x["reasons"])
        assert x["availability"]["store_id"] == "s1"
        assert x["availability"]["fulfilment"] in ("take_home", "order_for_delivery", "pick_up_elsewhere")
        assert isinstance(x["title"], str) and isinstance(x["category"], str)
    assert "i00021" not in ids(r)  # c00003 bought item 21 in the training data


def test_n_defaults_to_ten_and_is_honoured(client):
    assert len(ids(post(client, {"context": {"channel": "web"}}))) == 10
    assert len(ids(post(client, {"context": {"channel": "web"}, "n": 1}))) == 1
    assert len(ids(post(client, {"context": {"channel": "web"}, "n": 100}))) == 60  # the whole catalogue


@pytest.mark.parametrize(
    "customer, reason",
    [
        (None, "anonymous"),
        ({"customer_id": "not-a-customer"}, "unknown_customer"),
        ({"identifier": {"type": "loyalty_card", "value": "0000"}}, "unknown_identifier"),
    ],
)
def test_fallbacks_are_never_empty_and_say_why(client, customer, reason):
    body = {"context": {"channel": "web"}, "n": 5}
    if customer is not None:
        body["customer"] = customer
    js = post(client, body).get_json()
    assert js["personalised"] is False and js["fallback_reason"] == reason
    assert len(js["items"]) == 5 and js["strategy"] == "popular"


def test_channel_parity_for_known_and_anonymous_customers(client):
    for customer in ({"customer_id": "c00005"}, None):
        lists = []
        for ch in ("web", "app", "store", "call_center"):
            body = {"context": {"channel": ch, "store_id": "s2"}, "n": 8}
            if customer:
                body["customer"] = customer
            lists.append(ids(post(client, body)))
        assert all(lst == lists[0] for lst in lists)


def test_identifier_resolves_to_the_internal_customer(make_app):
    from recsvc.state.memory import InMemoryStore

    store = InMemoryStore()
    store.link_identifier("c00007", "email_sha256", "ab" * 32)
    client = make_app(store=store).test_client()
    js = post(
        client,
        {
            "customer": {"identifier": {"type": "email_sha256", "value": "AB" * 32}},
            "context": {"channel": "app"},
        },
    ).get_json()
    assert js["customer_id"] == "c00007" and js["personalised"] is True


def test_consent_withdrawn_or_denied_by_default_is_not_personalised(make_app):
    from recsvc.state.memory import InMemoryStore

    store = InMemoryStore()
    store.set_consent("c00002", Consent(granted=False, source="clerk", channel="store"))
    client = make_app(store=store).test_client()
    js = post(client, {"customer": {"customer_id": "c00002"}, "context": {"channel": "web"}}).get_json()
    assert js["personalised"] is False and js["fallback_reason"] == "no_consent"
    denied = make_app(consent_default=False).test_client()
    js = post(denied, {"customer": {"customer_id": "c00004"}, "context": {"channel": "web"}}).get_json()
    assert js["personalised"] is False and js["fallback_reason"] == "no_consent"


def test_live_events_change_the_next_list(make_app):
    from recsvc.state.memory import InMemoryStore

    store = InMemoryStore()
    client = make_app(store=store).test_client()
    body = {"customer": {"customer_id": "c00001"}, "context": {"channel": "web"}, "n": 10}
    before = ids(post(client, body))
    store.append_events([StoredEvent("e1", "c00001", LiveEvent(before[0], "purchase", "store", 1.0))])
    after = ids(post(client, body))
    assert before[0] not in after


def test_live_stock_annotates_and_filters(client):
    assert (
        client.put(
            "/v1/stores/s1/stock", json={"items": [{"item_id": "i00000", "quantity": 7}], "replace": True}
        ).status_code
        == 200
    )
    body = {"context": {"channel": "store", "store_id": "s1"}, "n": 60}
    offers = {x["item_id"]: x["availability"] for x in post(client, body).get_json()["items"]}
    assert offers["i00000"] == {"store_id": "s1", "in_stock": True, "quantity": 7, "fulfilment": "take_home"}
    assert offers["i00001"]["in_stock"] is False
    body["filters"] = {"in_stock_only": True}
    assert ids(post(client, body)) == ["i00000"]


def test_context_filters_and_exclusions_apply(client):
    body = {
        "context": {"channel": "web", "item_id": "i00004", "cart": ["i00008"]},
        "filters": {"category": "cat1", "max_price": 40},
        "exclude": ["i00001"],
        "n": 20,
    }
    js = post(client, body).get_json()
    got = ids(post(client, body))
    assert got and all(x["category"] == "cat1" and x["price"] <= 40 for x in js["items"])
    assert not {"i00004", "i00008", "i00001"} & set(got)


def test_explain_false_leaves_out_reasons(client):
    js = post(client, {"context": {"channel": "web"}, "n": 3, "explain": False}).get_json()
    assert all(x["reasons"] == [] for x in js["items"])


def test_diversity_cap_from_config(make_app):
    client = make_app(max_per_category=1).test_client()
    js = post(
        client, {"customer": {"customer_id": "c00003"}, "context": {"channel": "web"}, "n": 4}
    ).get_json()
    cats = [x["category"] for x in js["items"]]
    assert len(cats) == 4 and len(set(cats)) == 4


def test_request_id_is_echoed_or_made(client):
    r = post(client, {"context": {"channel": "web"}}, headers={"X-Request-ID": "abc-123"})
    assert r.headers["X-Request-ID"] == "abc-123"
    r = post(client, {"context": {"channel": "web"}}, headers={"X-Request-ID": "bad id\twith junk"})
    assert re.fullmatch(r"[0-9a-f]{32}", r.headers["X-Request-ID"])


def test_one_json_log_line_per_request_without_raw_identifiers(make_app, capfd):
    from recsvc.state.memory import InMemoryStore

    store = InMemoryStore()
    store.link_identifier("c00009", "loyalty_card", "4970123412341234")
    client = make_app(store=store, log_level="INFO").test_client()
    capfd.readouterr()
    post(
        client,
        {
            "customer": {"identifier": {"type": "loyalty_card", "value": "4970123412341234"}},
            "context": {"channel": "store"},
        },
        headers={"X-Request-ID": "req-1"},
    )
    import orjson

    lines = [orjson.loads(x) for x in capfd.readouterr().err.splitlines() if x.startswith("{")]
    access = [x for x in lines if x.get("logger") == "recsvc.access"]
    assert len(access) == 1
    line = access[0]
    assert line["request_id"] == "req-1" and line["status"] == 200 and line["channel"] == "store"
    assert line["strategy"] == "personalised" and line["customer_id"] == "c00009" and line["latency_ms"] >= 0
    assert "4970123412341234" not in str(lines)


def _dead_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_redis_down_still_answers_from_the_model(make_app):
    store = open_store(f"redis://127.0.0.1:{_dead_port()}/0", timeout_ms=100)
    client = make_app(store=store).test_client()
    for _ in range(3):  # the first call fails on connect, the next ones on the open breaker
        r = post(
            client, {"customer": {"customer_id": "c00003"}, "context": {"channel": "store", "store_id": "s1"}}
        )
        js = r.get_json()
        assert r.status_code == 200 and len(js["items"]) == 10
        assert js["personalised"] is False and js["fallback_reason"] == "state_unavailable"
        assert js["customer_id"] == "c00003"
    r = client.get("/readyz")
    assert r.status_code == 503 and "unreachable" in r.get_json()["store"]
    assert client.put("/v1/stores/s1/stock", json={"items": []}).status_code == 503
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'recsvc_store_errors_total{operation="get_state"}' in metrics
    assert 'recsvc_fallbacks_total{reason="state_unavailable"}' in metrics


@pytest.mark.redis
def test_redis_store_end_to_end(make_app, redis_url):
    client = make_app(store_url=redis_url).test_client()
    store = client.application.extensions["recsvc"].store
    store.link_identifier("c00011", "loyalty_card", "L-11")
    assert (
        client.put("/v1/stores/s2/stock", json={"items": [{"item_id": "i00002", "quantity": 9}]}).status_code
        == 200
    )
    js = post(
        client,
        {
            "customer": {"identifier": {"type": "loyalty_card", "value": "L-11"}},
            "context": {"channel": "store", "store_id": "s2"},
            "n": 60,
        },
    ).get_json()
    assert js["customer_id"] == "c00011" and js["personalised"] is True
    avail = {x["item_id"]: x["availability"] for x in js["items"]}
    assert avail["i00002"]["quantity"] == 9

"""POST /v1/events through Flask's test client, on the in-memory store and on the real Redis."""

from __future__ import annotations

import pytest

from recsvc.schemas.events import EventsAcceptedSchema, parse_timestamp
from tests.realtime import event, rec_body

URL = "/v1/events"


def post(client, events, **kw):
    return client.post(URL, json={"events": events}, **kw)


def test_accepted_then_duplicates_by_event_id(rt_app):
    client = rt_app().test_client()
    batch = [event("c00001", "i00001", event_id="a1"), event("c00002", "i00002", "purchase", "store",
                                                               event_id="a2", store_id="s1", quantity=2)]
    r = post(client, batch)
    assert r.status_code == 202 and r.get_json() == {"accepted": 2, "duplicates": 0, "erased": 0}
    assert EventsAcceptedSchema().validate(r.get_json()) == {}
    r = post(client, [*batch, event("c00001", "i00003", event_id="a3")])
    assert r.get_json() == {"accepted": 1, "duplicates": 2, "erased": 0}
    r = post(client, [event("c00009", "i00001", event_id="b1"), event("c00009", "i00001", event_id="b1")])
    assert r.get_json() == {"accepted": 1, "duplicates": 1, "erased": 0}  # a duplicate inside one batch


def test_one_invalid_event_rejects_the_whole_batch_with_per_index_details(rt_app):
    client = rt_app().test_client()
    good = event("c00001", "i00001", event_id="g1")
    bad = [
        good,
        event("c00001", "i00002", channel="fax"),
        {**event("c00001", "i00002"), "timestamp": "yesterday"},
        {k: v for k, v in event("c00001", "i00002").items() if k != "customer"},
        {**event("c00001", "i00002"), "quantity": -1},
        {**event("c00001", "i00002"), "actor": {"type": "cashier"}},
        {**event("c00001", "i00002"), "customer": {"identifier": {"type": "email_sha256", "value": "a@b.c"}}},
        {**event("c00001", "i00002"), "event": "teleport", "item_id": ""},
    ]
    r = post(client, bad)
    assert r.status_code == 422
    js = r.get_json()
    fields = {d["field"] for d in js["error"]["details"]}
    assert {"events[1].channel", "events[2].timestamp", "events[3].customer", "events[4].quantity",
            "events[5].actor.type", "events[6].customer.identifier.value", "events[7].event",
            "events[7].item_id"} <= fields
    assert js["error"]["code"] == "validation_error" and js["request_id"]
    assert post(client, [good]).get_json()["accepted"] == 1  # nothing of the rejected batch was kept


@pytest.mark.parametrize("body, status", [
    ({"events": []}, 422),
    ({"events": "nope"}, 422),
    ({}, 422),
    ({"events": [event("c1", "i00001") for _ in range(1001)]}, 413),
])
def test_batch_limits(rt_app, body, status):
    r = rt_app().test_client().post(URL, json=body)
    assert r.status_code == status and r.get_json()["error"]["details"]
    if status == 413:
        assert r.get_json()["error"]["code"] == "too_many_events"


def test_a_full_batch_of_1000_is_accepted(rt_app):
    client = rt_app().test_client()
    batch = [event(f"c{k % 40:05d}", f"i{k % 60:05d}", event_id=f"full-{k}") for k in range(1000)]
    assert post(client, batch).get_json() == {"accepted": 1000, "duplicates": 0, "erased": 0}


def test_an_unknown_identifier_gets_an_anonymous_profile_that_personalises_at_once(rt_app):
    client = rt_app().test_client()
    device = {"identifier": {"type": "device", "value": "phone-7f3a9c"}}
    views = [event(device, f"i{k:05d}", "view", "app") for k in (2, 6, 10, 14, 18)]  # category 2
    assert post(client, views).get_json()["accepted"] == 5
    js = client.post("/v1/recommendations", json={"customer": device, "context": {"channel": "store"}}).get_json()
    assert js["personalised"] is True and js["customer_id"].startswith("anon-")
    assert sum(x["category"] == "cat2" for x in js["items"]) >= 5
    again = post(client, [event(device, "i00022", "view", "web")]).get_json()
    assert again["accepted"] == 1
    assert client.post("/v1/customers/lookup", json=device["identifier"]).get_json() == {
        "customer_id": js["customer_id"], "anonymous": True}


def test_events_of_an_erased_customer_are_dropped_and_never_recreate_state(rt_app):
    client = rt_app().test_client()
    client.post("/v1/customers/c00005/identifiers", json={"type": "loyalty_card", "value": "4970000000000005"})
    post(client, [event("c00005", "i00001")])
    assert client.delete("/v1/customers/c00005").status_code == 200
    late = [event("c00005", "i00002", "purchase"),
            event({"identifier": {"type": "loyalty_card", "value": "4970000000000005"}}, "i00003")]
    assert post(client, late).get_json() == {"accepted": 0, "duplicates": 0, "erased": 2}
    assert client.get("/v1/customers/c00005").get_json()["erased"] is True
    js = client.post("/v1/recommendations", json=rec_body("c00005", "web")).get_json()
    assert js["personalised"] is False and js["fallback_reason"] == "erased"


def test_actor_and_optional_fields_are_kept(rt_app):
    app = rt_app()
    client = app.test_client()
    e = event("c00003", "i00004", "offer_accepted", "store", store_id="s1", actor={"type": "clerk", "id": "k-7"},
              recommendation_id="r-1", session_id="sess-1", value=19.5, timestamp=1795435200)
    assert post(client, [e]).status_code == 202
    (stored,) = app.extensions["recsvc"].store.recent_events("c00003")
    assert (stored.actor_type, stored.actor_id, stored.session_id) == ("clerk", "k-7", "sess-1")
    assert (stored.event.ts, stored.event.value, stored.event.recommendation_id) == (1795435200.0, 19.5, "r-1")
    act = client.get("/v1/customers/c00003").get_json()["recent_activity"][0]
    assert act["actor"] == {"type": "clerk", "id": "k-7"} and act["title"] == "Item i00004"


@pytest.mark.parametrize("text, epoch", [
    ("2026-11-23", 1795392000.0), ("2026-11-23T10:00:00Z", 1795428000.0),
    ("2026-11-23T11:00:00+01:00", 1795428000.0), ("2026-11-23T10:00:00", 1795428000.0), (1795428000, 1795428000.0),
])
def test_timestamps_follow_the_data_contract(text, epoch):
    assert parse_timestamp(text) == epoch


@pytest.mark.parametrize("bad", [True, "1795428000", -5, 1e13, "2026-13-01", float("nan")])
def test_bad_timestamps_are_refused(bad):
    with pytest.raises(ValueError):
        parse_timestamp(bad)


# -- the everyday shortcut agrees with the schema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recsvc.schemas.events import EventBatchSchema, load_everyday

_ids = st.one_of(st.sampled_from(["c1", "i00001", "0493995001", "é-ü", "x" * 128]), st.text(max_size=130))
_numbers = st.one_of(st.integers(-10, 2 * 10**6), st.floats(allow_nan=False, allow_infinity=False),
                     st.integers(2**53 - 2, 2**53 + 2))
_anything = st.one_of(st.none(), st.booleans(), _numbers, st.text(max_size=5), st.lists(st.none(), max_size=1))
_customer = st.one_of(
    st.builds(lambda c: {"customer_id": c}, _ids),
    st.builds(lambda t, v: {"identifier": {"type": t, "value": v}},
              st.sampled_from(["loyalty_card", "device", "email_sha256", "phone_sha256", "passport"]),
              st.one_of(_ids, st.sampled_from(["ab" * 32, "AB" * 32, "g" * 64]))),
    st.dictionaries(st.sampled_from(["customer_id", "identifier", "other"]), _anything, max_size=2),
)
_event = st.fixed_dictionaries(
    {"event_id": _ids, "customer": _customer, "item_id": _ids,
     "event": st.sampled_from(["view", "purchase", "offer_declined", "teleport"]),
     "channel": st.sampled_from(["web", "app", "store", "call_center", "fax"])},
    optional={"timestamp": st.one_of(st.none(), _numbers, st.sampled_from(
                  ["2026-11-23", "2026-11-23T10:00:00Z", "2026-11-23T10:00:00+01:00", "yesterday", "1795428000"])),
              "store_id": st.one_of(st.none(), _ids), "quantity": st.one_of(_numbers, _anything),
              "value": st.one_of(st.none(), _numbers, _anything), "recommendation_id": st.one_of(st.none(), _ids),
              "session_id": st.one_of(st.none(), _ids),
              "actor": st.one_of(st.none(), st.fixed_dictionaries(
                  {"type": st.sampled_from(["customer", "clerk", "robot"])},
                  optional={"id": st.one_of(st.none(), _ids)})),
              "extra": _anything},
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_event, min_size=0, max_size=3))
def test_the_everyday_shortcut_returns_what_the_schema_returns(events):
    from marshmallow import ValidationError

    body = {"events": events}
    fast = load_everyday(body)
    try:
        slow = EventBatchSchema().load(body)["events"]
    except ValidationError:
        slow = None
    assert fast is None or fast == slow  # the shortcut never accepts what the schema refuses


def test_the_everyday_shortcut_takes_the_usual_batches():
    batch = [event("c00001", "i00001"), event({"identifier": {"type": "email_sha256", "value": "AB" * 32}},
                                             "i00002", "purchase", "store", store_id="s1", quantity=2, value=9.5,
                                             actor={"type": "clerk", "id": "k1"}, timestamp=1795428000)]
    fast = load_everyday({"events": batch})
    assert fast is not None and fast == EventBatchSchema().load({"events": batch})["events"]
    assert fast[1].customer.identifier_value == "ab" * 32

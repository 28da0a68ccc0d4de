"""An accepted event changes the customer's very next recommendation on every other channel. With Redis
the web front end and the app are two separate service instances sharing one Redis, as in production."""

from __future__ import annotations

from tests.realtime import event, ids_of, rec_body


def instances(rt_app, store_kind):
    """(web instance, app instance): two apps on one Redis; one app on the in-memory store."""
    web = rt_app().test_client()
    return web, (rt_app().test_client() if store_kind == "redis" else web)


def test_a_purchase_on_web_leaves_the_app_list_on_the_next_request(rt_app, store_kind):
    web, app = instances(rt_app, store_kind)
    before = ids_of(app.post("/v1/recommendations", json=rec_body("c00006", "app")).get_json())
    top = before[0]
    r = web.post("/v1/events", json={"events": [event("c00006", top, "purchase", "web")]})
    assert r.status_code == 202
    after = app.post("/v1/recommendations", json=rec_body("c00006", "app")).get_json()
    assert top not in ids_of(after) and after["personalised"] is True
    store_list = app.post("/v1/recommendations", json=rec_body("c00006", "store", "s2")).get_json()
    assert top not in ids_of(store_list)


def test_five_app_views_give_a_new_customer_a_personalised_store_list(rt_app, store_kind):
    web, app = instances(rt_app, store_kind)
    new = "brand-new-customer"
    first = web.post("/v1/recommendations", json=rec_body(new, "store", "s1")).get_json()
    assert first["personalised"] is False and first["fallback_reason"] == "unknown_customer"
    shown = sum(x["category"] == "cat1" for x in first["items"])
    views = [event(new, f"i{k:05d}", "view", "app") for k in (1, 5, 9, 13, 17)]  # category 1
    assert app.post("/v1/events", json={"events": views}).get_json()["accepted"] == 5
    js = web.post("/v1/recommendations", json=rec_body(new, "store", "s1")).get_json()
    assert js["personalised"] is True and js["fallback_reason"] is None
    assert sum(x["category"] == "cat1" for x in js["items"]) >= max(3, shown + 1)


def test_an_offer_declined_on_web_then_in_store_is_not_pushed_a_third_time(rt_app, store_kind):
    web, store = instances(rt_app, store_kind)
    top = ids_of(store.post("/v1/recommendations", json=rec_body("c00007", "store", "s1")).get_json())[0]
    web.post("/v1/events", json={"events": [event("c00007", top, "offer_declined", "web")]})
    assert top in ids_of(store.post("/v1/recommendations", json=rec_body("c00007", "store", "s1")).get_json())
    store.post("/v1/events", json={"events": [event("c00007", top, "offer_declined", "store", store_id="s1",
                                                    actor={"type": "clerk", "id": "k-2"})]})
    for client, ch in ((web, "web"), (store, "store"), (web, "call_center")):
        assert top not in ids_of(client.post("/v1/recommendations", json=rec_body("c00007", ch, "s1")).get_json())


def test_the_same_events_give_the_same_list_on_every_channel(rt_app, store_kind):
    web, app = instances(rt_app, store_kind)
    app.post("/v1/events", json={"events": [event("c00008", "i00010", "add_to_cart", "app"),
                                            event("c00008", "i00014", "view", "store", store_id="s2")]})
    lists = [ids_of(c.post("/v1/recommendations", json=rec_body("c00008", ch, "s2")).get_json())
             for c in (web, app) for ch in ("web", "app", "store", "call_center")]
    assert all(x == lists[0] for x in lists)

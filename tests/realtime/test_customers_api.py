"""/v1/customers/...: the customer view, consent, identifiers with provenance, erasure, lookup."""

from __future__ import annotations

import hashlib

from recsvc.schemas.customers import CustomerViewSchema, LinkAnswerSchema
from recsvc.state.base import identifier_key, mask_identifier
from tests.realtime import CHANNELS, dump_redis, event, rec_body, traces
from training.export_events import export_events

CARD = "4970123412341234"


def events(client, evs):
    r = client.post("/v1/events", json={"events": evs})
    assert r.status_code == 202, r.get_json()
    return r.get_json()


def test_customer_view_shows_masked_identifiers_consent_and_activity_on_every_channel(rt_app):
    client = rt_app().test_client()
    r = client.post("/v1/customers/c00001/identifiers",
                    json={"type": "loyalty_card", "value": CARD, "channel": "store",
                          "actor": {"type": "clerk", "id": "k-1"}})
    assert r.status_code == 201 and LinkAnswerSchema().validate(r.get_json()) == {}
    client.put("/v1/customers/c00001/consent", json={"personalisation": True, "source": "app settings",
                                                     "channel": "app"})
    events(client, [event("c00001", "i00005", "view", "app", timestamp="2026-11-23T09:00:00Z"),
                    event("c00001", "i00009", "purchase", "web", timestamp="2026-11-23T10:00:00Z"),
                    event("c00001", "i00013", "offer_declined", "store", store_id="s1",
                          actor={"type": "clerk", "id": "k-1"}, timestamp="2026-11-23T11:00:00Z")])
    r = client.get("/v1/customers/c00001")
    js = r.get_json()
    assert r.status_code == 200 and CustomerViewSchema().validate(js) == {}
    assert CARD not in r.get_data(as_text=True)
    assert js["identifiers"] == [{"type": "loyalty_card", "masked": "****1234", "linked_at": js["identifiers"][0][
        "linked_at"], "linked_by": {"type": "clerk", "id": "k-1"}, "channel": "store", "brought_history": False}]
    assert js["consent"]["personalisation"] is True and js["consent"]["source"] == "app settings"
    assert js["consent"]["channel"] == "app" and js["consent"]["recorded"] is True
    assert [(a["event"], a["channel"], a["title"]) for a in js["recent_activity"]] == [
        ("offer_declined", "store", "Item i00013"), ("purchase", "web", "Item i00009"), ("view", "app", "Item i00005")]
    assert js["activity_by_channel"] == {"app": 1, "web": 1, "store": 1}
    assert js["known_to_model"] is True and js["personalised"] is True
    assert len(client.get("/v1/customers/c00001?limit=1").get_json()["recent_activity"]) == 1


def test_unknown_and_invalid_customers(rt_app):
    client = rt_app().test_client()
    nobody = client.get("/v1/customers/nobody").get_json()  # customers exist before their first event
    assert (nobody["known_to_model"], nobody["identifiers"], nobody["recent_activity"]) == (False, [], [])
    assert client.get("/v1/customers/c00002").get_json()["consent"] == {
        "personalisation": True, "recorded": False, "source": None, "channel": None, "at": None}
    assert client.get("/v1/customers/c00002?limit=1000").status_code == 422
    assert client.get("/v1/customers/" + "x" * 200).status_code == 404


def test_consent_withdrawn_applies_on_every_channel_at_once_and_comes_back(rt_app):
    app = rt_app()
    client = app.test_client()
    assert client.post("/v1/recommendations", json=rec_body("c00003", "web")).get_json()["personalised"]
    r = client.put("/v1/customers/c00003/consent", json={"personalisation": False, "source": "clerk",
                                                          "channel": "store"})
    assert r.status_code == 200 and r.get_json()["consent"]["personalisation"] is False
    other = rt_app().test_client() if app.extensions["recsvc"].config.store_url.startswith("redis") else client
    for c in (client, other):  # another instance on the same Redis sees it too
        for ch in CHANNELS:
            js = c.post("/v1/recommendations", json=rec_body("c00003", ch, "s1")).get_json()
            assert js["personalised"] is False and js["fallback_reason"] == "no_consent"
    client.put("/v1/customers/c00003/consent", json={"personalisation": True, "source": "clerk", "channel": "store"})
    assert other.post("/v1/recommendations", json=rec_body("c00003", "app")).get_json()["personalised"] is True
    bad = client.put("/v1/customers/c00003/consent", json={"personalisation": "no", "channel": "fax"})
    assert bad.status_code == 422
    assert {d["field"] for d in bad.get_json()["error"]["details"]} == {"personalisation", "channel", "source"}


def test_identifier_links_move_only_when_asked_and_unlink_is_reversible(rt_app):
    client = rt_app().test_client()
    link = {"type": "loyalty_card", "value": CARD}
    assert client.post("/v1/customers/c00001/identifiers", json=link).status_code == 201
    assert client.post("/v1/customers/c00001/identifiers", json=link).get_json()["status"] == "already"
    r = client.post("/v1/customers/c00002/identifiers", json=link)
    assert r.status_code == 409 and r.get_json()["error"]["code"] == "identifier_linked_elsewhere"
    r = client.post("/v1/customers/c00002/identifiers", json={**link, "move": True})
    assert r.status_code == 201 and r.get_json()["status"] == "moved"
    assert client.post("/v1/customers/lookup", json=link).get_json()["customer_id"] == "c00002"
    ident = {"identifier": link}
    js = client.post("/v1/recommendations", json={"customer": ident, "context": {"channel": "store"}}).get_json()
    assert js["customer_id"] == "c00002"
    assert client.delete(f"/v1/customers/c00001/identifiers/loyalty_card/{CARD}").get_json()["unlinked"] is False
    assert client.delete(f"/v1/customers/c00002/identifiers/loyalty_card/{CARD}").get_json()["unlinked"] is True
    assert client.post("/v1/customers/lookup", json=link).get_json() == {"customer_id": None, "anonymous": False}
    assert client.delete(f"/v1/customers/c00002/identifiers/passport/{CARD}").status_code == 404
    h = "AB" * 32  # hashed identifiers are case-insensitive everywhere
    assert client.post("/v1/customers/c00004/identifiers", json={"type": "email_sha256", "value": h}).status_code == 201
    assert client.delete(f"/v1/customers/c00004/identifiers/email_sha256/{h.lower()}").status_code == 200


def test_an_anonymous_device_that_logs_in_keeps_its_history(rt_app):
    client = rt_app().test_client()
    device = {"type": "device", "value": "tablet-55aa01"}
    events(client, [event({"identifier": device}, f"i{k:05d}", "view", "app") for k in (3, 7, 11, 15, 19)])
    events(client, [event({"identifier": device}, "i00023", "purchase", "app")])
    new = "newcomer-1"
    before = client.post("/v1/recommendations", json=rec_body(new, "web")).get_json()
    assert before["personalised"] is False
    r = client.post(f"/v1/customers/{new}/identifiers", json={**device, "channel": "app"})
    assert r.get_json()["status"] == "adopted" and r.get_json()["adopted_events"] == 6
    after = client.post("/v1/recommendations", json=rec_body(new, "web")).get_json()
    assert after["personalised"] is True and "i00023" not in [x["item_id"] for x in after["items"]]
    assert sum(x["category"] == "cat3" for x in after["items"]) >= 5
    view = client.get(f"/v1/customers/{new}").get_json()
    assert len(view["recent_activity"]) == 6 and view["identifiers"][0]["brought_history"] is True
    events(client, [event({"identifier": device}, "i00027", "view", "app")])  # the device is the customer now
    assert len(client.get(f"/v1/customers/{new}").get_json()["recent_activity"]) == 7
    client.delete(f"/v1/customers/{new}/identifiers/device/{device['value']}")  # undo: history goes back
    assert [a["item_id"] for a in client.get(f"/v1/customers/{new}").get_json()["recent_activity"]] == ["i00027"]


EMAIL = hashlib.sha256(b"erase.me@example.com").hexdigest()
PHONE = hashlib.sha256(b"+33612345678").hexdigest()


def identifier_needles(type_: str, value: str) -> list[str]:
    """What of an identifier could be left behind: the value, its hashes and its masked form."""
    key_hash = identifier_key(type_, value).split(":", 1)[1]
    return [value, key_hash, hashlib.sha256(value.encode()).hexdigest(), mask_identifier(type_, value).rstrip("…")]


def test_erasure_end_to_end(rt_app, store_kind, request, tmp_path):
    log = str(tmp_path / "events.jsonl")
    app = rt_app(event_log=log) if store_kind == "memory" else rt_app()
    client = app.test_client()
    cid, other = "erase-me-77", "keep-me-78"
    client.post(f"/v1/customers/{cid}/identifiers", json={"type": "loyalty_card", "value": CARD})
    for type_, value in (("email_sha256", EMAIL), ("phone_sha256", PHONE)):
        client.post(f"/v1/customers/{cid}/identifiers", json={"type": type_, "value": value, "channel": "web"})
    client.put(f"/v1/customers/{cid}/consent", json={"personalisation": True, "source": "web", "channel": "web"})
    device = {"type": "device", "value": "old-phone-1"}
    events(client, [event({"identifier": device}, "i00001", "view", "app")])
    anon = client.post("/v1/customers/lookup", json=device).get_json()["customer_id"]
    assert anon.startswith("anon-")
    client.post(f"/v1/customers/{cid}/identifiers", json=device)
    events(client, [event(cid, f"i{k:05d}", "view", "web") for k in range(5)])
    events(client, [event({"identifier": {"type": "email_sha256", "value": EMAIL}}, "i00007", "purchase", "store",
                          store_id="s1", actor={"type": "clerk", "id": "clerk-9"})])
    # a neighbour who stays: the positive control that the scans below read values, keys and files
    other_card = "4970999988887777"
    client.post(f"/v1/customers/{other}/identifiers", json={"type": "loyalty_card", "value": other_card})
    events(client, [event(other, "i00003", "view", "app")])
    r = client.delete(f"/v1/customers/{cid}")
    assert r.status_code == 200 and r.get_json() == {"erased": True, "profiles": 2}
    assert client.delete(f"/v1/customers/{cid}").status_code == 200  # idempotent
    view = client.get(f"/v1/customers/{cid}").get_json()
    assert view["erased"] is True and view["identifiers"] == [] and view["recent_activity"] == []
    assert client.post("/v1/customers/lookup", json={"type": "loyalty_card", "value": CARD}).get_json()[
        "customer_id"] is None
    js = client.post("/v1/recommendations", json=rec_body(cid, "store", "s1")).get_json()
    assert js["personalised"] is False and js["fallback_reason"] == "erased"
    late = events(client, [event(cid, "i00009"), event({"identifier": device}, "i00002")])
    assert late == {"accepted": 0, "duplicates": 0, "erased": 2}
    assert client.put(f"/v1/customers/{cid}/consent",
                      json={"personalisation": True, "source": "web", "channel": "web"}).status_code == 409
    r = client.post(f"/v1/customers/{cid}/identifiers", json=device)
    assert r.status_code == 409 and r.get_json()["error"]["code"] == "customer_erased"
    # nothing of the customer anywhere: every key of the prefix read by type (Redis) or the event log
    # (embedded), and a fresh export: no id, no identifier value, hash or masked form
    needles = [cid, anon, *identifier_needles("loyalty_card", CARD), *identifier_needles("email_sha256", EMAIL),
               *identifier_needles("phone_sha256", PHONE), *identifier_needles("device", device["value"])]
    kept = [other, identifier_key("loyalty_card", other_card).split(":", 1)[1],  # the stored forms of
            mask_identifier("loyalty_card", other_card)]  # the neighbour's card (never the raw value)
    store = app.extensions["recsvc"].store
    if store_kind == "redis":
        prefix = request.getfixturevalue("redis_prefix")
        texts = dump_redis(store.r, match=f"{prefix}:*")
        url = request.getfixturevalue("redis_url")
    else:
        with open(log, encoding="utf-8") as f:
            texts = [(log, f.read())]
        url = f"file://{log}"
    out = tmp_path / "export"
    export_events(url, str(out))
    texts += [(str(p), p.read_text(encoding="utf-8")) for p in sorted(out.rglob("*")) if p.is_file()]
    assert [(where, traces(text, needles)) for where, text in texts if traces(text, needles)] == []
    everything = "\n".join(text for _, text in texts)
    assert traces(everything, kept) == kept  # the scans do see what is there


def test_consent_and_identifier_requests_are_validated(rt_app):
    client = rt_app().test_client()
    r = client.post("/v1/customers/c1/identifiers", json={"type": "passport", "value": ""})
    assert r.status_code == 422 and {d["field"] for d in r.get_json()["error"]["details"]} == {"type", "value"}
    r = client.post("/v1/customers/c1/identifiers", json={"type": "phone_sha256", "value": "0612345678"})
    assert r.status_code == 422
    assert client.post("/v1/customers/lookup", json={"type": "device"}).status_code == 422


def test_lookup_of_an_unknown_identifier_finds_nobody(rt_app):
    r = rt_app().test_client().post("/v1/customers/lookup", json={"type": "loyalty_card", "value": "0000"})
    assert r.status_code == 200 and r.get_json() == {"customer_id": None, "anonymous": False}

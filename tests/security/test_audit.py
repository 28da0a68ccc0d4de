"""The audit trail through the API, on both stores: every customer lookup by identifier (the lookup
endpoint and a clerk's recommendation by identifier), customer view, consent change, identifier link
and unlink and erasure is recorded with who, which store, which customer, when and why; admins read it
with filters, analysts and clerks get 403; identifier values and keys are never in it; after erasure
the entries stay but no longer name the customer."""

from __future__ import annotations

import json

import pytest

from tests.service import bearer

CARD = "4970555566667777"


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def app(request, auth_app):
    if request.param == "redis":
        return auth_app(store_url=request.getfixturevalue("redis_url"))
    return auth_app()


def read(client, key, **q):
    query = "&".join(f"{k}={v}" for k, v in q.items())
    r = client.get("/v1/audit" + (f"?{query}" if query else ""), headers=bearer(key))
    assert r.status_code == 200, r.get_json()
    return r.get_json()["entries"]


def test_every_access_to_customer_data_is_recorded_and_readable_by_admins(app, keys):
    client = app.test_client()
    clerk, admin = bearer(keys["clerk"]), bearer(keys["admin"])
    reason = {"X-Audit-Reason": "customer at the till asked"}
    assert client.post("/v1/customers/c00005/identifiers", json={"type": "loyalty_card", "value": CARD},
                       headers={**clerk, **reason}).status_code == 201
    assert client.post("/v1/customers/lookup", json={"type": "loyalty_card", "value": CARD},
                       headers=clerk).get_json()["customer_id"] == "c00005"
    assert client.post("/v1/customers/lookup", json={"type": "loyalty_card", "value": "0000000000"},
                       headers=clerk).get_json()["customer_id"] is None
    r = client.post("/v1/recommendations", headers=clerk, json={
        "customer": {"identifier": {"type": "loyalty_card", "value": CARD}},
        "context": {"channel": "store", "store_id": "s1"}})
    assert r.status_code == 200 and r.get_json()["customer_id"] == "c00005"
    # a storefront's recommendation by identifier (a device on every page view) is not a lookup by a person
    assert client.post("/v1/recommendations", headers=bearer(keys["storefront"]), json={
        "customer": {"identifier": {"type": "loyalty_card", "value": CARD}}, "context": {"channel": "web"}}
    ).status_code == 200
    assert client.get("/v1/customers/c00005", headers=clerk).status_code == 200
    assert client.put("/v1/customers/c00005/consent", headers=clerk, json={
        "personalisation": False, "source": "clerk", "channel": "store"}).status_code == 200
    assert client.delete(f"/v1/customers/c00005/identifiers/loyalty_card/{CARD}", headers=clerk).status_code == 200
    refused = client.get("/v1/customers/c00006", headers=bearer(keys["storefront"]))
    assert refused.status_code == 403  # refused requests read nothing and are not entries

    entries = read(client, keys["admin"])
    assert [e["action"] for e in entries] == [
        "identifier.unlink", "consent.change", "customer.view", "recommendations.by_identifier",
        "customer.lookup", "customer.lookup", "identifier.link"]
    assert {e["key_name"] for e in entries} == {"clerk"} and {e["role"] for e in entries} == {"clerk"}
    assert {e["key_store_id"] for e in entries} == {"s1"} and all(e["at"].endswith("Z") for e in entries)
    assert all(e["request_id"] and e["why"] for e in entries)
    by = {(e["action"], e.get("found")): e for e in entries}
    assert by[("customer.lookup", False)]["customer_id"] is None
    assert by[("customer.lookup", True)]["customer_id"] == "c00005"
    assert by[("customer.lookup", True)]["identifier_type"] == "loyalty_card"
    assert by[("customer.lookup", True)]["endpoint"] == "POST /v1/customers/lookup"
    assert by[("recommendations.by_identifier", True)]["store_id"] == "s1"
    assert by[("consent.change", None)]["personalisation"] is False
    assert by[("identifier.link", None)]["why"].endswith(": customer at the till asked")
    assert by[("identifier.unlink", None)]["unlinked"] is True
    text = json.dumps(entries)
    assert CARD not in text and CARD[-4:] not in text and not any(k.split("_", 2)[2] in text for k in keys.values())

    # filters
    assert [e["action"] for e in read(client, keys["admin"], action="consent.change")] == ["consent.change"]
    assert len(read(client, keys["admin"], customer_id="c00005")) == 6  # the miss names nobody
    assert len(read(client, keys["admin"], key_id=keys["clerk"].split("_")[1], limit=2)) == 2
    assert read(client, keys["admin"], store_id="s2") == []
    assert read(client, keys["admin"], since="2100-01-01") == []
    r = client.get("/v1/audit?limit=0", headers=admin)
    assert r.status_code == 422 and r.get_json()["error"]["details"][0]["field"] == "limit"
    # only admins
    for who in ("analyst", "clerk", "storefront"):
        r = client.get("/v1/audit", headers=bearer(keys[who]))
        assert r.status_code == 403 and r.get_json()["error"]["code"] == "forbidden"


def test_erasure_keeps_the_entries_but_they_no_longer_name_the_customer(app, keys):
    client = app.test_client()
    clerk = bearer(keys["clerk"])
    client.get("/v1/customers/c00007", headers=clerk)
    client.get("/v1/customers/c00008", headers=clerk)
    assert client.delete("/v1/customers/c00007", headers=clerk).status_code == 403  # erasure: admins only
    assert client.delete("/v1/customers/c00007", headers=bearer(keys["admin"])).status_code == 200
    entries = read(client, keys["admin"])
    assert [(e["action"], e["customer_id"], e["customer_erased"]) for e in entries] == [
        ("customer.erase", None, True), ("customer.view", "c00008", False), ("customer.view", None, True)]
    assert entries[0]["role"] == "admin"
    assert read(client, keys["admin"], customer_id="c00007") == []
    assert "c00007" not in json.dumps(entries)

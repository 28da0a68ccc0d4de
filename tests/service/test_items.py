"""GET /v1/items/{item_id}/similar."""

from __future__ import annotations

from recsvc.schemas.items import SimilarResponseSchema


def test_similar_items_with_availability(client):
    r = client.get("/v1/items/i00004/similar?n=5&channel=store&store_id=s1&locale=en-GB")
    assert r.status_code == 200
    js = r.get_json()
    assert SimilarResponseSchema().validate(js) == {}
    assert js["item_id"] == "i00004" and len(js["items"]) == 5
    assert "i00004" not in [x["item_id"] for x in js["items"]]
    assert all(x["category"] == "cat0" for x in js["items"][:3])  # neighbours share the category here
    assert all(x["availability"]["store_id"] == "s1" and x["reasons"] for x in js["items"])


def test_similar_defaults_and_parity(client):
    web = client.get("/v1/items/i00004/similar").get_json()["items"]
    store = client.get("/v1/items/i00004/similar?channel=store").get_json()["items"]
    assert len(web) == 10 and [x["item_id"] for x in web] == [x["item_id"] for x in store]


def test_unknown_item_is_404(client):
    r = client.get("/v1/items/nope/similar")
    assert r.status_code == 404
    assert r.get_json()["error"]["details"] == [{"field": "item_id", "reason": "unknown item"}]


def test_bad_query_is_422(client):
    for q, field in (
        ("n=0", "n"),
        ("n=abc", "n"),
        ("n=1000", "n"),
        ("channel=fax", "channel"),
        ("locale=%00", "locale"),
    ):
        r = client.get(f"/v1/items/i00001/similar?{q}")
        assert r.status_code == 422, q
        assert field in [d["field"] for d in r.get_json()["error"]["details"]]

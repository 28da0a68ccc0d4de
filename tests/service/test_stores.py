"""PUT/GET /v1/stores/{store_id}/stock."""

from __future__ import annotations

import pytest


def test_put_then_get_live_stock(client):
    r = client.put(
        "/v1/stores/s9/stock",
        json={"items": [{"item_id": "i00001", "quantity": 3}, {"item_id": "i00002", "quantity": 0}]},
    )
    assert r.status_code == 200
    assert r.get_json() == {"store_id": "s9", "updated": 2, "version": 1}
    js = client.get("/v1/stores/s9/stock").get_json()
    assert js == {
        "store_id": "s9",
        "source": "live",
        "items": [{"item_id": "i00001", "quantity": 3}, {"item_id": "i00002", "quantity": 0}],
    }
    js = client.get("/v1/stores/s9/stock?item_id=i00001&item_id=i00005").get_json()
    assert js["items"] == [{"item_id": "i00001", "quantity": 3}, {"item_id": "i00005", "quantity": 0}]
    r = client.put(
        "/v1/stores/s9/stock", json={"items": [{"item_id": "i00005", "quantity": 1}], "replace": True}
    )
    assert r.get_json()["version"] == 2
    assert client.get("/v1/stores/s9/stock").get_json()["items"] == [{"item_id": "i00005", "quantity": 1}]


def test_model_snapshot_until_live_stock_arrives(client):
    js = client.get("/v1/stores/s1/stock?item_id=i00002&item_id=i00003").get_json()
    assert js["source"] == "model" and js["items"] == [
        {"item_id": "i00002", "quantity": 2},
        {"item_id": "i00003", "quantity": 0},
    ]
    r = client.get("/v1/stores/nowhere/stock")
    assert r.status_code == 404 and r.get_json()["error"]["code"] == "not_found"


def test_large_update(client):
    items = [{"item_id": f"i{k % 60:05d}", "quantity": k} for k in range(10000)]
    assert client.put("/v1/stores/big/stock", json={"items": items}).status_code == 200
    assert client.put("/v1/stores/big/stock", json={"items": items + items[:1]}).status_code == 422


@pytest.mark.parametrize(
    "body, field",
    [
        (
            {"items": [{"item_id": "i00001", "quantity": 1}, {"item_id": "zz", "quantity": 1}]},
            "items[1].item_id",
        ),
        ({"items": [{"item_id": "i00001", "quantity": -1}]}, "items[0].quantity"),
        ({"items": [{"item_id": "i00001", "quantity": 1.5}]}, "items[0].quantity"),
        ({"items": [{"item_id": "i00001", "quantity": 10**12}]}, "items[0].quantity"),
        ({"items": [{"item_id": "i00001"}]}, "items[0].quantity"),
        ({"items": {"item_id": "i00001"}}, "items"),
        ({}, "items"),
    ],
)
def test_bad_stock_updates_are_422(client, body, field):
    r = client.put("/v1/stores/s1/stock", json=body)
    assert r.status_code == 422
    assert field in [d["field"] for d in r.get_json()["error"]["details"]]


def test_store_ids_with_odd_characters(client):
    assert client.put("/v1/stores/%E2%9C%93-store/stock", json={"items": []}).status_code == 200
    assert client.get("/v1/stores/a%01b/stock").status_code == 404

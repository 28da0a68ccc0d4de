"""GET /v1/models, /v1/models/current, POST /v1/models/reload, and following a moved alias."""

from __future__ import annotations

import datetime as dt
import os
import time

from recsvc.artifact.registry import Registry
from tests.modelkit import make_model


def later_model(models_dir: str, alias: str | None = None, seed: int = 1) -> str:
    when = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(hours=seed)
    return make_model(models_dir, alias=alias, when=when, seed=seed)


def corrupt_model(models_dir: str) -> str:
    mid = later_model(models_dir, seed=9)
    with open(os.path.join(models_dir, mid, "item_factors.npy"), "r+b") as f:
        f.seek(-4, os.SEEK_END)
        f.write(b"\x00\x01\x02\x03")
    return mid


def test_list_and_current(client, models_dir):
    first = Registry(models_dir).alias("champion")
    second = later_model(models_dir)
    js = client.get("/v1/models").get_json()
    assert [m["model_id"] for m in js["models"]] == sorted([first, second])
    assert js["aliases"] == {"champion": first} and js["serving"] == first
    entry = {m["model_id"]: m for m in js["models"]}[first]
    assert entry["aliases"] == ["champion"] and entry["serving"] is True and entry["learner"] == "als"
    cur = client.get("/v1/models/current").get_json()
    assert cur["model_id"] == first and cur["items"] == 60 and cur["metrics"]["overall"]["ndcg@10"] == 0.3


def test_reload_swaps_and_refuses_bad_models(client, models_dir):
    first = Registry(models_dir).alias("champion")
    second = later_model(models_dir)
    r = client.post("/v1/models/reload", json={"model": second})
    assert r.status_code == 200
    assert r.get_json() == {"model_id": second, "previous_model_id": first, "changed": True, "ref": second}
    assert (
        client.post("/v1/recommendations", json={"context": {"channel": "web"}}).get_json()["model_id"]
        == second
    )
    r = client.post("/v1/models/reload", json={"model": "no-such-model"})
    assert r.status_code == 404 and r.get_json()["error"]["code"] == "unknown_model"
    bad = corrupt_model(models_dir)
    r = client.post("/v1/models/reload", json={"model": bad})
    assert r.status_code == 409 and r.get_json()["error"]["code"] == "model_refused"
    assert "checksum" in r.get_json()["error"]["message"]
    assert client.get("/v1/models/current").get_json()["model_id"] == second
    ready = client.get("/readyz").get_json()
    assert ready["ready"] is True and "checksum" in ready["last_error"]
    r = client.post("/v1/models/reload")  # no body: back to the configured alias
    assert r.get_json()["model_id"] == first and r.get_json()["ref"] == "champion"
    assert client.post("/v1/models/reload", json={}).get_json()["changed"] is False
    for bad_ref in ("../etc", "/tmp", "a b", "a\x00"):
        assert client.post("/v1/models/reload", json={"model": bad_ref}).status_code == 422


def test_a_moved_alias_is_followed_on_request_boundaries(make_app, models_dir):
    client = make_app(reload_poll_s=0.01).test_client()
    second = later_model(models_dir)
    Registry(models_dir).set_alias("champion", second)
    time.sleep(0.02)
    assert client.get("/healthz").status_code == 200  # the poll runs before this request
    assert client.get("/v1/models/current").get_json()["model_id"] == second
    bad = corrupt_model(models_dir)
    Registry(models_dir).set_alias("champion", bad)
    time.sleep(0.02)
    client.get("/healthz")
    assert client.get("/v1/models/current").get_json()["model_id"] == second  # refused, still serving


def test_sibling_workers_follow_a_reload(make_app, models_dir, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    a = make_app(reload_poll_s=0.01, runtime_dir=str(run)).test_client()
    b = make_app(reload_poll_s=0.01, runtime_dir=str(run)).test_client()
    second = later_model(models_dir)
    assert a.post("/v1/models/reload", json={"model": second}).status_code == 200
    time.sleep(0.02)
    assert b.get("/v1/models/current").get_json()["model_id"] == second
    a.post("/v1/models/reload")
    time.sleep(0.02)
    assert b.get("/v1/models/current").get_json()["model_id"] == Registry(models_dir).alias("champion")


def test_no_model_means_not_ready(make_app, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    client = make_app(models_dir=str(empty)).test_client()
    r = client.get("/readyz")
    assert r.status_code == 503
    js = r.get_json()
    assert js["ready"] is False and js["model_id"] is None and js["error"]["code"] == "not_ready"
    assert "champion" in js["error"]["message"]
    for resp in (
        client.post("/v1/recommendations", json={"context": {"channel": "web"}}),
        client.get("/v1/models/current"),
        client.get("/v1/items/i1/similar"),
    ):
        assert resp.status_code == 503 and resp.get_json()["error"]["code"] == "model_not_ready"
    make_model(str(empty))
    assert client.post("/v1/models/reload").status_code == 200
    assert client.get("/readyz").status_code == 200

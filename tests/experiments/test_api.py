"""The whole path through the API: declare an experiment, serve variants on every channel from two
service instances on one Redis, record events, read the report (JSON and PNG) from the service and from
`recsvc-train experiments report`, change shares, restart, stop. Plus the embedded (memory) store."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from recsvc.core.types import CHANNELS
from recsvc.experiments.backend import assign_key, defs_key, shown_key
from recsvc.schemas.recommendations import RecommendationResponseSchema
from tests.modelkit import make_model

CUSTOMERS = [f"c{k:05d}" for k in range(40)]


def experiment_body(**kw):
    body = {"experiment_id": "e2e", "description": "challenger with 4 offers vs champion",
            "variants": [{"name": "control", "share": 0.5, "control": True},
                         {"name": "B", "share": 0.5, "model": "challenger", "options": {"n": 4}}],
            "attribution_window_hours": 48}
    body.update(kw)
    return body


def rec(client, customer=None, channel="web", **ctx):
    body = {"context": {"channel": channel, **ctx}, "n": 6}
    if customer is not None:
        body["customer"] = {"customer_id": customer} if isinstance(customer, str) else customer
    r = client.post("/v1/recommendations", json=body)
    assert r.status_code == 200, r.get_json()
    js = r.get_json()
    assert RecommendationResponseSchema().validate(js) == {}
    return js


def post_events(client, events):
    r = client.post("/v1/events", json={"events": events})
    assert r.status_code == 202, r.get_json()
    return r.get_json()


def ev(customer, kind, item, channel, rid=None, value=None, at=None):
    e = {"event_id": uuid.uuid4().hex, "customer": {"customer_id": customer}, "item_id": item, "event": kind,
         "channel": channel, "timestamp": at or time.time()}
    if rid:
        e["recommendation_id"] = rid
    if value is not None:
        e["value"] = value
    return e


@pytest.fixture
def challenger(models_dir):
    return make_model(models_dir, learner="bpr", alias="challenger", seed=7)


@pytest.mark.redis
def test_an_experiment_end_to_end_on_two_instances(make_app, redis_url, challenger, models_dir, tmp_path):
    app1 = make_app(store_url=redis_url, experiments_poll_s=0)
    app2 = make_app(store_url=redis_url, experiments_poll_s=0)
    c1, c2 = app1.test_client(), app2.test_client()
    champion = app1.extensions["recsvc"].holder.model.model_id

    r = c1.post("/v1/experiments", json=experiment_body())
    assert r.status_code == 201, r.get_json()
    assert r.get_json()["state"] == "running" and r.get_json()["salt"] == "e2e"
    assert c2.post("/v1/experiments", json=experiment_body()).status_code == 409
    bad = c1.post("/v1/experiments", json=experiment_body(
        experiment_id="nomodel", variants=[{"name": "control", "share": 0.5, "control": True},
                                           {"name": "B", "share": 0.5, "model": "no-such-alias"}]))
    assert bad.status_code == 422 and bad.get_json()["error"]["details"][0]["field"] == "variants[1].model"
    assert [e["experiment_id"] for e in c2.get("/v1/experiments").get_json()["experiments"]] == ["e2e"]

    # every customer has one variant on every channel and on both instances
    variant: dict[str, str] = {}
    shown: dict[str, dict] = {}
    for k, cust in enumerate(CUSTOMERS):
        seen = set()
        for j, ch in enumerate(CHANNELS):
            js = rec((c1, c2)[(k + j) % 2], cust, ch, store_id="s1")
            assert js["experiment_id"] == "e2e"
            seen.add(js["variant"])
            assert js["model_id"] == (challenger if js["variant"] == "B" else champion)
            assert len(js["items"]) == (4 if js["variant"] == "B" else 6)
            shown[(cust, ch)] = js
        assert len(seen) == 1, (cust, seen)
        variant[cust] = seen.pop()
    assert set(variant.values()) == {"control", "B"}
    anonymous = rec(c1, None, "web")
    assert anonymous["variant"] is None and anonymous["experiment_id"] is None
    device = rec(c2, {"identifier": {"type": "device", "value": "dev-e2e"}}, "app")
    assert device["experiment_id"] == "e2e" and device["variant"] in ("control", "B")
    assert rec(c1, {"identifier": {"type": "device", "value": "dev-e2e"}}, "web")["variant"] == device["variant"]

    # events: clicks with the list's id, purchases in store of items offered on the app (no id)
    b = [c for c in CUSTOMERS if variant[c] == "B"]
    ctl = [c for c in CUSTOMERS if variant[c] == "control"]
    events = []
    for c in b[:6]:
        app_list = rec(c2, c, "app", store_id="s1")  # the latest list before the purchase (last touch)
        events.append(ev(c, "click", app_list["items"][0]["item_id"], "app", rid=app_list["recommendation_id"]))
        events.append(ev(c, "purchase", app_list["items"][1]["item_id"], "store", value=40.0))
    for c in ctl[:2]:
        web_list = shown[(c, "web")]
        events.append(ev(c, "purchase", web_list["items"][0]["item_id"], "web",
                         rid=web_list["recommendation_id"], value=25.0))
    events.append(ev(ctl[2], "purchase", "i00059", "store", value=99.0, at=time.time() + 3 * 86400))  # too late
    assert post_events(c2, events)["accepted"] == len(events)

    rep = c1.get("/v1/experiments/e2e/report").get_json()
    assert rep["customers"] == len(CUSTOMERS) + 1  # and the device
    assert rep["variants"]["B"]["overall"]["purchases"] == 6 and rep["variants"]["B"]["overall"]["clicks"] == 6
    assert rep["variants"]["control"]["overall"]["purchases"] == 2
    assert rep["variants"]["B"]["overall"]["revenue"] == 240.0
    cells = {(x["shown"], x["bought"]): x["purchases"] for x in rep["shown_bought"]["B"]}
    assert cells[("app", "store")] >= 1  # shown on the app, bought in store
    assert rep["variants"]["B"]["app"]["impressions"] == len(b) + 6 + (device["variant"] == "B")
    assert rep["attribution"]["purchases_by_recommendation_id"] == 2
    assert rep["tests"]["conversion"].startswith("two-proportion z-test")
    png = c2.get("/v1/experiments/e2e/report?format=png")
    assert png.status_code == 200 and png.mimetype == "image/png" and png.data[:8] == b"\x89PNG\r\n\x1a\n"
    assert c1.get("/v1/experiments/e2e/report?format=pdf").status_code == 422

    # recsvc-train reads the same keys and reports the same numbers
    from training.__main__ import main as train
    from training.experiments import compute_report

    cli = compute_report(redis_url, "e2e", models_dir=models_dir)
    for k in ("customers", "variants", "srm", "shown_bought", "attribution", "flags", "verdict"):
        assert cli[k] == rep[k], k
    out = tmp_path / "report"
    assert train(["experiments", "report", "e2e", "--store-url", redis_url, "--out", str(out),
                  "--models-dir", models_dir]) == 0
    assert json.loads((out / "report.json").read_text())["variants"] == rep["variants"]
    assert (out / "report.png").read_bytes()[:4] == b"\x89PNG" and "verdict B" in (out / "report.md").read_text()

    # nothing in the experiment's keys names a customer
    r = app1.extensions["recsvc"].store.r
    prefix = app1.extensions["recsvc"].store.prefix
    dump = json.dumps([r.hgetall(assign_key(prefix, "e2e")), r.xrange(shown_key(prefix, "e2e")),
                       r.hgetall(defs_key(prefix))])
    assert not any(c in dump for c in CUSTOMERS) and "dev-e2e" not in dump

    # new shares: customers already assigned keep their variant, also on a restarted instance
    put = c2.put("/v1/experiments/e2e", json={"variants": [{"name": "control", "share": 0.1},
                                                            {"name": "B", "share": 0.9}]})
    assert put.status_code == 200 and len(put.get_json()["share_history"]) == 2
    c3 = make_app(store_url=redis_url, experiments_poll_s=0).test_client()
    assert {c: rec(c3, c, "call_center")["variant"] for c in CUSTOMERS} == variant

    # stop: everyone back on the champion, on every instance; the report stays
    assert c3.post("/v1/experiments/e2e/stop").get_json()["state"] == "stopped"
    after = rec(c1, b[0], "app")
    assert after["variant"] is None and after["experiment_id"] is None and after["model_id"] == champion
    kept = c2.get("/v1/experiments/e2e/report").get_json()
    assert kept["status"] == "stopped" and kept["variants"]["B"]["overall"]["purchases"] == 6
    assert c1.put("/v1/experiments/e2e", json={"end": None}).status_code == 409
    assert c1.get("/v1/experiments/nope").status_code == 404


def test_the_embedded_store_runs_experiments_in_process(make_app, tmp_path):
    path = tmp_path / "experiments.json"
    path.write_text(json.dumps({"experiments": [{
        "experiment_id": "diversity", "eligibility": {"channels": ["web", "app", "store"]},
        "variants": [{"name": "control", "share": 0.5, "control": True},
                     {"name": "capped", "share": 0.5, "options": {"max_per_category": 1}}]}]}))
    app = make_app(experiments_file=str(path))
    c = app.test_client()
    got = {cust: rec(c, cust, "web") for cust in CUSTOMERS[:20]}
    assert {js["variant"] for js in got.values()} == {"control", "capped"}
    for js in got.values():
        cats = [x["category"] for x in js["items"]]
        if js["variant"] == "capped":  # one per category first (4 in the test catalogue), then the rest
            assert len(set(cats[:4])) == 4
    assert rec(c, CUSTOMERS[0], "call_center")["variant"] is None  # not an eligible channel
    cust = next(k for k, js in got.items() if js["variant"] == "capped")
    item = got[cust]["items"][0]["item_id"]
    post_events(c, [ev(cust, "purchase", item, "store", value=12.5)])
    rep = c.get("/v1/experiments/diversity/report").get_json()
    assert rep["customers"] == 20 and rep["variants"]["capped"]["overall"]["purchases"] == 1
    assert rep["shown_bought"]["capped"] == [{"shown": "web", "bought": "store", "purchases": 1, "revenue": 12.5}]


def test_customers_without_consent_or_erased_are_not_enrolled(make_app):
    c = make_app(consent_default=False).test_client()
    assert c.post("/v1/experiments", json=experiment_body(variants=[
        {"name": "control", "share": 0.5, "control": True},
        {"name": "B", "share": 0.5, "options": {"n": 3}}])).status_code == 201
    assert rec(c, CUSTOMERS[0], "web")["variant"] is None  # no recorded choice, default denied
    r = c.put(f"/v1/customers/{CUSTOMERS[0]}/consent", json={"personalisation": True, "source": "test",
                                                             "channel": "web"})
    assert r.status_code in (200, 204), r.get_json()
    assert rec(c, CUSTOMERS[0], "web")["variant"] in ("control", "B")

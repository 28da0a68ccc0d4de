"""`recsvc demo` on a work folder that already holds a trained model (the reuse path; training itself
runs as `python -m training` subprocesses and is covered by the training tests): it seeds the
in-memory store from the demo data, makes and prints one API key per role (auth on, the default), prints
the URLs and curl examples, and those examples work with the printed keys."""

from __future__ import annotations

import json
import re
import time

import pytest

from tests.modelkit import make_model
from tests.service import PYTHON, Server, bearer, free_port, request, server_env

pytestmark = pytest.mark.slow


def demo_folder(root) -> str:
    work = root / "demo"
    (work / "data").mkdir(parents=True)
    make_model(str(work / "models"))
    (work / "data" / "customers.csv").write_text(
        "customer_id,segment,loyalty_card,email_sha256,consent_personalisation\n"
        "c00003,family,4970000000000003," + "ab" * 32 + ",true\n"
        "c00004,young,4970000000000004,,false\n"
    )
    (work / "data" / "interactions.csv").write_text(  # the last week is live, what came before was trained on
        "event_id,timestamp,customer_id,item_id,event,channel,store_id\n"
        "e1,2026-10-01T10:00:00Z,c00003,i00005,view,web,\n"
        "e2,2026-10-28T10:00:00Z,c00003,i00006,view,app,\n"
        "e3,2026-10-31T18:00:00Z,c00003,i00007,purchase,store,s1\n"
    )
    (work / "data" / "stock.csv").write_text(
        "store_id,item_id,quantity\ns1,i00001,4\ns1,i00002,0\ns2,i00003,1\n"
    )
    return str(work)


def test_demo_serves_the_printed_examples(tmp_path):
    work = demo_folder(tmp_path)
    port = free_port()
    server = Server(
        [PYTHON, "-m", "recsvc", "demo", "--port", str(port), "--workdir", work],
        server_env(str(tmp_path / "unused"), RECSVC_AUTH="on"),
        str(tmp_path),
        port,
        str(tmp_path / "demo.log"),
    )
    try:
        server.wait_ready(timeout=60)
        deadline = time.monotonic() + 10
        while "try:" not in server.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        log = server.log()
        assert f"http://127.0.0.1:{port}/docs" in log and f"http://127.0.0.1:{port}/clerk/" in log
        assert "reusing model" in log and "3 identifiers" in log  # 2 cards + 1 email
        keys = dict(re.findall(r"^  (storefront|clerk|analyst|admin): +(rk_\S+)", log, re.MULTILINE))
        assert sorted(keys) == ["admin", "analyst", "clerk", "storefront"], log
        assert "(store s1: sign in to the clerk page with it)" in log
        examples = re.findall(r"curl -s -X POST (\S+) -H 'Authorization: Bearer (\S+)' "
                              r"-H 'Content-Type: application/json' -d '(\{.*\})'", log)
        assert len(examples) == 3
        answers = []
        for url, key, body in examples:
            assert key == keys["storefront"]
            assert request("POST", url, json.loads(body))[0] == 401  # the key is needed
            status, js = request("POST", url, json.loads(body), headers=bearer(key))
            assert status == 200 and js["items"], js
            answers.append(js)
        assert answers[1]["customer_id"] == "c00003" and answers[1]["personalised"] is True
        assert answers[2]["customer_id"] == "c00003"  # found by loyalty card
        status, js = request("GET", server.base + "/v1/stores/s1/stock?item_id=i00001", headers=bearer(keys["clerk"]))
        assert js["source"] == "live" and js["items"] == [{"item_id": "i00001", "quantity": 4}]
        assert request("GET", server.base + "/v1/models/current", headers=bearer(keys["analyst"]))[0] == 200
        assert request("GET", server.base + "/v1/audit", headers=bearer(keys["admin"]))[0] == 200
        status, js = request(
            "POST",
            server.base + "/v1/recommendations",
            {"customer": {"customer_id": "c00004"}, "context": {"channel": "web"}},
            headers=bearer(keys["storefront"]),
        )
        assert js["fallback_reason"] == "no_consent"  # consent imported from customers.csv
        assert "2 live events of the last 7 days" in log
        status, js = request("GET", server.base + "/v1/customers/c00003", headers=bearer(keys["clerk"]))
        seen = {(a["item_id"], a["event"], a["channel"]) for a in js["recent_activity"]}
        assert seen == {("i00006", "view", "app"), ("i00007", "purchase", "store")}, js
    finally:
        server.stop()

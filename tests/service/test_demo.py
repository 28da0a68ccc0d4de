"""`recsvc demo` on a work folder that already holds a trained model (the reuse path; training itself
runs as `python -m training` subprocesses and is covered by the training tests): it seeds the
in-memory store from the demo data, prints the URLs and curl examples, and those examples work."""

from __future__ import annotations

import json
import re
import time

import pytest

from tests.modelkit import make_model
from tests.service import PYTHON, Server, free_port, request, server_env

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
    (work / "data" / "stock.csv").write_text(
        "store_id,item_id,quantity\ns1,i00001,4\ns1,i00002,0\ns2,i00003,1\n"
    )
    return str(work)


def test_demo_serves_the_printed_examples(tmp_path):
    work = demo_folder(tmp_path)
    port = free_port()
    server = Server(
        [PYTHON, "-m", "recsvc", "demo", "--port", str(port), "--workdir", work],
        server_env(str(tmp_path / "unused")),
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
        examples = re.findall(r"curl -s -X POST (\S+) -H 'Content-Type: application/json' -d '(\{.*\})'", log)
        assert len(examples) == 3
        answers = []
        for url, body in examples:
            status, js = request("POST", url, json.loads(body))
            assert status == 200 and js["items"], js
            answers.append(js)
        assert answers[1]["customer_id"] == "c00003" and answers[1]["personalised"] is True
        assert answers[2]["customer_id"] == "c00003"  # found by loyalty card
        status, js = request("GET", server.base + "/v1/stores/s1/stock?item_id=i00001")
        assert js["source"] == "live" and js["items"] == [{"item_id": "i00001", "quantity": 4}]
        status, js = request(
            "POST",
            server.base + "/v1/recommendations",
            {"customer": {"customer_id": "c00004"}, "context": {"channel": "web"}},
        )
        assert js["fallback_reason"] == "no_consent"  # consent imported from customers.csv
    finally:
        server.stop()

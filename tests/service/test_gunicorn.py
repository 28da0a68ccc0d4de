"""A real gunicorn (2 sync workers, the shipped gunicorn.conf.py) on a free port with the real Redis:
requests work on both workers, /metrics adds the workers up, and model swaps under concurrent load
(POST /v1/models/reload, a moved `champion` alias) fail no request."""

from __future__ import annotations

import re
import threading
import time

import pytest

from recsvc.artifact.registry import Registry
from tests.service import GUNICORN, GUNICORN_CONF, Server, free_port, request, server_env
from tests.service.test_models import corrupt_model, later_model

pytestmark = [pytest.mark.redis, pytest.mark.slow]


@pytest.fixture
def server(models_dir, redis_url, tmp_path):
    port = free_port()
    env = server_env(models_dir, redis_url, RECSVC_RELOAD_POLL_S="0.2")
    s = Server(
        [GUNICORN, "-c", GUNICORN_CONF, "recsvc.wsgi:app", "--bind", f"127.0.0.1:{port}", "--workers", "2"],
        env,
        str(tmp_path),
        port,
        str(tmp_path / "gunicorn.log"),
    )
    try:
        s.wait_ready()
        both_workers_up(s)
        yield s
    finally:
        s.stop()


def both_workers_up(server, timeout: float = 30.0) -> None:
    """/readyz answers once one worker is up; wait for the second (each reports its model in /metrics)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, text = request("GET", server.base + "/metrics")
        if re.search(r'recsvc_model_info\{model_id="[^"]+"\} 2\.0', text):
            return
        time.sleep(0.1)
    raise AssertionError(f"the second worker did not come up:\n{server.log()[-3000:]}")


def served_everywhere(server, model_id: str, timeout: float = 15.0) -> bool:
    """True once 12 answers in a row (any worker) come from model_id."""
    deadline, streak = time.monotonic() + timeout, 0
    while time.monotonic() < deadline and streak < 12:
        _, js = request("GET", server.base + "/v1/models/current")
        streak = streak + 1 if js.get("model_id") == model_id else 0
        if streak < 12:
            time.sleep(0.02)
    return streak >= 12


def test_requests_stock_and_metrics_across_workers(server):
    status, js = request(
        "PUT",
        server.base + "/v1/stores/s1/stock",
        {"items": [{"item_id": "i00000", "quantity": 5}], "replace": True},
    )
    assert status == 200
    body = {"customer": {"customer_id": "c00002"}, "context": {"channel": "store", "store_id": "s1"}, "n": 60}
    for _ in range(20):  # both workers answer some: each reads the stock from Redis
        status, js = request("POST", server.base + "/v1/recommendations", body)
        assert status == 200 and js["personalised"] is True
        avail = {x["item_id"]: x["availability"]["quantity"] for x in js["items"]}
        assert avail["i00000"] == 5 and set(avail.values()) == {0, 5}
    _, text = request("GET", server.base + "/metrics")
    assert 'recsvc_requests_total{channel="store",endpoint="/v1/recommendations",status="200"} 20.0' in text
    status, js = request("GET", server.base + "/x" * 6000)  # gunicorn's own 4xx, in the JSON error shape
    assert 400 <= status < 500 and js["error"]["code"] and js["request_id"]


def test_model_swaps_under_load_fail_no_request(server, models_dir):
    first = Registry(models_dir).alias("champion")
    second = later_model(models_dir)
    stop = threading.Event()
    results: list[tuple[int, str | None]] = []
    lock = threading.Lock()

    def load(k: int) -> None:
        body = {
            "customer": {"customer_id": f"c{k:05d}"},
            "context": {"channel": ("web", "app", "store", "call_center")[k % 4], "store_id": "s2"},
            "n": 10,
        }
        while not stop.is_set():
            try:
                status, js = request("POST", server.base + "/v1/recommendations", body, timeout=10)
                got = (status, js.get("model_id") if isinstance(js, dict) else None)
            except OSError as e:  # a refused or reset connection is a failed request too
                got = (0, repr(e))
            with lock:
                results.append(got)

    threads = [threading.Thread(target=load, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.3)
        status, js = request("POST", server.base + "/v1/models/reload", {"model": second})
        assert status == 200 and js["model_id"] == second
        assert served_everywhere(server, second)
        bad = corrupt_model(models_dir)
        status, js = request("POST", server.base + "/v1/models/reload", {"model": bad})
        assert status == 409 and js["error"]["code"] == "model_refused"
        status, js = request("POST", server.base + "/v1/models/reload")  # back to the champion alias
        assert status == 200 and js["model_id"] == first
        assert served_everywhere(server, first)
        Registry(models_dir).set_alias("champion", second)  # as `recsvc-train models promote` does
        assert served_everywhere(server, second)
        time.sleep(0.2)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    statuses = {s for s, _ in results}
    assert statuses == {200}, [r for r in results if r[0] != 200][:5]
    assert {m for _, m in results} == {first, second}
    assert len(results) > 50
    assert "Traceback" not in server.log()

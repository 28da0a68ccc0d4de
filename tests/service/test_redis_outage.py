"""Redis stopped and restarted under a running app (a redis-server this test starts on a free port):
recommendations keep answering from the model alone while it is down, and personalise again once it
is back, with no restart of the service."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest
import redis

from tests.service import free_port

pytestmark = [pytest.mark.redis, pytest.mark.slow]
BODY = {"customer": {"customer_id": "c00003"}, "context": {"channel": "web"}}


def start_redis(port: int, workdir) -> subprocess.Popen:
    p = subprocess.Popen(
        [
            shutil.which("redis-server"),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port, socket_connect_timeout=0.2)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            client.ping()
            client.close()
            return p
        except redis.exceptions.ConnectionError:
            time.sleep(0.05)
    p.kill()
    raise RuntimeError("redis-server did not start")


def stop_redis(p: subprocess.Popen) -> None:
    p.terminate()
    p.wait(timeout=15)


def test_recommendations_survive_a_redis_restart(make_app, tmp_path):
    port = free_port()
    server = start_redis(port, tmp_path)
    try:
        client = make_app(
            store_url=f"redis://127.0.0.1:{port}/0?prefix=outage", redis_timeout_ms=200
        ).test_client()
        assert client.post("/v1/recommendations", json=BODY).get_json()["personalised"] is True
        stop_redis(server)
        for _ in range(3):
            r = client.post("/v1/recommendations", json=BODY)
            js = r.get_json()
            assert (
                r.status_code == 200
                and js["fallback_reason"] == "state_unavailable"
                and len(js["items"]) == 10
            )
        assert client.get("/readyz").status_code == 503
        server = start_redis(port, tmp_path)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            js = client.post("/v1/recommendations", json=BODY).get_json()
            if js["personalised"]:
                break
            time.sleep(0.1)
        assert js["personalised"] is True and js["fallback_reason"] is None
        assert client.get("/readyz").status_code == 200
    finally:
        if server.poll() is None:
            stop_redis(server)


def test_a_redis_still_loading_its_data_is_an_outage_not_an_error(tmp_path):
    """After a restart Redis answers LOADING until its data is in memory (the soak's Redis restart
    met it): the store's own connections must report that as StoreUnavailable (503 / model-only
    answers), like a refused connection, never as an error reply (500). `key-load-delay` makes the
    load of a small snapshot last a few seconds."""
    from recsvc.core.types import LiveEvent
    from recsvc.state import open_store
    from recsvc.state.base import StoredEvent, StoreUnavailable

    port = free_port()
    server = start_redis(port, tmp_path)
    # a store that has run before the restart (layout checked, erasure key read, connections pooled)
    store = open_store(f"redis://127.0.0.1:{port}/0?prefix=loading", timeout_ms=1000)
    store.append_events([StoredEvent("e0", "c1", LiveEvent("i0", "view", "web", 1.7e9))])
    assert store.get_state("c1", None)[0] is not None
    admin = redis.Redis(port=port)
    pipe = admin.pipeline(transaction=False)
    for k in range(4000):  # x 2.5 ms: a 10 s load
        pipe.set(f"filler:{k}", "x")
    pipe.execute()
    admin.save()
    admin.close()
    stop_redis(server)
    server = subprocess.Popen(
        [shutil.which("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
         "no", "--dir", str(tmp_path), "--key-load-delay", "2500", "--loading-process-events-interval-bytes", "1024"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:  # until the server answers, LOADING (redis-cli: redis-py would retry through it)
            out = subprocess.run(["redis-cli", "-p", str(port), "GET", "filler:0"], capture_output=True,
                                 text=True, timeout=10).stdout
            if out.startswith("LOADING"):
                break
            assert out.strip() != "x", "the snapshot loaded before the test could see LOADING"
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.02)
        assert store._fast is not None  # the request path's own connections, not redis-py's
        t0 = time.monotonic()
        with pytest.raises(StoreUnavailable):
            store.begin_state("c1", None).result()
        time.sleep(1.1)  # past the breaker: the next call is attempted again, on the ingest connections
        from recsvc.core.types import LiveEvent
        from recsvc.state.base import StoredEvent
        assert time.monotonic() - t0 < 5, "too slow to still be within the load"
        with pytest.raises(StoreUnavailable):
            store.append_events([StoredEvent("e1", "c1", LiveEvent("i1", "view", "web", 1.7e9))])
    finally:
        store.close()
        server.kill()
        server.wait(timeout=15)

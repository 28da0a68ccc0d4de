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

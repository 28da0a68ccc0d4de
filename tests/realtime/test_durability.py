"""An acknowledged event is never lost: kill -9 of Redis (appendonly yes, appendfsync always) and of the
whole gunicorn while batches are in flight, restart both, and every event that got a 202 is exported
exactly once; client retries of any batch are recognised. The embedded store's log survives a kill -9
of `recsvc serve` the same way."""

from __future__ import annotations

import http.client
import os
import signal
import threading
import time
import uuid

import pytest

from tests.realtime import RedisServer, event
from tests.service import GUNICORN, GUNICORN_CONF, PYTHON, Server, free_port, request, server_env
from training.export_events import export_events

pytestmark = [pytest.mark.redis, pytest.mark.slow]


def gunicorn(models_dir: str, url: str, tmp_path, name: str) -> Server:
    port = free_port()
    s = Server([GUNICORN, "-c", GUNICORN_CONF, "recsvc.wsgi:app", "--bind", f"127.0.0.1:{port}", "--workers", "2"],
               server_env(models_dir, url, RECSVC_REDIS_TIMEOUT_MS="1000"), str(tmp_path), port,
               str(tmp_path / f"{name}.log"))
    s.wait_ready()
    return s


def kill9_group(server: Server) -> None:
    """kill -9 of the master and its workers (one process group), as an OOM killer or a power cut would."""
    try:
        os.killpg(server.proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    server.proc.wait(timeout=10)
    server.stop()  # closes its log file


def exported_ids(url: str, out: str) -> list[str]:
    export_events(url, out)
    with open(os.path.join(out, "interactions.csv")) as f:
        next(f)
        return [line.split(",")[5] for line in f if line.strip()]


def test_acknowledged_events_survive_kill_9_of_redis_and_gunicorn(models_dir, tmp_path):
    redis_server = RedisServer(str(tmp_path / "redis"), aof=True).start()
    url = f"{redis_server.url}?prefix=durable"
    server = gunicorn(models_dir, url, tmp_path, "g1")
    batches = [[event(f"c{(b * 7 + k) % 40:05d}", f"i{(b + k) % 60:05d}", "view", "web",
                      event_id=f"dur-{b}-{k}-{uuid.uuid4().hex[:8]}") for k in range(50)] for b in range(60)]
    acked: set[int] = set()
    lock = threading.Lock()
    stop = threading.Event()

    def sender(mine: list[int]) -> None:
        for b in mine:
            if stop.is_set():
                return
            try:
                status, js = request("POST", server.base + "/v1/events", {"events": batches[b]}, timeout=5)
            except (OSError, http.client.HTTPException):  # killed mid-answer: not acknowledged
                continue
            if status == 202:
                assert js["accepted"] == 50
                with lock:
                    acked.add(b)

    threads = [threading.Thread(target=sender, args=(list(range(t, 60, 4)),)) for t in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while len(acked) < 15 and time.monotonic() < deadline:
        time.sleep(0.01)
    redis_server.kill()  # in the middle of the batches
    kill9_group(server)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert 15 <= len(acked) < 60
    redis_server.start()
    ids = exported_ids(url, str(tmp_path / "E1"))
    acked_ids = {e["event_id"] for b in acked for e in batches[b]}
    assert acked_ids <= set(ids) and len(ids) == len(set(ids))  # nothing acknowledged lost, nothing twice
    server = gunicorn(models_dir, url, tmp_path, "g2")
    try:
        for b, batch in enumerate(batches):  # every client retries what it sent
            status, js = request("POST", server.base + "/v1/events", {"events": batch}, timeout=10)
            assert status == 202 and js["accepted"] + js["duplicates"] == 50
            if b in acked:
                assert js == {"accepted": 0, "duplicates": 50, "erased": 0}
    finally:
        server.stop()
        redis_server.stop()
    redis_server.start()
    try:
        ids = exported_ids(url, str(tmp_path / "E2"))
    finally:
        redis_server.stop()
    assert sorted(ids) == sorted(e["event_id"] for b in batches for e in b)


def test_the_embedded_log_survives_kill_9_of_the_service(models_dir, tmp_path):
    log = str(tmp_path / "events.jsonl")
    port = free_port()
    cmd = [PYTHON, "-m", "recsvc", "serve", "--host", "127.0.0.1", "--port", str(port)]
    env = server_env(models_dir, RECSVC_EVENT_LOG=log)
    server = Server(cmd, env, str(tmp_path), port, str(tmp_path / "serve1.log"))
    server.wait_ready()
    batch = [event("c00002", f"i{k:05d}", "view", "app") for k in (1, 5, 9)]
    status, js = request("POST", server.base + "/v1/events", {"events": batch})
    assert status == 202 and js["accepted"] == 3
    request("PUT", server.base + "/v1/customers/c00002/consent",
            {"personalisation": False, "source": "app settings", "channel": "app"})
    kill9_group(server)
    server = Server(cmd, env, str(tmp_path), port, str(tmp_path / "serve2.log"))
    try:
        server.wait_ready()
        status, js = request("POST", server.base + "/v1/events", {"events": batch})
        assert js == {"accepted": 0, "duplicates": 3, "erased": 0}
        view = request("GET", server.base + "/v1/customers/c00002")[1]
        assert len(view["recent_activity"]) == 3 and view["consent"]["personalisation"] is False
    finally:
        server.stop()
    assert os.path.getsize(log + ".erasure-key") > 0  # replayable tombstones

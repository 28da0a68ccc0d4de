"""kill -9 of one gunicorn worker in the middle of event batches loses nothing acknowledged, and client
retries with the same event ids are recognised, not counted twice.

Redis runs with `appendonly yes, appendfsync always`: Redis fsyncs the AOF before it answers the event
script, so the 202 the service sends after it means "on disk", which is the promise the README makes.
(`everysec` would answer after a write() to the page cache: a kill -9 of Redis loses nothing, a crash of
the machine up to about a second of acknowledged events.) To hold the setting to it, Redis itself is
killed -9 and restarted from its AOF before the final count.

The embedded store (memory + RECSVC_EVENT_LOG) is checked the same way under gunicorn: its worker is
killed -9 mid-stream (gunicorn starts another, which replays the log), then the whole server is killed -9
and started again. One worker: each process of the embedded store holds its own copy of the live state,
so a retry landing on a sibling would not be recognised as one; several workers need Redis."""

from __future__ import annotations

import http.client
import json
import os
import signal
import threading

import pytest

from tests.realtime import RedisServer, event
from tests.reliability import gunicorn, live_event_ids, stream_event_ids, worker_pids
from tests.service import request

pytestmark = [pytest.mark.redis, pytest.mark.slow]

BATCH = 50


def batches_of(tag: str, n: int) -> list[list[dict]]:
    return [[event(f"c{(b * 7 + k) % 40:05d}", f"i{(b + k) % 60:05d}", ("view", "click", "add_to_cart")[k % 3],
                   ("web", "app", "store", "call_center")[(b + k) % 4], event_id=f"{tag}-{b}-{k}")
             for k in range(BATCH)] for b in range(n)]


def send_all(base: str, batches: list[list[dict]], threads: int = 4, on_progress=None) -> dict[int, dict]:
    """Post every batch once from `threads` threads; returns {batch: 202 body} for the acknowledged ones.
    A reset connection or a 5xx is not an acknowledgement (the batch stays unacknowledged)."""
    acked: dict[int, dict] = {}
    lock = threading.Lock()

    def run(mine: list[int]) -> None:
        for b in mine:
            try:
                status, js = request("POST", base + "/v1/events", {"events": batches[b]}, timeout=10)
            except (OSError, http.client.HTTPException):  # killed mid-answer: not acknowledged
                continue
            if status == 202:
                with lock:
                    acked[b] = js
                    n = len(acked)
                if on_progress is not None:
                    on_progress(n)
            else:
                assert status == 503 and isinstance(js, dict), (status, js)

    ts = [threading.Thread(target=run, args=(list(range(t, len(batches), threads)),)) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=120)
    return acked


def kill_workers_at(server, counts: tuple[int, ...]):
    """on_progress callback: kill -9 a worker (never the master) each time the number of acknowledged
    batches reaches one of `counts`, while the other threads keep posting (several kills: more chances
    to catch a worker inside a request)."""
    killed: list[int] = []
    lock = threading.Lock()

    def progress(n: int) -> None:
        with lock:
            if len(killed) < len(counts) and n >= counts[len(killed)]:
                pids = [p for p in worker_pids(server) if p not in killed]
                if pids:
                    os.kill(pids[0], signal.SIGKILL)
                    killed.append(pids[0])
    return progress, killed


def retry_all(base: str, batches: list[list[dict]], acked) -> None:
    for b, batch in enumerate(batches):
        status, js = request("POST", base + "/v1/events", {"events": batch}, timeout=10)
        assert status == 202 and js["accepted"] + js["duplicates"] == BATCH, js
        if b in acked:  # all of it was stored before: every event is a duplicate
            assert js == {"accepted": 0, "duplicates": BATCH, "erased": 0}


def test_kill_9_of_a_worker_mid_stream_loses_no_acknowledged_event_on_redis(models_dir, tmp_path):
    redis_server = RedisServer(str(tmp_path / "redis"), aof=True).start()
    prefix = "crash"
    url = f"{redis_server.url}?prefix={prefix}"
    batches = batches_of("k9", 80)
    all_ids = {e["event_id"] for b in batches for e in b}
    server = gunicorn(models_dir, url, tmp_path, "redis-crash", RECSVC_REDIS_TIMEOUT_MS="2000")
    try:
        progress, killed = kill_workers_at(server, (15, 35, 55))
        acked = send_all(server.base, batches, on_progress=progress)
        assert len(killed) == 3 and len(acked) >= 55
        assert all(js["accepted"] == BATCH for js in acked.values())  # first sending: nothing was stored twice
        r = redis_server.client()
        ids = stream_event_ids(r, prefix)
        acked_ids = {e["event_id"] for b in acked for e in batches[b]}
        assert acked_ids <= set(ids) and len(ids) == len(set(ids))  # nothing acknowledged lost, nothing twice
        r.close()
        retry_all(server.base, batches, acked)  # clients retry everything they sent, acknowledged or not
        assert not set(killed) & set(worker_pids(server)) and len(worker_pids(server)) == 2  # replaced
    finally:
        server.stop()
    redis_server.kill()  # the AOF (fsync always) is all that is left
    redis_server.start()
    try:
        r = redis_server.client()
        ids, live = stream_event_ids(r, prefix), live_event_ids(r, prefix)
        r.close()
    finally:
        redis_server.stop()
    assert sorted(ids) == sorted(all_ids)  # every event exactly once in the stream export reads
    assert sorted(live) == sorted(all_ids)  # and in the customers' live lists


def logged_ids(path: str) -> list[str]:
    with open(path, "rb") as f:
        return [json.loads(line)["e"]["event_id"] for line in f if line.strip() and b'"t":"ev"' in line]


def test_the_embedded_log_replays_every_acknowledged_event_after_kill_9(models_dir, tmp_path):
    log = str(tmp_path / "events.jsonl")
    batches = batches_of("mem", 60)
    server = gunicorn(models_dir, "memory://", tmp_path, "mem1", workers=1, RECSVC_EVENT_LOG=log)
    try:
        progress, killed = kill_workers_at(server, (10, 25, 40))
        acked = send_all(server.base, batches, threads=3, on_progress=progress)
        assert len(killed) == 3 and len(acked) >= 40
        retry_all(server.base, batches, acked)  # the new worker replayed the log: acked ones are duplicates
        os.killpg(server.proc.pid, signal.SIGKILL)  # then the whole server, master included
        server.proc.wait(timeout=10)
    finally:
        server.stop()
    ids = logged_ids(log)
    assert sorted(ids) == sorted(e["event_id"] for b in batches for e in b)  # each once in the log
    server = gunicorn(models_dir, "memory://", tmp_path, "mem2", workers=1, RECSVC_EVENT_LOG=log)
    try:
        retry_all(server.base, batches, set(range(len(batches))))  # everything replayed
        status, view = request("GET", server.base + "/v1/customers/c00000")
        assert status == 200 and len({a["event_id"] for a in view["recent_activity"]}) == len(
            view["recent_activity"]) > 0
    finally:
        server.stop()
    assert sorted(logged_ids(log)) == sorted(ids)  # the retries added nothing

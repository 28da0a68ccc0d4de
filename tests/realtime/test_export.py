"""`recsvc-train export-events`: reads what the service wrote (the Redis stream, the embedded log), leaves
out erased customers, credits adopted anonymous history to the customer, and `fit` trains on it."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import orjson
import pytest

from recsvc.artifact.read import load_model
from recsvc.artifact.registry import Registry
from recsvc.core.types import LiveEvent
from recsvc.state.base import Provenance, StoredEvent
from recsvc.state.eventlog import EventLog
from recsvc.state.memory import InMemoryStore
from recsvc.state.redis import RedisStore
from tests.conftest import REDIS_URL
from tests.realtime import event
from training import export_events as ex


def ev(event_id, customer, item="i00001", kind="view", channel="web", ts=1795428000.0, **kw) -> StoredEvent:
    return StoredEvent(event_id, customer, LiveEvent(item, kind, channel, ts, **kw))


def rows(out: str) -> list[dict]:
    with open(os.path.join(out, "interactions.csv"), newline="") as f:
        return list(csv.DictReader(f))


def write_history(store) -> str:
    """The same story on any store: two customers, a device adopted by c00002, c00003 erased."""
    store.append_events([ev("e1", "c00001", "i00001", "view", "app", store_id=None),
                         ev("e2", "c00001", "i00002", "purchase", "store", 1795428060.0, store_id="s1",
                            quantity=2.0, value=25.0, recommendation_id="r-9"),
                         ev("e3", "c00003", "i00003")])
    store.append_events([ev("e1", "c00001")])  # a retry: stored once
    (anon,) = store.resolve_or_create([("device", "dev-77")], Provenance(at=1.0))
    store.append_events([ev("d1", anon, "i00004", "view", "app", 1795427000.0)])
    store.link_identifier("c00002", "device", "dev-77")
    store.append_events([StoredEvent("e4", "c00002", LiveEvent("i00005", "offer_declined", "store", 1795428120.0),
                                     actor_type="clerk", actor_id="k-1", session_id="s-1")])
    store.erase("c00003")
    return anon


def check_rows(got: list[dict]) -> None:
    assert [(r["event_id"], r["customer_id"]) for r in got] == [
        ("d1", "c00002"), ("e1", "c00001"), ("e2", "c00001"), ("e4", "c00002")]  # by time
    e2 = next(r for r in got if r["event_id"] == "e2")
    assert (e2["event"], e2["channel"], e2["store_id"], e2["quantity"], e2["value"], e2["recommendation_id"],
            e2["timestamp"]) == ("purchase", "store", "s1", "2.0", "25.0", "r-9", "2026-11-23T10:01:00Z")
    e4 = next(r for r in got if r["event_id"] == "e4")
    assert (e4["actor_type"], e4["actor_id"], e4["session_id"]) == ("clerk", "k-1", "s-1")
    assert list(got[0]) == list(ex.COLUMNS)


@pytest.mark.redis
def test_export_reads_the_layout_redis_store_writes(redis_prefix, tmp_path):
    url = f"{REDIS_URL}?prefix={redis_prefix}"
    store = RedisStore.from_url(url)
    write_history(store)
    assert ex.stream_key(redis_prefix) == store.stream
    assert store.r.exists(ex.erasure_key_name(redis_prefix)) and store.r.exists(ex.adopted_key(redis_prefix))
    assert any(True for _ in store.r.scan_iter(match=ex.tomb_pattern(redis_prefix)))
    # an entry the erasure index missed (written behind the service's back) is still left out
    store.r.xadd(store.stream, {"e": orjson.dumps({"event_id": "x1", "customer_id": "c00003", "item_id": "i1",
                                                   "event": "view", "channel": "web", "ts": 1.0})})
    out = str(tmp_path / "E")
    counts = ex.export_events(url, out)
    check_rows(rows(out))
    assert counts["events"] == 4 and counts["erased_skipped"] == 1 and counts["customers"] == 2
    store.close()


def test_export_reads_the_embedded_log(tmp_path):
    log = str(tmp_path / "events.jsonl")
    store = InMemoryStore(event_log=EventLog(log))
    write_history(store)
    out = str(tmp_path / "E")
    ex.export_events(f"file://{log}", out)
    check_rows(rows(out))


def test_unlinking_takes_adopted_history_back_in_the_export_too(tmp_path):
    log = str(tmp_path / "events.jsonl")
    store = InMemoryStore(event_log=EventLog(log))
    anon = write_history(store)
    store.unlink_identifier("c00002", "device", "dev-77")
    ex.export_events(f"file://{log}", str(tmp_path / "E"))
    assert {r["event_id"]: r["customer_id"] for r in rows(str(tmp_path / "E"))}["d1"] == anon


def test_bad_store_urls_and_missing_logs_fail_in_one_line(tmp_path):
    env = {**os.environ, "RECSVC_EVENT_LOG": str(tmp_path / "absent.jsonl")}
    for url in ("mongodb://x", "memory://"):
        p = subprocess.run([sys.executable, "-m", "training", "export-events", "--store-url", url, "--out",
                            str(tmp_path / "E")], capture_output=True, text=True, env=env, timeout=60, check=False)
        assert p.returncode != 0 and len(p.stderr.strip().splitlines()) == 1, p.stderr


@pytest.mark.redis
@pytest.mark.slow
def test_closed_loop_events_to_export_to_fit(make_app, redis_url, models_dir, tmp_path):
    client = make_app(store_url=redis_url).test_client()
    evs = [event(f"live-{k % 30}", f"i{(k * 7) % 60:05d}", ("view", "click", "purchase")[k % 3],
                 ("web", "app", "store", "call_center")[k % 4], store_id="s1" if k % 4 == 2 else None,
                 timestamp=1795428000 + k) for k in range(600)]
    for k in range(0, 600, 100):
        assert client.post("/v1/events", json={"events": evs[k:k + 100]}).get_json()["accepted"] == 100
    client.delete("/v1/customers/live-7")
    out = str(tmp_path / "E")
    p = subprocess.run([sys.executable, "-m", "training", "export-events", "--store-url", redis_url, "--out", out,
                        "--catalog-from", "champion", "--models-dir", models_dir],
                       capture_output=True, text=True, timeout=120, check=False)
    assert p.returncode == 0, p.stderr
    counts = orjson.loads(p.stdout.strip().splitlines()[-1])
    assert counts["events"] == 580 and counts["customers"] == 29 and counts["catalog"] == "model"
    assert os.path.exists(os.path.join(out, "catalog.csv"))
    new_models = str(tmp_path / "M2")
    p = subprocess.run([sys.executable, "-m", "training", "-q", "fit", "--data", out, "--models-dir", new_models,
                        "--no-evaluate"], capture_output=True, text=True, timeout=300, check=False)
    assert p.returncode == 0, p.stderr[-2000:]
    model = load_model(Registry(new_models).resolve(p.stdout.strip().splitlines()[-1]))
    assert model.customer_index("live-1") >= 0 and model.customer_index("live-7") < 0
    assert model.n_items == 60


def test_tombstones_are_hmac_sha256_on_both_sides():
    import hashlib
    import hmac

    from recsvc.state.base import tombstone_id

    for key in (b"k", b"x" * 64, b"y" * 100):
        for cid in ("c42", "client é 🛒", "0493995001"):
            expected = hmac.new(key, cid.encode(), hashlib.sha256).hexdigest()
            assert tombstone_id(key, cid) == ex.tombstone_id(key, cid) == expected

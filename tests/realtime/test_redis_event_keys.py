"""The Redis store's event keys as recsvc/state/base.py documents them, against a real Redis: compact rows
in the recent list (one decode per read), entries written before rows still read, the list trimmed with
slack while reads stop at the cap, a batch's events of one customer written together, adoption copying a
row's text unchanged but for `via`, and the ingestion script loaded again after a SCRIPT FLUSH."""

from __future__ import annotations

import orjson
import pytest

from recsvc.core.types import LiveEvent
from recsvc.state.base import EVENTS_SLACK, ROW_FIELDS, Provenance, StoredEvent, event_to_dict
from recsvc.state.redis import RedisStore
from tests.conftest import REDIS_URL
from tests.realtime import RedisServer

pytestmark = pytest.mark.redis


@pytest.fixture
def store(redis_prefix):
    s = RedisStore.from_url(f"{REDIS_URL}?prefix={redis_prefix}", timeout_ms=2000, erasure_key=b"k")
    yield s
    s.close()


def ev(event_id, customer="c1", item="i1", kind="view", ts=1000.0, **kw) -> StoredEvent:
    extra = {k: kw.pop(k) for k in ("actor_type", "actor_id", "session_id", "via") if k in kw}
    return StoredEvent(event_id, customer, LiveEvent(item, kind, "web", ts, **kw), **extra)


def raw_list(store: RedisStore, customer: str) -> list[str]:
    return store.r.lrange(store._cust(customer, "events"), 0, -1)


def test_recent_events_are_rows_without_the_customer_id(store):
    full = ev("e1", item="i9", kind="purchase", ts=1795428000.123456, store_id="s1", quantity=2.0, value=19.9,
              recommendation_id="r-1", actor_type="clerk", actor_id="k7", session_id="sess-1")
    plain = ev("e2", item="i8", ts=1795428001.0)
    assert store.append_events([full, plain]) == (2, 0, 0)
    rows = [orjson.loads(x) for x in raw_list(store, "c1")]
    assert rows == [  # newest first, ROW_FIELDS order
        ["i8", "view", "web", 1795428001.0, None, 1.0, None, None, "e2", None, None, None, None],
        ["i9", "purchase", "web", 1795428000.123456, "s1", 2.0, 19.9, "r-1", "e1", "clerk", "k7", "sess-1", None],
    ]
    assert len(rows[0]) == len(ROW_FIELDS) and "c1" not in "".join(raw_list(store, "c1"))
    assert store.recent_events("c1") == [full, plain]
    assert store.profile("c1").events == (full, plain)
    state, _ = store.get_state("c1", None)
    assert state.events == (full.event, plain.event)
    assert all(type(e) is LiveEvent for e in state.events) and type(state.events[0].ts) is float
    # the stream keeps the full JSON object (what export-events and the experiments read)
    assert [orjson.loads(f["e"]) for _, f in store.r.xrange(store.stream)] == [event_to_dict(full),
                                                                                event_to_dict(plain)]


def test_entries_written_before_rows_are_still_read(store):
    old = ev("old-1", item="i5", ts=900.0, store_id="s2")
    store.r.rpush(store._cust("c1", "events"), orjson.dumps(event_to_dict(old)))  # the former format
    store.append_events([ev("e1", item="i6", ts=1000.0)])
    assert [e.event_id for e in store.recent_events("c1")] == ["old-1", "e1"]
    assert store.recent_events("c1")[0] == old
    assert [e.item_id for e in store.get_state("c1", None)[0].events] == ["i5", "i6"]
    assert store.append_events([ev("e1")]) == (0, 1, 0)
    # an anonymous profile holding a former entry is adopted: its copy is tagged `via` as well
    (anon,) = store.resolve_or_create([("device", "dev-old")], Provenance(at=1.0))
    store.r.rpush(store._cust(anon, "events"), orjson.dumps(event_to_dict(ev("d-old", customer=anon, ts=950.0))))
    assert store.link_identifier("c1", "device", "dev-old").adopted_events == 1
    copied = {e.event_id: e for e in store.recent_events("c1")}["d-old"]
    assert copied.customer_id == "c1" and copied.via.startswith("device:")
    assert store.unlink_identifier("c1", "device", "dev-old")
    assert [e.event_id for e in store.recent_events("c1")] == ["old-1", "e1"]


def test_the_list_runs_past_the_cap_by_the_slack_only_and_reads_stop_at_the_cap(redis_prefix):
    store = RedisStore.from_url(f"{REDIS_URL}?prefix={redis_prefix}", erasure_key=b"k", events_cap=5)
    try:
        lengths = []
        for k in range(5 + EVENTS_SLACK + 3):
            store.append_events([ev(f"e{k}", item=f"i{k}", ts=float(k))])
            lengths.append(len(raw_list(store, "c1")))
            newest = [f"i{j}" for j in range(max(0, k - 4), k + 1)]
            assert [e.item_id for e in store.get_state("c1", None)[0].events] == newest
            assert [e.event.item_id for e in store.recent_events("c1", limit=1000)] == newest
            assert [e.event.item_id for e in store.profile("c1", limit=1000).events] == newest
        assert max(lengths) == 5 + EVENTS_SLACK and lengths[5 + EVENTS_SLACK] == 5  # trimmed back once
    finally:
        store.close()


def test_a_batch_writes_each_customer_once_and_dedups_inside_it(store):
    batch = [ev(f"b{k}", item=f"i{k}", ts=float(k)) for k in range(300)]
    assert store.append_events(batch[:1]) == (1, 0, 0)
    mixed = batch + [ev("b7"), ev("x1", customer="c2"), ev("x1", customer="c2")]
    assert store.append_events(mixed) == (300, 3, 0)  # b0 seen before; b7 and x1 twice in the batch
    assert store.r.xlen(store.stream) == 301
    assert len(store.r.lrange(store._cust("c1", "xids"), 0, -1)) == 300
    assert [e.event_id for e in store.recent_events("c1")] == [f"b{k}" for k in range(100, 300)]
    # the dedup set orders a batch's ids as they came (b10 after b9), so its trim keeps the newest
    assert store.r.zrange(store._cust("c1", "evids"), 0, -1) == [f"b{k}" for k in range(300)]
    assert store.append_events([ev("b299"), ev("b1")]) == (0, 2, 0)


def test_adoption_copies_the_row_text_and_sets_only_via(store):
    (anon,) = store.resolve_or_create([("device", "dev-7")], Provenance(at=1.0))
    store.append_events([ev("d1", customer=anon, item="i1", ts=1795428000.123456, value=0.1)])
    before = raw_list(store, anon)[0]
    assert store.link_identifier("c1", "device", "dev-7").status == "adopted"
    (copy,) = raw_list(store, "c1")
    key = store.identifiers("c1")[0].key
    assert copy == before[: before.rindex(",")] + "," + orjson.dumps(key).decode() + "]"
    (e,) = store.recent_events("c1")
    assert e.event.ts == 1795428000.123456 and e.event.value == 0.1 and e.via == key


def test_the_ingestion_script_is_loaded_again_after_a_script_flush(tmp_path):
    server = RedisServer(str(tmp_path / "redis")).start()
    store = RedisStore.from_url(f"{server.url}?prefix=flush", timeout_ms=2000, erasure_key=b"k")
    try:
        assert store._fast_writes is not None
        assert store.append_events([ev("e1")]) == (1, 0, 0)
        server.client().script_flush()
        assert store.append_events([ev("e2"), ev("e1")]) == (1, 1, 0)
        assert [e.event_id for e in store.recent_events("c1")] == ["e1", "e2"]
    finally:
        store.close()
        server.stop()

"""The sharded key layout on a real three-node Redis Cluster (and on the single server): a batch of
many customers lands in several slots and nodes, every reader of the event streams sees all buckets,
the layout is recorded and guarded, and an identifier link cut short after its commit is completed."""

from __future__ import annotations

import csv
import os
import uuid

import orjson
import pytest

from recsvc.core.types import LiveEvent
from recsvc.experiments.backend import RedisBackend
from recsvc.state import StoreError, open_store
from recsvc.state.base import Provenance, StoredEvent, identifier_key
from recsvc.state.redis import RedisStore
from tests.conftest import REDIS_URL
from training import experiments as tx
from training import redis_streams
from training.export_events import export_events

pytestmark = pytest.mark.redis
T0 = 1795428000.0


def ev(event_id: str, customer: str, item: str = "i1", ts: float = T0) -> StoredEvent:
    return StoredEvent(event_id, customer, LiveEvent(item, "view", "web", ts))


@pytest.fixture(params=["cluster", "single-server"])
def sharded_url(request):
    """A sharded-layout store URL: on the local cluster, or on the one Redis (16 buckets, a fresh prefix)."""
    if request.param == "cluster":
        cluster = request.getfixturevalue("redis_cluster")
        return f"{cluster.url}&prefix=t-{uuid.uuid4().hex[:12]}&shards=16"
    return f"{REDIS_URL}?prefix={request.getfixturevalue('redis_prefix')}&shards=16"


def customers(n: int) -> list[str]:
    return [f"c{k:05d}" for k in range(n)]


def test_a_batch_of_many_customers_spreads_over_nodes_and_reads_back(redis_cluster):
    store = RedisStore.from_url(f"{redis_cluster.url}&prefix=t-{uuid.uuid4().hex[:12]}&shards=16",
                                timeout_ms=2000, erasure_key=b"k")
    cs = customers(40)
    batch = [ev(f"{c}-{j}", c, item=f"i{j}", ts=T0 + j) for c in cs for j in range(2)]
    assert store.append_events([*batch, batch[0]]) == (80, 1, 0)
    assert store.append_events(batch) == (0, 80, 0)  # a retry of the whole batch: every id known
    buckets = {store.layout.bucket(c) for c in cs}
    nodes = {store.r.get_node_from_key(store.layout.stream(b)).name for b in buckets}
    assert len(buckets) > 8 and len(nodes) == 3  # many slots, every node: no CROSSSLOT anywhere
    for c in cs:
        assert [e.event_id for e in store.recent_events(c)] == [f"{c}-0", f"{c}-1"]
    assert sum(store.r.xlen(store.layout.stream(b)) for b in buckets) == 80
    assert store.erase(cs[3]) == 1
    gone = store.layout.stream(store.layout.bucket(cs[3]))
    assert not any(cs[3] in f["e"] for _, f in store.r.xrange(gone))
    assert sum(store.r.xlen(store.layout.stream(b)) for b in buckets) == 78
    store.close()


def test_every_stream_reader_sees_the_events_of_every_bucket(sharded_url, tmp_path):
    store = RedisStore.from_url(sharded_url, timeout_ms=2000)
    cs = customers(30)
    store.append_events([ev(f"{c}-a", c, ts=T0 + k) for k, c in enumerate(cs)])
    (anon,) = store.resolve_or_create([("device", "dev-9")], Provenance(at=1.0))
    store.append_events([ev("d1", anon, ts=T0 - 5)])
    assert store.link_identifier(cs[1], "device", "dev-9").status == "adopted"
    assert store.erase(cs[2]) == 1
    wanted = {f"{c}-a" for c in cs} - {f"{cs[2]}-a"}

    out = str(tmp_path / "export")
    counts = export_events(sharded_url, out)
    with open(os.path.join(out, "interactions.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["event_id"] for r in rows} == wanted | {"d1"}
    assert next(r["customer_id"] for r in rows if r["event_id"] == "d1") == cs[1]  # adopted history
    assert counts["events"] == len(wanted) + 1 and len(counts["last_stream_ids"]) > 1

    backend = RedisBackend.of(store)
    seen = [e["event_id"] for e in backend.events(T0 - 60, T0 + 60, None)]
    assert set(seen) == wanted | {"d1"} and len(seen) == len(set(seen))
    r, prefix = redis_streams.connect(sharded_url)
    assert [e["event_id"] for e in tx.read_events(r, prefix, T0 - 60, T0 + 60)] == seen  # same order
    r.close()
    store.close()


def test_readers_merge_the_streams_in_arrival_order(sharded_url):
    store = RedisStore.from_url(sharded_url, timeout_ms=2000)
    cs = customers(12)
    for k, c in enumerate(cs):  # one batch after another: arrival order is this order
        store.append_events([ev(f"e{k:02d}", c)])
    r, prefix = redis_streams.connect(sharded_url)
    merged = list(redis_streams.merged(r, redis_streams.stream_keys(r, prefix)))
    assert len({key for key, _, _ in merged}) > 1
    got = [orjson.loads(f["e"])["event_id"] for _, _, f in merged]
    assert sorted(got) == [f"e{k:02d}" for k in range(12)]
    ms = {orjson.loads(f["e"])["event_id"]: int(i.split("-")[0]) for _, i, f in merged}
    for a in range(12):  # entries of one millisecond in two streams have no order; the rest keep theirs
        for b in range(a + 1, 12):
            if ms[f"e{a:02d}"] != ms[f"e{b:02d}"]:
                assert got.index(f"e{a:02d}") < got.index(f"e{b:02d}")
    r.close()
    store.close()


def test_an_anonymous_profile_lives_in_its_identifiers_slot(redis_cluster):
    store = RedisStore.from_url(f"{redis_cluster.url}&prefix=t-{uuid.uuid4().hex[:12]}&shards=64",
                                timeout_ms=2000)
    made = store.resolve_or_create([("device", f"dev-{k}") for k in range(10)], Provenance(at=1.0))
    keyslot = store.r.keyslot
    for k, anon in enumerate(made):
        assert anon.startswith("anon-") and len(anon) == 25
        assert keyslot(store._ident("device", f"dev-{k}")) == keyslot(store._cust(anon, "meta"))
    assert store.resolve_or_create([("device", "dev-3")], Provenance(at=2.0)) == [made[3]]
    store.close()


def test_the_layout_is_recorded_and_another_shard_count_is_refused(redis_prefix):
    sharded = open_store(f"{REDIS_URL}?prefix={redis_prefix}&shards=8")
    sharded.append_events([ev("e1", "c1")])
    assert sharded.r.get(f"{redis_prefix}:shards") == "8"
    for other in ("&shards=16", ""):
        wrong = open_store(f"{REDIS_URL}?prefix={redis_prefix}{other}")
        with pytest.raises(StoreError, match="shards=8"):
            wrong.recent_events("c1")
        wrong.close()
    again = open_store(f"{REDIS_URL}?prefix={redis_prefix}&shards=8")
    assert [e.event_id for e in again.recent_events("c1")] == ["e1"]
    again.close()
    sharded.close()


def test_data_of_the_single_server_layout_is_not_silently_left_behind(redis_prefix):
    old = open_store(f"{REDIS_URL}?prefix={redis_prefix}")
    old.r.xadd(f"{redis_prefix}:events", {"e": "{}"})  # written before the layout was recorded
    sharded = open_store(f"{REDIS_URL}?prefix={redis_prefix}&shards=8")
    with pytest.raises(StoreError, match="single-server layout"):
        sharded.append_events([ev("e1", "c1")])
    assert old.append_events([ev("e1", "c1")]) == (1, 0, 0)  # the layout it is in: recorded, used
    assert old.r.get(f"{redis_prefix}:shards") == "0"
    old.close()
    sharded.close()


def test_unused_anonymous_ids_are_kept_for_the_next_lookup_only_once(redis_prefix):
    store = RedisStore.from_url(f"{REDIS_URL}?prefix={redis_prefix}&shards=8")
    store.resolve_or_create([("device", "d1")], Provenance(at=1.0))
    first = store.resolve_or_create([("device", "d1"), ("device", "d1")], Provenance(at=1.0))
    spare = [a for kept in store._spare_anon.values() for a in kept]
    assert len(spare) == 2 and len(set(spare)) == 2  # the two ids it did not need
    made = store.resolve_or_create([("device", "d1"), ("device", "d2"), ("device", "d3")], Provenance(at=1.0))
    assert made[0] == first[0] and len(set(made)) == 3
    assert store.resolve_identifier("device", "d2") == made[1] and store.resolve_identifier("device", "d3") == made[2]
    store.close()


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379/0?cluster=1&shards=0",
                                 "redis://127.0.0.1:6379/0?shards=lots",
                                 "redis://127.0.0.1:6379/0?cluster=maybe"])
def test_bad_cluster_settings_are_refused(url):
    with pytest.raises(StoreError):
        open_store(url)


def test_a_link_cut_short_after_its_commit_is_completed_by_the_next_call(sharded_url, monkeypatch):
    store = RedisStore.from_url(sharded_url, timeout_ms=2000)
    (anon,) = store.resolve_or_create([("device", "dev-1")], Provenance(at=1.0))
    store.append_events([ev("d1", anon), ev("e1", "c1", ts=T0 + 1)])

    def crash(*a, **kw):
        raise RuntimeError("the worker died here")

    with monkeypatch.context() as m:
        m.setattr(store, "_finish_link", crash)
        with pytest.raises(RuntimeError):
            store.link_identifier("c1", "device", "dev-1")
    assert store.resolve_identifier("device", "dev-1") == "c1"  # committed: the identifier record rules
    assert store.identifiers("c1") == []  # the rest not done yet
    out = store.link_identifier("c1", "device", "dev-1")  # completes the journal first, then finds it done
    assert out.status == "already"
    assert [x.adopted for x in store.identifiers("c1")] == [anon]
    assert [e.event_id for e in store.recent_events("c1")] == ["d1", "e1"]
    assert store.profile(anon).adopted_by == "c1" and store.identifiers(anon) == []

    with monkeypatch.context() as m:
        m.setattr(store, "_finish_unlink", crash)
        with pytest.raises(RuntimeError):
            store.unlink_identifier("c1", "device", "dev-1")
    assert store.resolve_identifier("device", "dev-1") == anon
    assert store.link_identifier("c2", "device", "dev-1").status == "adopted"  # after completing the unlink
    assert store.identifiers("c1") == [] and [e.event_id for e in store.recent_events("c1")] == ["e1"]
    assert [e.event_id for e in store.recent_events("c2")] == ["d1"]
    assert store.r.get(store.layout.ident_op(identifier_key("device", "dev-1"))) is None  # journal done
    store.close()


def test_the_experiment_backend_runs_on_the_cluster(redis_cluster):
    store = RedisStore.from_url(f"{redis_cluster.url}&prefix=t-{uuid.uuid4().hex[:12]}", timeout_ms=2000)
    b = RedisBackend.of(store)
    assert b.put_definition({"experiment_id": "x1", "status": "running"}, only_if_new=True)
    assert not b.put_definition({"experiment_id": "x1", "status": "other"}, only_if_new=True)
    assert b.definitions() == {"x1": {"experiment_id": "x1", "status": "running"}} and b.version() == 1
    assert b.assign("x1", ["u1", "u2"], "B") == "B" and b.assign("x1", ["u2"], "A") == "B"
    assert b.assigned("x1", ["u1", "u3"]) == ["B", None]
    b.record("x1", {"rid": "r1", "u": "u1", "it": ["i1", "i2"]})
    assert [x["rid"] for x in b.impressions("x1")] == ["r1"]
    b.save_report("x1", {"n": 1})
    assert b.saved_report("x1") == {"n": 1}
    b.retire("x1", 60)
    assert 0 < store.r.ttl(f"{store.prefix}:exp:{{x1}}:assign") <= 60
    store.close()

"""One behavioural suite for every live-state store: the in-memory store and Redis (the real server on
127.0.0.1:6379, a unique key prefix per test) must answer alike, so memory cannot drift from Redis."""

from __future__ import annotations

import re
import socket
import time
import uuid

import pytest

from recsvc.core.types import CustomerState, LiveEvent
from recsvc.state import StoreError, StoreUnavailable, open_store
from recsvc.state.base import Consent, Provenance, StateStore, StoredEvent
from recsvc.state.eventlog import EventLog
from recsvc.state.memory import InMemoryStore
from recsvc.state.redis import RedisStore
from tests.conftest import REDIS_URL


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis),
                        pytest.param("redis-sharded", marks=pytest.mark.redis),
                        pytest.param("redis-cluster", marks=pytest.mark.redis)])
def make_store(request):
    """factory(**kw) -> a fresh store of the parametrised kind (kw: erasure_key, events_cap): memory,
    Redis in the single-server layout, Redis in the sharded layout (8 buckets), and a local three-node
    Redis Cluster (the sharded layout, 16 buckets: a few customers already span several slots)."""
    made = []

    def factory(**kw):
        if request.param == "memory":
            s = InMemoryStore(**kw)
        elif request.param == "redis-cluster":
            cluster = request.getfixturevalue("redis_cluster")
            s = RedisStore.from_url(f"{cluster.url}&prefix=t-{uuid.uuid4().hex[:12]}&shards=16",
                                    timeout_ms=2000, **kw)
        else:
            prefix = request.getfixturevalue("redis_prefix")
            shards = "&shards=8" if request.param == "redis-sharded" else ""
            s = RedisStore.from_url(f"{REDIS_URL}?prefix={prefix}{shards}", timeout_ms=2000, **kw)
        made.append(s)
        return s

    yield factory
    for s in made:
        s.close()


@pytest.fixture
def store(make_store) -> StateStore:
    return make_store(erasure_key=b"k")


def ev(event_id, customer="c1", item="i1", event="view", channel="web", ts=1000.0, **kw) -> StoredEvent:
    return StoredEvent(
        event_id=event_id,
        customer_id=customer,
        event=LiveEvent(item_id=item, event=event, channel=channel, ts=ts, **kw),
    )


def test_implements_the_protocol(store):
    assert isinstance(store, StateStore)
    store.ping()


def test_anonymous_and_unknown_customers(store):
    assert store.get_state(None, None) == (CustomerState(), None)
    state, stock = store.get_state("nobody", "s1")
    assert state == CustomerState(customer_id="nobody") and stock is None


def test_consent_is_read_back_at_once(store):
    assert store.get_consent("c1") is None
    store.set_consent("c1", Consent(granted=False, source="clerk", channel="store", at=12.5))
    assert store.get_consent("c1") == Consent(False, "clerk", "store", 12.5)
    assert store.get_state("c1", None)[0].consent is False
    store.set_consent("c1", Consent(granted=True))
    assert store.get_consent("c1") == Consent(True)
    assert store.get_state("c1", None)[0].consent is True


def test_events_are_idempotent_by_event_id(store):
    batch = [
        ev("e1", item="i1"),
        ev(
            "e2", item="i2", event="purchase", quantity=2.0, store_id="s1", value=9.5, recommendation_id="r-1"
        ),
        ev("e1", item="i1"),
    ]
    assert store.append_events(batch) == (2, 1, 0)
    assert store.append_events(batch[:2]) == (0, 2, 0)
    assert store.append_events([ev("e3", customer="c2")]) == (1, 0, 0)
    state, _ = store.get_state("c1", None)
    assert [e.item_id for e in state.events] == ["i1", "i2"]  # newest last
    assert state.events[1] == LiveEvent(
        "i2", "purchase", "web", 1000.0, store_id="s1", quantity=2.0, value=9.5, recommendation_id="r-1"
    )
    recent = store.recent_events("c1")
    assert [e.event_id for e in recent] == ["e1", "e2"]
    assert store.recent_events("c1", limit=1)[0].event_id == "e2"
    assert store.append_events([]) == (0, 0, 0)


def test_events_are_capped_per_customer(make_store):
    store = make_store(events_cap=3)
    store.append_events([ev(f"e{k}", item=f"i{k}", ts=float(k)) for k in range(5)])
    state, _ = store.get_state("c1", None)
    assert [e.item_id for e in state.events] == ["i2", "i3", "i4"]


def test_actor_is_kept(store):
    store.append_events(
        [
            StoredEvent(
                "e1", "c1", LiveEvent("i1", "offer_accepted", "store", 5.0), actor_type="clerk", actor_id="k7"
            )
        ]
    )
    (e,) = store.recent_events("c1")
    assert (e.actor_type, e.actor_id) == ("clerk", "k7")


def shown(store, customer):
    return [(x.type, x.masked) for x in store.identifiers(customer)]


def test_identifiers_link_resolve_move_and_unlink(store):
    assert store.resolve_identifier("loyalty_card", "123") is None
    assert store.link_identifier("c1", "loyalty_card", "123").status == "linked"
    store.link_identifier("c1", "device", "d-1")
    assert store.link_identifier("c1", "device", "d-1").status == "already"
    assert store.resolve_identifier("loyalty_card", "123") == "c1"
    assert store.resolve_identifier("email_sha256", "123") is None  # the type is part of the key
    assert shown(store, "c1") == [("device", "****"), ("loyalty_card", "****")]
    moved = store.link_identifier("c2", "loyalty_card", "123")  # the card moves to c2
    assert (moved.status, moved.previous) == ("moved", "c1")
    assert store.resolve_identifier("loyalty_card", "123") == "c2"
    assert shown(store, "c1") == [("device", "****")]
    assert store.unlink_identifier("c1", "loyalty_card", "123") is False
    assert store.unlink_identifier("c2", "loyalty_card", "123") is True
    assert store.resolve_identifier("loyalty_card", "123") is None
    assert store.identifiers("c2") == []


def prov(**kw) -> Provenance:
    return Provenance(at=100.0, **kw)


def items_of(store, customer) -> list[str]:
    return [e.item_id for e in store.get_state(customer, None)[0].events]


def test_a_new_identifier_in_an_event_gets_an_anonymous_profile(store):
    a, b = store.resolve_or_create([("device", "dev-123456"), ("device", "dev-123456")],
                                   prov(by_type="customer", channel="app"))
    assert a == b and a.startswith("anon-")
    assert store.resolve_or_create([("device", "dev-123456")], prov()) == [a]
    p = store.profile(a)
    assert p.anonymous and not p.erased and p.exists
    assert [(x.type, x.masked, x.provenance.channel) for x in p.identifiers] == [("device", "****3456", "app")]


def test_login_adopts_the_device_history_and_unlink_gives_it_back(store):
    (anon,) = store.resolve_or_create([("device", "dev-1")], prov())
    store.append_events([ev("d1", customer=anon, item="i1", ts=10.0), ev("d2", customer=anon, item="i2", ts=30.0)])
    store.append_events([ev("k1", customer="c1", item="i3", ts=20.0)])
    out = store.link_identifier("c1", "device", "dev-1", prov(by_type="clerk", by_id="k7", channel="store"))
    assert (out.status, out.previous, out.adopted_events) == ("adopted", anon, 2)
    assert store.resolve_identifier("device", "dev-1") == "c1"
    assert items_of(store, "c1") == ["i1", "i3", "i2"]  # merged by time, newest last
    assert {e.event_id: e.via for e in store.recent_events("c1")}["d1"].startswith("device:")
    (x,) = store.identifiers("c1")
    assert x.adopted == anon and (x.provenance.by_type, x.provenance.by_id, x.provenance.channel) == (
        "clerk", "k7", "store")
    assert store.profile(anon).adopted_by == "c1"
    assert items_of(store, anon) == ["i1", "i2"]  # the profile itself is left as it was
    assert store.resolve_or_create([("device", "dev-1")], prov()) == ["c1"]  # new device events count for c1
    assert store.append_events([ev("d1", customer="c1", item="i1", ts=10.0)]) == (0, 1, 0)
    assert store.unlink_identifier("c1", "device", "dev-1") is True
    assert store.resolve_identifier("device", "dev-1") == anon
    assert items_of(store, "c1") == ["i3"] and store.identifiers("c1") == []
    assert store.profile(anon).adopted_by is None and len(store.identifiers(anon)) == 1
    again = store.link_identifier("c1", "device", "dev-1")  # link + unlink + link: as after the first
    assert (again.status, again.adopted_events) == ("adopted", 2) and items_of(store, "c1") == ["i1", "i3", "i2"]


def test_erasure_takes_adopted_profiles_and_blocks_their_identifiers(store):
    (anon,) = store.resolve_or_create([("device", "dev-2")], prov())
    store.append_events([ev("d1", customer=anon)])
    store.link_identifier("c1", "device", "dev-2")
    assert store.erase("c1") == 2
    assert store.is_erased("c1") and store.is_erased(anon)
    assert store.resolve_identifier("device", "dev-2") is None
    assert store.resolve_or_create([("device", "dev-2")], prov()) == [None]  # late device events: dropped
    assert store.append_events([ev("d9", customer=anon)]) == (0, 0, 1)
    assert store.link_identifier("c1", "loyalty_card", "L-1").status == "erased"
    assert store.link_identifier("c9", "device", "dev-2").status == "linked"  # an explicit link re-admits it
    assert store.resolve_or_create([("device", "dev-2")], prov()) == ["c9"]


def test_erasing_an_adopted_profile_takes_its_events_out_of_the_adopter(store):
    (anon,) = store.resolve_or_create([("device", "dev-3")], prov())
    store.append_events([ev("d1", customer=anon, item="i1")])
    store.link_identifier("c1", "device", "dev-3")
    store.append_events([ev("k1", customer="c1", item="i2", ts=2000.0)])
    assert items_of(store, "c1") == ["i1", "i2"]
    assert store.erase(anon) == 1
    assert items_of(store, "c1") == ["i2"]
    (x,) = store.identifiers("c1")
    assert x.type == "device" and x.adopted is None and store.resolve_identifier("device", "dev-3") == "c1"


def test_profile_reads_everything_of_one_customer(store):
    store.set_consent("c1", Consent(granted=False, source="app settings", channel="app", at=5.0))
    store.link_identifier("c1", "loyalty_card", "4970123412341234", prov(by_type="clerk", by_id="k1"))
    store.append_events([ev(f"e{k}", item=f"i{k}", ts=float(k)) for k in range(5)])
    p = store.profile("c1", limit=3)
    assert p.consent == Consent(False, "app settings", "app", 5.0) and not p.anonymous and p.exists
    assert [x.masked for x in p.identifiers] == ["****1234"]
    assert [e.event_id for e in p.events] == ["e2", "e3", "e4"]
    assert not store.profile("nobody").exists
    store.erase("c1")
    assert store.profile("c1").erased


def test_idempotency_window_is_bounded(make_store):
    """At least the newest `dedup_cap` ids are remembered; Redis trims every 64 events, so a little more."""
    store = make_store(dedup_cap=3)
    store.append_events([ev(f"e{k}", ts=float(k)) for k in range(200)])
    assert store.append_events([ev("e199"), ev("e197")]) == (0, 2, 0)
    assert store.append_events([ev("e0")]) == (1, 0, 0)  # forgotten: long older than the newest 3


def test_stock_versions_and_reads(store):
    assert store.get_stock("s1") is None
    v1 = store.set_stock("s1", {"i1": 3, "i2": 0})
    assert store.get_stock("s1") == {"i1": 3, "i2": 0}
    assert store.get_stock("s1", ["i1", "i9"]) == {"i1": 3, "i9": 0}
    assert store.get_stock("s1", []) == {}
    _, view = store.get_state(None, "s1")
    assert view.qty("i1") == 3 and view.qty("i9") == 0
    assert store.get_state("c1", "s1")[1] is view  # same version: the cached snapshot
    v2 = store.set_stock("s1", {"i2": 5})
    assert v2 > v1
    _, view2 = store.get_state("c1", "s1")
    assert view2 is not view and view2.qty("i2") == 5 and view2.qty("i1") == 3
    assert view.qty("i2") == 0  # a snapshot handed out earlier does not change under its reader
    store.set_stock("s1", {"i3": 1}, replace=True)
    assert store.get_stock("s1") == {"i3": 1}
    assert store.get_stock("s2") is None
    assert store.get_state(None, "s2")[1] is None


def test_stock_of_other_stores_is_separate(store):
    store.set_stock("s1", {"i1": 1})
    store.set_stock("s2", {"i1": 7})
    assert store.get_state(None, "s1")[1].qty("i1") == 1
    assert store.get_state(None, "s2")[1].qty("i1") == 7


def test_erase_forgets_and_blocks_late_events(store):
    store.link_identifier("c1", "email_sha256", "a" * 64)
    store.set_consent("c1", Consent(granted=True))
    store.append_events([ev("e1")])
    store.erase("c1")
    assert store.is_erased("c1") and not store.is_erased("c2")
    state, _ = store.get_state("c1", None)
    assert state.erased and state.events == () and state.consent is None
    assert store.resolve_identifier("email_sha256", "a" * 64) is None
    assert store.identifiers("c1") == [] and store.get_consent("c1") is None
    assert store.recent_events("c1") == []
    assert store.append_events([ev("e2"), ev("e3", customer="c2")]) == (1, 0, 1)
    assert store.recent_events("c1") == []


def test_unicode_ids_round_trip(store):
    cid, item, shop = "client é ü 🛒", "ïtem-0493995001", "magasin{7}"
    store.append_events([ev("e-ü", customer=cid, item=item)])
    store.set_stock(shop, {item: 2})
    state, stock = store.get_state(cid, shop)
    assert state.events[0].item_id == item and stock.qty(item) == 2


@pytest.mark.redis
def test_redis_keys_follow_the_layout(redis_prefix):
    store = open_store(f"{REDIS_URL}?prefix={redis_prefix}", erasure_key=b"k")
    store.append_events([ev("e1", customer="c42")])
    store.set_consent("c42", Consent(granted=True))
    store.set_stock("s7", {"i1": 1})
    store.link_identifier("c42", "loyalty_card", "4111")
    keys = sorted(store.r.scan_iter(match=f"{redis_prefix}:*"))
    assert f"{redis_prefix}:cust:{{c42}}:events" in keys
    assert f"{redis_prefix}:cust:{{c42}}:consent" in keys
    assert f"{redis_prefix}:stock:{{s7}}" in keys and f"{redis_prefix}:stock:{{s7}}:version" in keys
    assert not any("4111" in k for k in keys)  # card numbers stay out of key names
    assert store.r.ttl(f"{redis_prefix}:cust:{{c42}}:events") > 0
    store.erase("c42")
    keys = list(store.r.scan_iter(match=f"{redis_prefix}:*"))
    assert not any("c42" in k for k in keys)
    assert any(":tomb:" in k for k in keys)
    store.close()


def dump_prefix(r, prefix: str) -> str:
    """Every key under the prefix with its value, as text (what an erasure must leave no trace in)."""
    out = []
    for k in r.scan_iter(match=f"{prefix}:*"):
        t = r.type(k)
        v = {"string": r.get, "hash": r.hgetall, "list": lambda x: r.lrange(x, 0, -1), "set": r.smembers,
             "zset": lambda x: r.zrange(x, 0, -1), "stream": lambda x: r.xrange(x)}[t](k)
        out.append(f"{k} {v}")
    return "\n".join(out)


@pytest.mark.redis
def test_redis_stream_holds_each_accepted_event_once_and_erasure_leaves_no_trace(redis_prefix):
    import orjson

    store = RedisStore.from_url(f"{REDIS_URL}?prefix={redis_prefix}", erasure_key=b"k")
    store.append_events([ev("e1", customer="c42"), ev("e1", customer="c42"), ev("e2", customer="c7")])
    store.append_events([ev("e1", customer="c42")])
    (anon,) = store.resolve_or_create([("device", "dev-42")], prov())
    store.append_events([ev("d1", customer=anon)])
    store.link_identifier("c42", "device", "dev-42")
    store.link_identifier("c42", "loyalty_card", "4970123412341234")
    store.set_consent("c42", Consent(granted=True, source="web"))
    assert [orjson.loads(f["e"])["event_id"] for _, f in store.r.xrange(store.stream)] == ["e1", "e2", "d1"]
    assert store.r.hgetall(f"{redis_prefix}:adopted") == {anon: "c42"}
    c42 = re.compile(r"(?<![A-Za-z0-9])c42(?![A-Za-z0-9])")  # not inside a hex hash
    assert c42.search(dump_prefix(store.r, redis_prefix))
    assert "4970123412341234" not in dump_prefix(store.r, redis_prefix)
    assert store.erase("c42") == 2
    text = dump_prefix(store.r, redis_prefix)
    assert not c42.search(text) and anon not in text and "dev-42" not in text
    assert [orjson.loads(f["e"])["event_id"] for _, f in store.r.xrange(store.stream)] == ["e2"]
    store.close()


@pytest.mark.redis
def test_redis_shares_one_generated_erasure_key_between_instances(redis_prefix):
    url = f"{REDIS_URL}?prefix={redis_prefix}"
    a, b = RedisStore.from_url(url), RedisStore.from_url(url)
    a.append_events([ev("e1", customer="c1")])
    a.erase("c1")
    assert b.is_erased("c1") and b.get_state("c1", None)[0].erased
    assert len(a.r.get(f"{redis_prefix}:erasure-key")) == 64
    a.close()
    b.close()


@pytest.mark.redis
def test_redis_stream_cap_comes_from_the_url(redis_prefix):
    store = open_store(f"{REDIS_URL}?prefix={redis_prefix}&stream_maxlen=5", erasure_key=b"k")
    assert store._maxlen == 5 and store.r.connection_pool.connection_kwargs.get("stream_maxlen") is None
    store.close()
    with pytest.raises(StoreError):
        open_store(f"{REDIS_URL}?prefix={redis_prefix}&stream_maxlen=lots")


def test_the_embedded_log_survives_a_restart_and_forgets_erased_customers(tmp_path):
    path = str(tmp_path / "events.jsonl")
    s = InMemoryStore(event_log=EventLog(path))
    s.append_events([ev("e1", customer="c1", item="i1"), ev("e2", customer="c2", item="i2")])
    s.set_consent("c1", Consent(granted=False, source="clerk", channel="store", at=3.0))
    s.link_identifier("c1", "loyalty_card", "4970123412341234", prov(by_type="clerk", by_id="k1"))
    (anon,) = s.resolve_or_create([("device", "dev-9")], prov())
    s.append_events([ev("d1", customer=anon, item="i3", ts=500.0)])
    s.link_identifier("c1", "device", "dev-9")
    s.link_identifier("c2", "email_sha256", "ab" * 32)
    s.erase("c2")
    again = InMemoryStore(event_log=EventLog(path))
    for c in ("c1", anon, "c2"):
        assert again.get_state(c, None) == s.get_state(c, None)
        assert again.profile(c) == s.profile(c)
    assert again.append_events([ev("e1", customer="c1")]) == (0, 1, 0)
    assert again.append_events([ev("e3", customer="c2")]) == (0, 0, 1)
    with open(path) as f:
        text = f.read()
    assert not re.search(r"(?<![A-Za-z0-9])c2(?![A-Za-z0-9])", text)
    assert "4970123412341234" not in text and "ab" * 32 not in text
    with open(path, "a") as f:
        f.write('{"t": "ev", "e": {"event_id": "torn"')  # a crash in the middle of a write
    third = InMemoryStore(event_log=EventLog(path))
    third.append_events([ev("e4", customer="c1", item="i4")])
    assert [e.event_id for e in InMemoryStore(event_log=EventLog(path)).recent_events("c1")][-1] == "e4"


def _dead_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_unreachable_redis_raises_store_unavailable_quickly():
    store = open_store(f"redis://127.0.0.1:{_dead_port()}/0?prefix=x", timeout_ms=200)
    for call in (
        lambda: store.get_state("c1", "s1"),
        store.ping,
        lambda: store.set_stock("s1", {"i": 1}),
        lambda: store.append_events([ev("e1")]),
        lambda: store.resolve_identifier("device", "d"),
    ):
        with pytest.raises(StoreUnavailable) as info:
            call()
        assert "unreachable" in str(info.value)
    store.close()


@pytest.mark.redis
def test_breaker_closes_again_after_its_pause(redis_prefix):
    store = RedisStore.from_url(f"{REDIS_URL}?prefix={redis_prefix}", breaker_s=0.05)
    store._down_until = time.monotonic() + 0.05  # as after a failed call
    with pytest.raises(StoreUnavailable):
        store.ping()
    time.sleep(0.06)
    store.ping()
    store.close()


def test_open_store_rejects_unknown_schemes():
    from recsvc.state import StoreError

    with pytest.raises(StoreError):
        open_store("mongodb://x")
    with pytest.raises(StoreError):
        open_store("redis://127.0.0.1:6379/0?prefix=a{b}")

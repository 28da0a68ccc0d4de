"""One behavioural suite for every live-state store: the in-memory store and Redis (the real server on
127.0.0.1:6379, a unique key prefix per test) must answer alike, so memory cannot drift from Redis."""

from __future__ import annotations

import socket
import time

import pytest

from recsvc.core.types import CustomerState, LiveEvent
from recsvc.state import StoreUnavailable, open_store
from recsvc.state.base import Consent, StateStore, StoredEvent
from recsvc.state.memory import InMemoryStore
from recsvc.state.redis import RedisStore
from tests.conftest import REDIS_URL


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def make_store(request):
    """factory(**kw) -> a fresh store of the parametrised kind (kw: erasure_key, events_cap)."""
    made = []

    def factory(**kw):
        if request.param == "memory":
            s = InMemoryStore(**kw)
        else:
            prefix = request.getfixturevalue("redis_prefix")
            s = RedisStore.from_url(f"{REDIS_URL}?prefix={prefix}", timeout_ms=2000, **kw)
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
    assert store.append_events(batch) == (2, 1)
    assert store.append_events(batch[:2]) == (0, 2)
    assert store.append_events([ev("e3", customer="c2")]) == (1, 0)
    state, _ = store.get_state("c1", None)
    assert [e.item_id for e in state.events] == ["i1", "i2"]  # newest last
    assert state.events[1] == LiveEvent(
        "i2", "purchase", "web", 1000.0, store_id="s1", quantity=2.0, value=9.5, recommendation_id="r-1"
    )
    recent = store.recent_events("c1")
    assert [e.event_id for e in recent] == ["e1", "e2"]
    assert store.recent_events("c1", limit=1)[0].event_id == "e2"
    assert store.append_events([]) == (0, 0)


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


def test_identifiers_link_resolve_move_and_unlink(store):
    assert store.resolve_identifier("loyalty_card", "123") is None
    store.link_identifier("c1", "loyalty_card", "123")
    store.link_identifier("c1", "device", "d-1")
    assert store.resolve_identifier("loyalty_card", "123") == "c1"
    assert store.resolve_identifier("email_sha256", "123") is None  # the type is part of the key
    assert store.identifiers("c1") == [("device", "d-1"), ("loyalty_card", "123")]
    store.link_identifier("c2", "loyalty_card", "123")  # the card moves to c2
    assert store.resolve_identifier("loyalty_card", "123") == "c2"
    assert store.identifiers("c1") == [("device", "d-1")]
    assert store.unlink_identifier("c1", "loyalty_card", "123") is False
    assert store.unlink_identifier("c2", "loyalty_card", "123") is True
    assert store.resolve_identifier("loyalty_card", "123") is None
    assert store.identifiers("c2") == []


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
    assert store.append_events([ev("e2"), ev("e3", customer="c2")]) == (1, 0)
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

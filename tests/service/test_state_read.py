"""The request path's state read in two steps (begin_state, then result) on both stores, and the
Redis store's own connections for it (recsvc.state.redis_link) against a real Redis."""

from __future__ import annotations

import socket
import time

import pytest
import redis

from recsvc.core.types import LiveEvent
from recsvc.state import open_store
from recsvc.state.base import Consent, StoredEvent, StoreUnavailable
from recsvc.state.redis_link import link_for, pack
from tests.conftest import REDIS_URL


def fill(store) -> None:
    ev = [StoredEvent(f"e{k}", "c1", LiveEvent(f"i{k}", "view", "app", 1.7e9 + k)) for k in range(3)]
    store.append_events(ev)
    store.set_consent("c2", Consent(granted=False, source="test"))
    store.append_events([StoredEvent("e9", "c3", LiveEvent("i9", "purchase", "store", 1.7e9, store_id="s1"))])
    store.erase("c3")
    store.set_stock("s1", {"i1": 3, "i2": 0})


CALLS = [("c1", None), ("c2", "s1"), ("c3", "s1"), ("nobody", "s2"), (None, "s1"), (None, None)]


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def store(request, redis_url):
    s = open_store("memory://" if request.param == "memory" else redis_url)
    fill(s)
    yield s
    s.close()


@pytest.mark.parametrize("customer_id,store_id", CALLS)
def test_begin_then_result_is_get_state(store, customer_id, store_id):
    state, stock = store.begin_state(customer_id, store_id).result()
    again, stock2 = store.get_state(customer_id, store_id)
    assert state == again
    assert (stock is None) == (stock2 is None)
    if stock is not None:
        assert stock.quantities == stock2.quantities


def test_the_state_read_finds_what_was_written(store):
    state, stock = store.begin_state("c1", "s1").result()
    assert [e.item_id for e in state.events] == ["i0", "i1", "i2"] and state.consent is None
    assert store.begin_state("c2", None).result()[0].consent is False
    assert store.begin_state("c3", None).result()[0].erased
    assert stock.qty("i1") == 3 and stock.qty("i2") == 0


@pytest.mark.redis
def test_redis_reads_use_their_own_connections_and_survive_a_killed_one(redis_url):
    store = open_store(redis_url)
    try:
        fill(store)
        assert store._fast is not None
        name = f"recsvc-test-{time.monotonic_ns()}"
        store._fast._hello = (pack([("CLIENT", "SETNAME", name)]), 1)  # find our connection below
        assert store.get_state("c1", None)[0].events
        admin = redis.Redis.from_url(REDIS_URL)
        try:
            ids = [c["id"] for c in admin.client_list() if c.get("name") == name]
            assert len(ids) == 1
            admin.execute_command("CLIENT", "KILL", "ID", ids[0])
        finally:
            admin.close()
        state, _ = store.get_state("c1", None)  # the pooled connection is dead: one retry on a fresh one
        assert [e.item_id for e in state.events] == ["i0", "i1", "i2"]
    finally:
        store.close()


@pytest.mark.redis
def test_a_cancelled_read_never_answers_another(redis_url):
    store = open_store(redis_url)
    try:
        fill(store)
        store.begin_state("c1", None).cancel()  # its replies are never read
        assert store.get_state("c2", None)[0].consent is False
        assert [e.item_id for e in store.get_state("c1", None)[0].events] == ["i0", "i1", "i2"]
        abandoned = store.begin_state("c2", None)  # never collected nor cancelled
        assert store.get_state("c1", None)[0].consent is None
        abandoned.cancel()
    finally:
        store.close()


@pytest.mark.redis
def test_an_error_reply_is_raised_and_the_next_read_is_clean(redis_url, redis_prefix):
    store = open_store(redis_url)
    admin = redis.Redis.from_url(REDIS_URL)
    try:
        admin.set(f"{redis_prefix}:cust:{{bad}}:events", "not a list")
        with pytest.raises(redis.exceptions.ResponseError):
            store.get_state("bad", None)
        fill(store)
        assert store.get_state("c2", None)[0].consent is False
    finally:
        admin.close()
        store.close()


@pytest.mark.redis
def test_the_handshake_selects_the_database(redis_prefix):
    url = REDIS_URL.rsplit("/", 1)[0] + f"/3?prefix={redis_prefix}"
    store = open_store(url)
    admin = redis.Redis.from_url(REDIS_URL.rsplit("/", 1)[0] + "/3")
    try:
        store.set_consent("c5", Consent(granted=False, source="test"))
        assert admin.exists(f"{redis_prefix}:cust:{{c5}}:consent")
        assert store._fast is not None and store.get_state("c5", None)[0].consent is False
    finally:
        for k in admin.scan_iter(match=f"{redis_prefix}:*"):
            admin.delete(k)
        admin.close()
        store.close()


def test_a_dead_redis_is_store_unavailable():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    store = open_store(f"redis://127.0.0.1:{port}/0", timeout_ms=100)
    try:
        with pytest.raises(StoreUnavailable):
            store.begin_state("c1", "s1").result()
        with pytest.raises(StoreUnavailable):  # the breaker: not even attempted for a moment
            store.begin_state("c1", None)
    finally:
        store.close()


def test_redis_py_keeps_what_the_link_does_not_speak():
    assert link_for(redis.Redis(unix_socket_path="/tmp/nowhere.sock")) is None
    assert link_for(redis.Redis(host="127.0.0.1", protocol=3)) is None
    assert link_for(redis.Redis(host="127.0.0.1", ssl=True)) is None
    assert link_for(redis.Redis(host="127.0.0.1", port=6380, db=2, password="pw", socket_timeout=0.2)) is not None

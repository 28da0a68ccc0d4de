"""The live-state parts of security, on both stores (the shared contract fixtures): rate-limit counters,
the audit trail (append, filtered newest-first reads, cap) and erasure unmapping the audit's customer."""

# ruff: noqa: F811 - `store` and `make_store` are the contract suite's fixtures, imported below

from __future__ import annotations

import re
import time

from recsvc.state.redis import RedisStore
from tests.contract.test_store_contract import make_store, store  # noqa: F401 - the shared fixtures
from tests.realtime import dump_redis


def test_counters_add_up_and_are_separate(store):
    assert store.incr_counter("k1:100", 1, 60) == 1
    assert store.incr_counter("k1:100", 5, 60) == 6
    assert store.incr_counter("k1:101", 2, 60) == 2
    assert store.incr_counter("k2:100", 1, 60) == 1


def test_counters_expire(store, monkeypatch):
    store.incr_counter("k9:1", 3, 5)
    if isinstance(store, RedisStore):
        assert 0 < store.r.ttl(f"{store.prefix}:rate:{{k9:1}}") <= 5
    else:
        real = time.monotonic
        monkeypatch.setattr(time, "monotonic", lambda: real() + 6)
        assert store.incr_counter("k9:1", 1, 5) == 1


def rec(action, ts, key_id="kkkkkkkkkkkk", **kw):
    return {"ts": ts, "at": "x", "action": action, "endpoint": "GET /v1/x", "why": "w", "key_id": key_id,
            "key_name": "n", "role": "clerk", "key_store_id": "s1", "request_id": "r", **kw}


def test_audit_reads_newest_first_with_filters(store):
    store.audit_append(rec("customer.lookup", 1.0, identifier_type="loyalty_card", found=True), "c1")
    store.audit_append(rec("consent.change", 2.0, personalisation=False), "c1")
    store.audit_append(rec("customer.view", 3.0, key_id="bbbbbbbbbbbb"), "c2")
    store.audit_append(rec("customer.lookup", 4.0, found=False), None)
    got = store.audit_read(10)
    assert [e["ts"] for e in got] == [4.0, 3.0, 2.0, 1.0]
    assert [e["customer_id"] for e in got] == [None, "c2", "c1", "c1"]
    assert not any(e["customer_erased"] for e in got) and all("subject" not in e for e in got)
    assert [e["ts"] for e in store.audit_read(10, customer_id="c1")] == [2.0, 1.0]
    assert [e["ts"] for e in store.audit_read(10, where={"key_id": "bbbbbbbbbbbb"})] == [3.0]
    assert [e["ts"] for e in store.audit_read(10, where={"action": "customer.lookup"})] == [4.0, 1.0]
    assert [e["ts"] for e in store.audit_read(10, since=2.5)] == [4.0, 3.0]
    assert [e["ts"] for e in store.audit_read(2)] == [4.0, 3.0]
    assert store.audit_read(10, customer_id="nobody") == []


def test_erasure_unmaps_the_audits_customer_but_keeps_the_entries(store):
    store.audit_append(rec("customer.view", 1.0), "erase-me-5")
    store.audit_append(rec("customer.view", 2.0), "stays-6")
    store.erase("erase-me-5")
    store.audit_append(rec("customer.erase", 3.0, key_id="aaaaaaaaaaaa"), "erase-me-5")  # after: no mapping made
    got = store.audit_read(10)
    assert [(e["customer_id"], e["customer_erased"]) for e in got] == [(None, True), ("stays-6", False),
                                                                       (None, True)]
    assert store.audit_read(10, customer_id="erase-me-5") == []
    if isinstance(store, RedisStore):
        pat = re.compile(r"(?<![A-Za-z0-9])erase-me-5(?![A-Za-z0-9])")
        texts = dump_redis(store.r, match=f"{store.prefix}:*")
        assert [k for k, text in texts if pat.search(text)] == []
        assert any("stays-6" in text for _, text in texts)  # the scan does read the values


def test_audit_is_capped(make_store, monkeypatch):
    from recsvc.state import base, memory, redis

    for mod in (base, memory, redis):
        monkeypatch.setattr(mod, "AUDIT_CAP", 50, raising=False)
    s = make_store(erasure_key=b"k")
    if isinstance(s, memory.InMemoryStore):
        from collections import deque

        s._audit = deque(maxlen=50)
    for k in range(300):
        s.audit_append(rec("customer.view", float(k)), f"c{k}")
    got = s.audit_read(1000)
    assert got[0]["ts"] == 299.0 and 50 <= len(got) < 300


def test_audit_entries_hold_only_what_they_were_given(store):
    store.audit_append(rec("customer.lookup", 1.0, identifier_type="email_sha256", found=True), "c1")
    (e,) = store.audit_read(10)
    assert set(e) == set(rec("x", 0.0)) | {"identifier_type", "found", "customer_id", "customer_erased"}

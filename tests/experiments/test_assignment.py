"""Assignment: deterministic by customer, kept when shares change, the same on two instances, carried
over from a device to the customer who logs in with it. Both backends; Redis is the real server."""

from __future__ import annotations

import threading

import pytest

from recsvc.core.experiment_stats import srm_check
from recsvc.experiments.assignment import Assigner, proposed_variant, unit_of
from recsvc.experiments.backend import MemoryBackend, RedisBackend, assign_key
from recsvc.experiments.definition import parse_experiment, with_changes
from recsvc.state import open_store
from recsvc.state.base import Provenance, identifier_key

NOW = 1_790_000_000.0


def experiment(shares=(0.5, 0.5), eid="exp-a"):
    return parse_experiment({"experiment_id": eid, "start": NOW,
                             "variants": [{"name": "control", "share": shares[0], "control": True},
                                          {"name": "B", "share": shares[1]}]}, now=NOW)


@pytest.fixture(params=["memory", "redis"])
def backend_and_store(request):
    if request.param == "memory":
        store = open_store("memory://")
        yield MemoryBackend(store), store
    else:
        url = request.getfixturevalue("redis_url")
        store = open_store(url)
        yield RedisBackend.of(store), store
    store.close()


def test_the_hash_is_deterministic_and_follows_the_shares():
    e = experiment((0.3, 0.7))
    a = Assigner(MemoryBackend())
    names = [proposed_variant(e, a.pseudonyms(e, unit_of(f"c{k}"))[0]) for k in range(20_000)]
    assert names == [proposed_variant(e, a.pseudonyms(e, unit_of(f"c{k}"))[0]) for k in range(20_000)]
    counts = [names.count("control"), names.count("B")]
    assert srm_check(counts, [6000, 14_000])["mismatch"] is False
    other = experiment((0.3, 0.7), eid="exp-b")  # another experiment (salt) shuffles customers anew
    agree = sum(n == proposed_variant(other, a.pseudonyms(other, unit_of(f"c{k}"))[0]) for k, n in enumerate(names))
    assert 0.5 < agree / 20_000 < 0.65  # independent: 0.3^2 + 0.7^2 = 0.58


def test_units_are_customers_or_anonymous_identifiers():
    card = identifier_key("loyalty_card", "0493995001")
    assert unit_of("c1").key == "c1" and unit_of("c1").is_customer
    assert unit_of("c1", "loyalty_card", "0493995001").aliases == (card,)
    dev = unit_of(None, "device", "dev-9")
    assert dev.key == identifier_key("device", "dev-9") and not dev.is_customer
    anon = unit_of("anon-123", "device", "dev-9")  # a device known only by its anonymous profile
    assert anon.key == identifier_key("device", "dev-9") and anon.aliases == ("anon-123",)
    assert unit_of(None) is None


@pytest.mark.redis
def test_first_assignments_are_kept_when_shares_change(backend_and_store):
    backend, store = backend_and_store
    e = experiment((0.5, 0.5))
    a = Assigner(backend, store)
    before = {f"c{k}": a.assign(e, unit_of(f"c{k}")) for k in range(2000)}
    changed = with_changes(e, {"variants": [{"name": "control", "share": 0.1}, {"name": "B", "share": 0.9}]},
                           NOW + 10)
    assert {c: a.assign(changed, unit_of(c)) for c in before} == before
    new = [a.assign(changed, unit_of(f"n{k}")) for k in range(2000)]
    assert srm_check([new.count("control"), new.count("B")], [200, 1800])["mismatch"] is False
    assert srm_check([new.count("control"), new.count("B")], [1000, 1000])["mismatch"] is True


@pytest.mark.redis
def test_two_instances_agree_on_every_assignment_even_when_racing(redis_url):
    s1, s2 = open_store(redis_url), open_store(redis_url)
    try:
        e = experiment((0.5, 0.5))
        first = experiment((0.9, 0.1))  # instance 1 still has old shares: the race must not split anyone
        a1, a2 = Assigner(RedisBackend.of(s1), s1), Assigner(RedisBackend.of(s2), s2)
        ids = [f"c{k}" for k in range(600)]
        got: dict[int, list[str]] = {1: [], 2: []}

        def run(n, a, exp):
            got[n] = [a.assign(exp, unit_of(c)) for c in ids]

        threads = [threading.Thread(target=run, args=(1, a1, first)), threading.Thread(target=run, args=(2, a2, e))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert got[1] == got[2]
        assert s1.r.hlen(assign_key(s1.prefix, e.experiment_id)) == len(ids)
    finally:
        s1.close()
        s2.close()


@pytest.mark.redis
def test_a_device_assigned_before_login_gives_its_variant_to_the_new_customer(backend_and_store):
    backend, store = backend_and_store
    e = experiment((0.5, 0.5))
    a = Assigner(backend, store)
    device_variant = a.assign(e, unit_of(None, "device", "dev-1"))
    # a customer whose own hash gives the other variant: the link must win, not the hash
    cid = next(f"c{k}" for k in range(100) if proposed_variant(e, a.pseudonyms(e, unit_of(f"c{k}"))[0])
               != device_variant)
    store.link_identifier(cid, "device", "dev-1", Provenance(at=NOW, by_type="customer", channel="app"))
    assert a.assign(e, unit_of(cid)) == device_variant
    assert a.assign(e, unit_of(cid, "device", "dev-1")) == device_variant  # app requests now resolve to cid
    # a customer assigned before keeps theirs when they later log in on a device with another variant
    other = next(f"k{k}" for k in range(100) if proposed_variant(e, a.pseudonyms(e, unit_of(f"k{k}"))[0])
                 != device_variant)
    own = a.assign(e, unit_of(other))
    store.link_identifier(other, "device", "dev-2", Provenance(at=NOW, by_type="customer", channel="app"))
    a.assign(e, unit_of(None, "device", "dev-2"))
    assert a.assign(e, unit_of(other, "device", "dev-2")) == own


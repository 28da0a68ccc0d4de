"""Large catalogues: candidates from the HNSW index shipped in the artifact, rescored exactly.

One artifact (3,000 items in clustered factors, some items restricted to channels) is loaded twice:
served through its index (manifest threshold below its size) and exactly (threshold raised on the
loaded model, as RECSVC_ANN_MIN_ITEMS does). The counters of recsvc.core.ann say which path ran.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recsvc.artifact import load_model
from recsvc.artifact.manifest import CHANNELS, Manifest, utcnow
from recsvc.artifact.write import sha256_file, write_model
from recsvc.core import Context, CustomerState, Filters, LiveEvent, RankOptions, ann, rank
from recsvc.core.ranking import prepare
from recsvc.core.scoring import exact_scores
from recsvc.errors import ArtifactError
from tests.modelkit import build_arrays

N_ITEMS, N_CUST, N_CAT, K = 3000, 300, 40, 16
NOW = time.time()
SCORING = {"kind": "factors", "foldin": {"regularization": 0.1, "alpha": 1.0},
           "event_weights": {"view": 1, "click": 2, "add_to_cart": 4, "purchase": 8, "return": -8, "rating": 4,
                             "offer_shown": 0, "offer_accepted": 6, "offer_declined": -3}}


def clustered_arrays(seed=5):
    arrays = build_arrays(n_items=N_ITEMS, n_customers=N_CUST, n_categories=N_CAT, k=K, seed=seed)
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (N_CAT, K)).astype(np.float32)
    cat = arrays["item_category"]
    y = centres[cat] * 0.5 + rng.normal(0, 0.3, (N_ITEMS, K)).astype(np.float32)
    arrays["item_factors"] = (y * rng.lognormal(0, 0.2, (N_ITEMS, 1))).astype(np.float32)
    taste = rng.integers(0, N_CAT, N_CUST)
    arrays["customer_factors"] = (centres[taste] * 0.5 + rng.normal(0, 0.3, (N_CUST, K))).astype(np.float32)
    ch = np.ones((N_ITEMS, len(CHANNELS)), bool)
    ch[::7, CHANNELS.index("store")] = False  # online-only
    ch[3::11, CHANNELS.index("web")] = False  # not on the web
    arrays["item_channels"] = ch
    arrays["item_bias"] = rng.normal(0, 0.05, N_ITEMS).astype(np.float32)
    return arrays


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    arrays = clustered_arrays()
    arrays["ann_index"] = ann.build_index(arrays["item_factors"], arrays["item_bias"])
    scoring = {**SCORING, "ann": {"kind": "hnsw", "min_items": 1000, "m": ann.DEFAULT_M,
                                  "ef_construction": ann.DEFAULT_EF_CONSTRUCTION,
                                  "ef_search": ann.DEFAULT_EF_SEARCH, "bias_column": True}}
    man = Manifest(model_id="als-ann", learner="als", created_at=utcnow().isoformat(), params={}, seed=0,
                   scoring=scoring)
    d = tmp_path_factory.mktemp("models")
    write_model(str(d), man, arrays)
    return str(d / "als-ann")


@pytest.fixture(scope="module")
def approx(folder):
    return load_model(folder)


@pytest.fixture(scope="module")
def exact(folder):
    m = load_model(folder)
    m.ann_min_items = 10**9  # the service's RECSVC_ANN_MIN_ITEMS above the catalogue: exact scoring
    return m


def cid(c: int) -> str:
    return f"c{c:05d}"


def ids(r) -> list[str]:
    return [o.item_id for o in r.offers]


def test_the_index_is_used_above_the_threshold_only(approx, exact):
    assert ann.index_of(approx) is not None and ann.index_of(exact) is None
    before = dict(ann.counts(approx))
    r = rank(approx, CustomerState(cid(1)), Context("web"), RankOptions(n=10), now=NOW)
    assert r.personalised and len(r.offers) == 10
    assert ann.counts(approx)["ann"] == before["ann"] + 1
    e = dict(ann.counts(exact))
    rank(exact, CustomerState(cid(1)), Context("web"), RankOptions(n=10), now=NOW)
    assert ann.counts(exact)["exact"] == e["exact"] + 1 and ann.counts(exact)["ann"] == 0
    # prepare() keeps only the vector when the index scores: no full pass over the catalogue
    assert prepare(approx, cid(1)).scores is None and prepare(exact, cid(1)).scores is not None


def test_recall_at_10_against_exact_over_200_customers(approx, exact):
    hits, scores_equal = [], True
    for c in range(200):
        for ch in ("web", "store"):
            a = rank(approx, CustomerState(cid(c)), Context(ch), RankOptions(n=10), now=NOW)
            e = rank(exact, CustomerState(cid(c)), Context(ch), RankOptions(n=10), now=NOW)
            hits.append(len(set(ids(a)) & set(ids(e))) / 10)
            es = {o.item_id: o.score for o in e.offers}
            scores_equal &= all(es[o.item_id] == o.score for o in a.offers if o.item_id in es)
    assert np.mean(hits) >= 0.95
    assert scores_equal  # candidates are rescored exactly: a shared item has the exact score


def test_scores_are_the_exact_ones_and_the_order_is_exact(approx):
    r = rank(approx, CustomerState(cid(3)), Context("app"), RankOptions(n=25), now=NOW)
    rows = np.array([approx.item_index(o.item_id) for o in r.offers])
    s = exact_scores(approx.item_factors, approx.customer_factors[3], rows, approx.item_bias)
    assert [o.score for o in r.offers] == [round(float(v), 6) for v in s]
    assert list(s) == sorted(s, reverse=True)


def test_a_narrow_filter_falls_back_to_exact(approx, exact):
    before = dict(ann.counts(approx))
    opts = RankOptions(n=10, filters=Filters(category="cat7"))  # 75 of 3,000 items
    a = rank(approx, CustomerState(cid(4)), Context("web"), opts, now=NOW)
    assert ann.counts(approx)["fallback"] == before["fallback"] + 1
    assert a == rank(exact, CustomerState(cid(4)), Context("web"), opts, now=NOW)
    assert {o.category for o in a.offers} == {"cat7"}


def test_context_boost_puts_the_browsed_category_first(approx, exact):
    ctx = Context("web", category="cat9")
    a = rank(approx, CustomerState(cid(5)), ctx, RankOptions(n=10), now=NOW)
    e = rank(exact, CustomerState(cid(5)), ctx, RankOptions(n=10), now=NOW)
    assert [o.category for o in a.offers] == ["cat9"] * 10
    assert a == e  # the category's rows are all candidates: exactly the exact list


def test_the_candidate_set_does_not_depend_on_the_channel(approx):
    u = approx.customer_factors[6]
    base = np.ones(approx.n_items, bool)
    base[::5] = False
    got = ann.candidates(approx, ann.index_of(approx), u, base, None, 40, per_channel=True)
    assert got is not None and base[got].all()
    # every channel keeps enough of them, whichever channel is asking
    assert (np.asarray(approx.item_channels)[got].sum(axis=0) >= 40).all()


customer = st.one_of(st.integers(0, N_CUST - 1).map(cid), st.just("stranger"))
items = st.integers(0, N_ITEMS - 1).map(lambda i: f"i{i:05d}")
events = st.lists(st.tuples(items, st.sampled_from(["view", "click", "add_to_cart", "purchase", "return",
                                                    "offer_declined"]), st.sampled_from(CHANNELS)), max_size=6)
context_parts = st.fixed_dictionaries({
    "store_id": st.sampled_from([None, "s1", "nowhere"]),
    "locale": st.sampled_from([None, "en-GB", "fr-FR"]),
    "item_id": st.one_of(st.none(), items),
    "category": st.sampled_from([None, "cat1", "cat3"]),
    "cart": st.lists(items, max_size=3, unique=True).map(tuple),
})
options = st.builds(
    RankOptions, n=st.integers(1, 25),
    filters=st.builds(Filters, category=st.sampled_from([None, "cat0", "cat2"]),
                      max_price=st.sampled_from([None, 500.0, 2000.0]), in_stock_only=st.booleans()),
    exclude=st.lists(items, max_size=3, unique=True).map(tuple),
    exclude_history=st.sampled_from(["seen", "purchased", "none"]),
    max_per_category=st.sampled_from([None, 1, 3]),
)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def state_of(c, evs):
    return CustomerState(customer_id=c, events=tuple(LiveEvent(i, e, ch, NOW - 60 + k)
                                                     for k, (i, e, ch) in enumerate(evs)))


@SETTINGS
@given(c=customer, evs=events, ctx=context_parts, opts=options)
def test_parity_filters_and_exclusions_hold_through_the_index(approx, c, evs, ctx, opts):
    state = state_of(c, evs)
    lists = {ch: rank(approx, state, Context(channel=ch, **ctx), opts, now=NOW) for ch in CHANNELS}
    allowed = {ch: {str(approx.item_ids[r]) for r in np.flatnonzero(approx.item_channels[:, k])}
               for k, ch in enumerate(CHANNELS)}
    for a in CHANNELS:
        for b in CHANNELS:
            both = allowed[a] & allowed[b]
            la = [i for i in ids(lists[a]) if i in both and i in ids(lists[b])]
            lb = [i for i in ids(lists[b]) if i in both and i in ids(lists[a])]
            assert la == lb, (a, b)
    named = set(opts.exclude) | set(ctx["cart"]) | ({ctx["item_id"]} if ctx["item_id"] else set())
    bought = {i for i, e, _ in evs if e in ("purchase", "return")} if opts.exclude_history != "none" else set()
    for ch, r in lists.items():
        got = ids(r)
        assert len(got) == len(set(got)) <= opts.n
        assert not (named | bought) & set(got)
        for o in r.offers:
            row = approx.item_index(o.item_id)
            assert approx.item_channels[row, CHANNELS.index(ch)]
            if opts.filters.category:
                assert o.category == opts.filters.category
            if opts.filters.max_price is not None:
                assert o.price <= opts.filters.max_price
        assert rank(approx, state, Context(channel=ch, **ctx), opts, now=NOW) == r  # deterministic


def test_broad_requests_all_go_through_the_index(approx):
    """Seeded mixes of channels, contexts, caps, broad filters and exclusions: none falls back."""
    rng = np.random.default_rng(0)
    before = dict(ann.counts(approx))
    for _ in range(100):
        ctx = Context(str(rng.choice(CHANNELS)), store_id=str(rng.choice(["s1", "s2"])),
                      item_id=f"i{int(rng.integers(N_ITEMS)):05d}" if rng.random() < 0.3 else None,
                      category="cat3" if rng.random() < 0.3 else None)
        opts = RankOptions(n=int(rng.integers(1, 11)), max_per_category=[None, 2][int(rng.integers(2))],
                           filters=Filters(in_stock_only=bool(rng.random() < 0.5)),
                           exclude=(f"i{int(rng.integers(N_ITEMS)):05d}",), exclude_history="seen")
        rank(approx, CustomerState(cid(int(rng.integers(N_CUST)))), ctx, opts, now=NOW)
    assert ann.counts(approx)["ann"] - before["ann"] == 100
    assert ann.counts(approx)["fallback"] == before["fallback"]


# ---------------------------------------------------------------- the artifact
def test_the_index_travels_in_the_artifact_with_its_checksum(folder, tmp_path):
    with open(os.path.join(folder, "manifest.json"), encoding="utf-8") as f:
        man = json.load(f)
    assert man["files"]["ann_index.npy"] == sha256_file(os.path.join(folder, "ann_index.npy"))
    a = np.load(os.path.join(folder, "ann_index.npy"), allow_pickle=False)
    assert a.dtype == np.uint8 and a.ndim == 1
    import shutil

    bad = tmp_path / "als-ann"
    shutil.copytree(folder, bad)
    raw = bytearray((bad / "ann_index.npy").read_bytes())
    raw[-1] ^= 0xFF
    (bad / "ann_index.npy").write_bytes(bytes(raw))
    with pytest.raises(ArtifactError, match="checksum of ann_index.npy"):
        load_model(str(bad))


def test_the_index_build_is_deterministic():
    arrays = clustered_arrays(seed=9)
    one = ann.build_index(arrays["item_factors"][:800], arrays["item_bias"][:800])
    two = ann.build_index(arrays["item_factors"][:800], arrays["item_bias"][:800])
    assert one.dtype == np.uint8 and np.array_equal(one, two)


def test_batch_lists_are_the_api_lists(approx):
    from recsvc.core.batch import recommend_many

    cids = [cid(c) for c in range(20)]
    ctx, opts = Context("store", store_id="s1"), RankOptions(n=5)
    got = list(recommend_many(approx, cids, ctx, opts))
    want = [(c, o.rank, o.item_id, o.score) for c in cids
            for o in rank(approx, CustomerState(c), ctx, opts).offers]
    assert got == want


"""The request path's shortcuts give exactly what the plain computation gives: scores prepared while
live state is read, reasons worked out for the returned rows only, fallbacks filled to n."""

from __future__ import annotations

import numpy as np
import pytest

from recsvc.artifact import load_model
from recsvc.artifact.manifest import PURCHASED, SEEN
from recsvc.artifact.registry import Registry
from recsvc.core import Context, CustomerState, LiveEvent, RankOptions, rank
from recsvc.core.ranking import prepare
from tests.modelkit import make_model

AT = 1.75e9


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    d = tmp_path_factory.mktemp("m")
    history = {c: [((c * 7) % 60, SEEN | PURCHASED), ((c * 7 + 1) % 60, SEEN), ((c * 7 + 2) % 60, SEEN)]
               for c in range(40)}
    make_model(str(d), n_items=60, n_customers=40, history=history)
    return load_model(Registry(str(d)).resolve("champion"))


def states():
    yield CustomerState("c00003")
    yield CustomerState("c00003", consent=False)
    yield CustomerState("c00003", erased=True)
    yield CustomerState("c00003", events=(LiveEvent("i00010", "view", "app", AT - 60),))
    yield CustomerState("c00003", events=(LiveEvent("i00010", "offer_shown", "web", AT - 60),))
    yield CustomerState("c00003", events=(LiveEvent("i00021", "purchase", "store", AT - 60),))
    yield CustomerState("brand-new")
    yield CustomerState()


@pytest.mark.parametrize("state", list(states()))
def test_prepared_scores_give_the_same_ranking(model, state):
    ctx, opts = Context("store", store_id="s1", at=AT), RankOptions(n=10, max_per_category=2)
    for who in ("c00003", "c00004", None):
        assert rank(model, state, ctx, opts, prepared=prepare(model, who)) == rank(model, state, ctx, opts)


def test_prepare_is_none_without_a_model_row(model):
    assert prepare(model, None) is None
    assert prepare(model, "brand-new") is None
    p = prepare(model, "c00003")
    assert p is not None and p.scores.shape == (model.n_items,)


def test_reasons_point_at_the_first_anchor_in_order_viewed_cart_purchase_interest(model):
    """An item that neighbours several anchors is explained by the viewed item first, then the cart,
    then what the customer bought, then what they looked at."""
    nb = np.asarray(model.neighbours)
    viewed, cart = 5, 9
    r = rank(model, CustomerState("c00003"), Context("web", item_id=f"i{viewed:05d}", cart=(f"i{cart:05d}",),
                                                    at=AT), RankOptions(n=60, exclude_history="none"))
    title = {int(model.item_index(o.item_id)): o for o in r.offers}
    bought = [21]  # c00003's purchase (3 * 7)
    looked = [22, 23]
    for row, offer in title.items():
        codes = [x.code for x in offer.reasons]
        assert codes, offer
        if row in nb[viewed]:
            assert codes[0] == "similar_to_viewed" and f"Item i{viewed:05d}" in offer.reasons[0].text
        elif row in nb[cart]:
            assert codes[0] == "goes_with_cart" and f"Item i{cart:05d}" in offer.reasons[0].text
        elif any(row in nb[b] for b in bought):
            assert codes[0] == "similar_to_purchase"
        elif any(row in nb[a] for a in looked):
            assert codes[0] == "similar_to_interest"
        else:
            assert codes[0] in ("in_your_taste", "picked_for_you", "bought_before")
        if row in bought:
            assert "bought_before" in codes


def test_a_fallback_fills_n_when_an_earlier_source_runs_dry(model):
    """Store s1's popular list (items 3-12) is excluded whole: the global list gives all n."""
    for n in (1, 5, 25):
        r = rank(model, CustomerState(), Context("store", store_id="s1", at=AT),
                 RankOptions(n=n, exclude=tuple(f"i{i:05d}" for i in range(3, 13))))
        assert len(r.offers) == n and len({o.item_id for o in r.offers}) == n
        assert r.strategy == "popular"
    r = rank(model, CustomerState(), Context("store", store_id="s1", at=AT),
             RankOptions(n=25, exclude=tuple(f"i{i:05d}" for i in range(5, 13))))
    assert [o.item_id for o in r.offers][:2] == ["i00003", "i00004"] and len(r.offers) == 25
    assert r.strategy == "store_popular"

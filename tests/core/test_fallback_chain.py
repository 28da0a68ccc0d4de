"""Each step of the cold-start chain: context -> store -> locale -> overall popularity."""

from __future__ import annotations

import numpy as np
import pytest

from recsvc.artifact import load_model
from recsvc.core import Context, CustomerState, RankOptions, rank
from tests.modelkit import make_model


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    d = tmp_path_factory.mktemp("m")
    make_model(str(d), n_items=60, n_customers=20)
    from recsvc.artifact.registry import Registry

    return load_model(Registry(str(d)).resolve("champion"))


def ids(r):
    return [o.item_id for o in r.offers]


def group_list(model, items, scores_name, g):
    return [str(model.item_ids[i]) for i in np.asarray(getattr(model, items))[g] if i >= 0]


@pytest.mark.parametrize("who,why", [(CustomerState(), "anonymous"), (CustomerState("stranger"), "unknown_customer"),
                                     (CustomerState("c00001", consent=False), "no_consent"),
                                     (CustomerState("c00001", erased=True), "erased")])
def test_not_personalised_says_why(model, who, why):
    r = rank(model, who, Context("web"), RankOptions(n=5))
    assert not r.personalised and r.fallback_reason == why and len(r.offers) == 5


def test_viewed_item_context_comes_first(model):
    r = rank(model, CustomerState(), Context("web", item_id="i00004", store_id="s1"), RankOptions(n=5))
    assert r.strategy == "context"
    nb = {str(model.item_ids[i]) for i in model.neighbours[model.item_index("i00004")]}
    assert set(ids(r)) <= nb and "i00004" not in ids(r)
    assert all(o.reasons[0].code == "similar_to_viewed" for o in r.offers)


def test_cart_context(model):
    r = rank(model, CustomerState(), Context("app", cart=("i00001", "i00002")), RankOptions(n=3))
    assert r.strategy == "context" and not {"i00001", "i00002"} & set(ids(r))


def test_store_then_locale_then_overall(model):
    store = rank(model, CustomerState(), Context("store", store_id="s2", locale="fr-FR"), RankOptions(n=10))
    assert store.strategy == "store_popular"
    assert ids(store) == group_list(model, "pop_store_items", "pop_store_scores", model.store_index("s2"))[:10]
    locale = rank(model, CustomerState(), Context("web", store_id="unknown-store", locale="fr-FR"), RankOptions(n=10))
    assert locale.strategy == "locale_popular"
    assert ids(locale) == group_list(model, "pop_locale_items", "pop_locale_scores", model.locale_index("fr-FR"))[:10]
    overall = rank(model, CustomerState(), Context("call_center"), RankOptions(n=10))
    assert overall.strategy == "popular"
    order = np.lexsort((np.arange(model.n_items), -np.asarray(model.pop_global)))
    assert ids(overall) == [str(model.item_ids[i]) for i in order[:10]]


def test_a_short_group_list_is_filled_from_the_next_step(model):
    r = rank(model, CustomerState(), Context("store", store_id="s1", locale="en-GB"), RankOptions(n=25))
    assert len(r.offers) == 25  # store top list has 10: locale and overall fill the rest
    codes = [o.reasons[0].code for o in r.offers]
    assert codes[:10] == ["popular_in_store"] * 10 and "popular_in_locale" in codes[10:]

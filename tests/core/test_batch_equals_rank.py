"""Batch recommendations (recsvc.core.batch, what `recsvc-train recommend` writes) give exactly what
the API's `rank()` gives, customer by customer: the vectorised path and the per-customer one alike."""

from __future__ import annotations

import numpy as np
import pytest

from recsvc.artifact import load_model
from recsvc.artifact.manifest import CHANNELS, DECLINED, PURCHASED, RETURNED, SEEN, Manifest, utcnow
from recsvc.artifact.write import write_model
from recsvc.core import Context, CustomerState, Filters, RankOptions, rank
from recsvc.core.batch import recommend_many
from tests.modelkit import build_arrays

N_ITEMS, N_CUST = 400, 120
AT = 1.75e9


def _model(tmp_path_factory, kind: str, name: str):
    rng = np.random.default_rng(11)
    flags = [SEEN, SEEN | PURCHASED, SEEN | DECLINED, SEEN | RETURNED, PURCHASED]
    history = {c: [(int(i), int(rng.choice(flags))) for i in rng.choice(N_ITEMS, rng.integers(0, 30), replace=False)]
               for c in range(N_CUST)}
    arrays = build_arrays(n_items=N_ITEMS, n_customers=N_CUST, n_categories=9, k=8, seed=5, history=history,
                          kind=kind)
    ch = np.ones((N_ITEMS, len(CHANNELS)), bool)
    ch[::5, CHANNELS.index("store")] = False
    ch[2::13, CHANNELS.index("web")] = False
    arrays["item_channels"] = ch
    arrays["item_locales"][3::7, 1] = False
    arrays["item_valid_to"][::17] = int(AT) - 1  # expired
    if kind == "factors":
        arrays["customer_factors"][::10] = 0  # customers the model cannot personalise
        arrays["item_factors"][::3] = np.round(arrays["item_factors"][::3], 1)  # equal scores
    man = Manifest(model_id=name, learner="als" if kind == "factors" else "itemknn", created_at=utcnow().isoformat(),
                   params={}, seed=0,
                   scoring={"kind": kind, "foldin": {"regularization": 0.1, "alpha": 1.0},
                            "event_weights": {"view": 1, "click": 2, "add_to_cart": 4, "purchase": 8,
                                              "return": -8, "rating": 4, "offer_shown": 0,
                                              "offer_accepted": 6, "offer_declined": -3}})
    d = tmp_path_factory.mktemp(name)
    write_model(str(d), man, arrays)
    return load_model(str(d / name))


@pytest.fixture(scope="module", params=["factors", "neighbours"])
def model(request, tmp_path_factory):
    return _model(tmp_path_factory, request.param, f"batch-{request.param}")


CASES = [
    (Context("web", at=AT), RankOptions(n=10)),
    (Context("store", store_id="s1", at=AT), RankOptions(n=10, exclude_history="seen")),
    (Context("app", locale="fr-FR", at=AT), RankOptions(n=30, exclude_history="none", exclude=("i00001", "i00004"))),
    (Context("call_center", at=AT), RankOptions(n=7, max_per_category=1)),
    (Context("web", locale="en-GB", at=AT), RankOptions(n=12, max_per_category=2, decline_cap=1)),
    (Context("store", store_id="s2", at=AT), RankOptions(n=5, filters=Filters(max_price=200.0))),
    (Context("app", at=AT), RankOptions(n=10, filters=Filters(category="cat3"))),
    (Context("web", at=AT), RankOptions(n=100, max_per_category=3)),
]


@pytest.mark.parametrize("ctx,opts", CASES)
def test_batch_rows_are_rank_offers(model, ctx, opts):
    customers = [str(c) for c in model.customer_ids] + ["not-a-customer"]
    got: dict[str, list] = {c: [] for c in customers}
    for cid, k, item, score in recommend_many(model, customers, ctx, opts, block=32):
        got[cid].append((k, item, score))
    for cid in customers:
        r = rank(model, CustomerState(customer_id=cid), ctx, opts)
        assert got[cid] == [(o.rank, o.item_id, o.score) for o in r.offers], cid

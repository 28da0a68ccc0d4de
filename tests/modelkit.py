"""Build small, complete model artifacts for tests without running training.

Item i belongs to category i % n_categories; customer c likes the category c % n_categories
(its factor points at that category), so expected rankings are easy to reason about.
"""

from __future__ import annotations

import numpy as np

from recsvc.artifact.manifest import CHANNELS, NO_DATE_FROM, NO_DATE_TO, PURCHASED, SEEN, Manifest, utcnow
from recsvc.artifact.registry import Registry
from recsvc.artifact.write import write_model


def ids(prefix: str, n: int) -> np.ndarray:
    return np.array(sorted(f"{prefix}{k:05d}" for k in range(n)))


def build_arrays(n_items=60, n_customers=40, n_categories=4, k=8, stores=("s1", "s2"),
                 locales=("en-GB", "fr-FR"), seed=0, history=None, stock=None, kind="factors"):
    """history: {customer row: [(item row, flags)]}; stock: {store: {item row: qty}}."""
    rng = np.random.default_rng(seed)
    item_ids, cust_ids = ids("i", n_items), ids("c", n_customers)
    cat = (np.arange(n_items) % n_categories).astype(np.int32)
    y = rng.normal(0, 0.05, (n_items, k)).astype(np.float32)
    y[np.arange(n_items), cat % k] += 1.0
    y *= (1.0 + 0.01 * np.arange(n_items)[::-1, None]).astype(np.float32)  # distinct scores
    x = rng.normal(0, 0.05, (n_customers, k)).astype(np.float32)
    x[np.arange(n_customers), (np.arange(n_customers) % n_categories) % k] += 1.0
    history = history if history is not None else {c: [((c * 7) % n_items, SEEN | PURCHASED)] for c in range(n_customers)}
    indptr = np.zeros(n_customers + 1, np.int64)
    h_items, h_flags = [], []
    for c in range(n_customers):
        rows = sorted(history.get(c, []))
        indptr[c + 1] = indptr[c] + len(rows)
        h_items += [r for r, _ in rows]
        h_flags += [f for _, f in rows]
    stores = tuple(sorted(stores))
    stock = stock if stock is not None else {s: {i: (i % 3) for i in range(n_items)} for s in stores}
    s_indptr, s_items, s_qty = [0], [], []
    for s in stores:
        d = stock.get(s, {})
        for i in sorted(d):
            s_items.append(i)
            s_qty.append(d[i])
        s_indptr.append(len(s_items))
    pop = (n_items - np.arange(n_items)).astype(np.float32)
    m = 10

    def group_top(n_groups, shift):
        it = np.array([np.roll(np.arange(n_items), -shift * (g + 1))[:m] for g in range(n_groups)], np.int32)
        return it.reshape(n_groups, m), pop[it].reshape(n_groups, m).astype(np.float32)

    ps_i, ps_s = group_top(len(stores), 3)
    pl_i, pl_s = group_top(len(locales), 5)
    pg_i, pg_s = group_top(2, 7)
    arrays = {
        "item_ids": item_ids,
        "item_title": np.array([f"Item {i}" for i in item_ids]),
        "item_category": cat,
        "category_names": np.array([f"cat{c}" for c in range(n_categories)]),
        "item_price": (10.0 + np.arange(n_items)).astype(np.float32),
        "item_valid_from": np.full(n_items, NO_DATE_FROM, np.int64),
        "item_valid_to": np.full(n_items, NO_DATE_TO, np.int64),
        "locale_names": np.array(sorted(locales)),
        "item_locales": np.ones((n_items, len(locales)), bool),
        "item_channels": np.ones((n_items, len(CHANNELS)), bool),
        "pop_global": pop,
        "customer_ids": cust_ids,
        "customer_segment": (np.arange(n_customers) % 2).astype(np.int16),
        "segment_names": np.array(["family", "young"]),
        "hist_indptr": indptr,
        "hist_items": np.array(h_items, np.int32),
        "hist_flags": np.array(h_flags, np.uint8),
        "hist_weights": np.full(len(h_items), 8.0, np.float32),
        "store_ids": np.array(stores),
        "pop_store_items": ps_i, "pop_store_scores": ps_s,
        "pop_locale_items": pl_i, "pop_locale_scores": pl_s,
        "pop_segment_items": pg_i, "pop_segment_scores": pg_s,
        "stock_indptr": np.array(s_indptr, np.int64),
        "stock_items": np.array(s_items, np.int32),
        "stock_qty": np.array(s_qty, np.int32),
    }
    if kind == "factors":
        arrays["item_factors"] = y
        arrays["customer_factors"] = x
    if kind in ("factors", "neighbours"):
        nbs, sc = [], []
        for a in range(0, n_items, 2048):
            sims = y[a:a + 2048] @ y.T
            sims[np.arange(sims.shape[0]), np.arange(a, a + sims.shape[0])] = -np.inf
            nb = np.argsort(-sims, axis=1, kind="stable")[:, :10].astype(np.int32)
            nbs.append(nb)
            sc.append(np.take_along_axis(sims, nb, axis=1).astype(np.float32))
        arrays["neighbours"] = np.concatenate(nbs)
        arrays["neighbour_scores"] = np.concatenate(sc)
    return arrays


def make_model(models_dir: str, learner="als", alias="champion", when=None, metrics=None, **kw) -> str:
    """Write a complete test model into models_dir (and point `alias` at it). Returns the model id."""
    arrays = build_arrays(**kw)
    kind = kw.get("kind", "factors")
    when = when or utcnow()
    mid = f"{learner}-{when.strftime('%Y%m%dT%H%M%SZ')}-{np.random.default_rng(kw.get('seed', 0)).integers(1 << 24):06x}"
    man = Manifest(model_id=mid, learner=learner, created_at=when.isoformat(), params={"factors": 8},
                   seed=kw.get("seed", 0),
                   scoring={"kind": kind, "foldin": {"regularization": 0.1, "alpha": 1.0} if kind == "factors" else None,
                            "event_weights": {"view": 1.0, "click": 2.0, "add_to_cart": 4.0, "purchase": 8.0,
                                              "return": -8.0, "rating": 4.0, "offer_shown": 0.0,
                                              "offer_accepted": 6.0, "offer_declined": -2.0}},
                   data={"fingerprint": "test", "counts": {"items": kw.get("n_items", 60)}},
                   metrics=metrics or {"overall": {"ndcg@10": 0.3}, "per_channel": {}})
    write_model(models_dir, man, arrays)
    if alias:
        Registry(models_dir).set_alias(alias, mid)
    return mid

"""Event weights, returns and declines against the item, recency, channel balancing, aggregation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.errors import ConfigError
from training.weighting import WeightConfig, aggregate, event_weights, reference_total

DAY = 86400.0
NOW = 1_800_000_000.0


def frame(rows):
    """rows: (customer, item, event, channel, age_days[, quantity[, value]])."""
    full = [r + (1.0, np.nan)[len(r) - 5:] if len(r) < 7 else r for r in rows]
    df = pd.DataFrame(full, columns=["customer_id", "item_id", "event", "channel", "age", "quantity", "value"])
    df["ts"] = (NOW - df.pop("age") * DAY).astype(np.int64)
    return df


def totals(df, w):
    cust, cust_ids = pd.factorize(df["customer_id"])
    item, _ = pd.factorize(df["item_id"])
    m = aggregate(cust, item, w, len(cust_ids), int(item.max()) + 1)
    return dict(zip(cust_ids, np.asarray(m.sum(axis=1)).ravel(), strict=True)), m


FLAT = WeightConfig(half_life_days=None, channel_balance=0.0)


def test_event_weights_order_and_quantity():
    df = frame([("c", "i", e, "web", 0) for e in ("view", "click", "add_to_cart", "purchase")]
               + [("c", "i", "purchase", "web", 0, 3.0), ("c", "i", "purchase", "web", 0, 50.0)])
    w = event_weights(df, FLAT, NOW)
    assert w.dtype == np.float32
    assert w.tolist() == [1.0, 2.0, 4.0, 8.0, 24.0, 40.0]  # quantity capped at 5


def test_ratings_scale_with_their_value():
    df = frame([("c", "i", "rating", "web", 0, 1.0, 5.0), ("c", "j", "rating", "web", 0, 1.0, 1.0),
                ("c", "k", "rating", "web", 0)])
    assert event_weights(df, FLAT, NOW).tolist() == pytest.approx([4.0, 0.8, 4.0])
    flat = WeightConfig(half_life_days=None, channel_balance=0.0, rating_scale=None)
    assert event_weights(df, flat, NOW).tolist() == [4.0, 4.0, 4.0]


def test_returns_and_declines_count_against_the_item():
    df = frame([("c", "bought", "purchase", "web", 10), ("c", "bought", "return", "store", 2),
                ("c", "viewed", "view", "web", 5), ("c", "viewed", "view", "web", 4),
                ("c", "offered", "click", "web", 3), ("c", "offered", "offer_declined", "store", 1),
                ("c", "kept", "purchase", "store", 3)])
    for cfg in (FLAT, WeightConfig()):  # with and without recency and balancing
        w = event_weights(df, cfg, NOW)
        assert w[1] < 0 and w[5] < 0
        _, m = totals(df, w)
        items = dict(zip(pd.factorize(df["item_id"])[1], range(4), strict=True))
        kept = set(m.indices.tolist())
        assert items["bought"] not in kept  # returned: counts against it, pair dropped
        assert items["offered"] not in kept  # click 2 - decline 3 < 0
        assert {items["viewed"], items["kept"]} <= kept
        assert (m.data > 0).all() and m.dtype == np.float32


def test_recency_halves_weight_per_half_life():
    df = frame([("c", "i", "purchase", "web", 0), ("c", "j", "purchase", "web", 30),
                ("c", "k", "purchase", "web", 60), ("c", "l", "purchase", "web", -5)])
    w = event_weights(df, WeightConfig(half_life_days=30.0, channel_balance=0.0), NOW)
    assert w.tolist() == pytest.approx([8.0, 4.0, 2.0, 8.0])  # after `now`: not decayed


def test_a_later_return_cancels_a_purchase_even_with_recency():
    df = frame([("c", "i", "purchase", "web", 20), ("c", "i", "return", "web", 5), ("c", "j", "view", "web", 1)])
    _, m = totals(df, event_weights(df, WeightConfig(), NOW))
    assert m.indices.tolist() == [1]


def _store_vs_web(b):
    receipts = [("store_cust", f"s{k}", "purchase", "store", 2) for k in range(3)]
    views = [("web_cust", f"w{k % 150}", "view", "web", 2) for k in range(300)]
    df = frame(receipts + views)
    t, _ = totals(df, event_weights(df, WeightConfig(channel_balance=b), NOW))
    return t["store_cust"] / t["web_cust"]


def test_channel_balancing_gives_a_few_receipts_the_confidence_of_many_views():
    assert _store_vs_web(0.0) == pytest.approx(24 / 300, rel=1e-3)  # off: 3 receipts x 8 vs 300 views x 1
    assert 0.5 < _store_vs_web(1.0) < 2.0  # full: comparable
    assert _store_vs_web(0.0) < _store_vs_web(0.5) < _store_vs_web(1.0)


def test_channel_balancing_keeps_store_purchases_of_a_heavy_browser_visible():
    rows = [("c", f"w{k % 100}", "view", "web", 1) for k in range(500)]
    rows += [("c", "bought_in_store", "purchase", "store", 1), ("c", "w0", "purchase", "web", 1)]
    df = frame(rows)
    item_of = {v: k for k, v in enumerate(pd.factorize(df["item_id"])[1])}
    _, off = totals(df, event_weights(df, WeightConfig(channel_balance=0.0), NOW))
    _, on = totals(df, event_weights(df, WeightConfig(channel_balance=1.0), NOW))
    share = {}
    for name, m in (("off", off), ("on", on)):
        row = dict(zip(m.indices.tolist(), m.data.tolist(), strict=True))
        share[name] = row[item_of["bought_in_store"]] / sum(row.values())
    assert share["off"] < 0.02 and share["on"] > 0.3  # the store channel holds half of the budget
    # inside a block the purchase still outweighs a view
    row = dict(zip(on.indices.tolist(), on.data.tolist(), strict=True))
    assert row[item_of["w0"]] > row[item_of["w1"]]


def test_cross_channel_return_cancels_with_balancing():
    rows = [("c", f"w{k}", "view", "web", 3) for k in range(200)]
    rows += [("c", "coat", "purchase", "web", 3), ("c", "coat", "return", "store", 3),
             ("c", "hat", "purchase", "store", 3)]
    df = frame(rows)
    _, m = totals(df, event_weights(df, WeightConfig(channel_balance=1.0, half_life_days=None), NOW))
    coat = pd.factorize(df["item_id"])[1].get_loc("coat")
    assert coat not in m.indices.tolist()


def test_categorical_and_plain_columns_give_the_same_weights():
    df = frame([("a", "i", "view", "web", 1), ("a", "j", "purchase", "store", 2), ("b", "i", "return", "app", 0),
                ("b", "i", "purchase", "app", 3)])
    cat = df.copy()
    for c in ("customer_id", "item_id", "event", "channel"):
        cat[c] = cat[c].astype("category")
    assert event_weights(df, WeightConfig(), NOW).tolist() == event_weights(cat, WeightConfig(), NOW).tolist()


def test_aggregate_sums_and_drops_non_positive_pairs():
    m = aggregate(np.array([0, 0, 1, 1, 2, -1]), np.array([1, 1, 0, 0, 2, 0]),
                  np.array([1.0, 2.5, 1.0, -1.0, -3.0, 9.0]), 4, 3)
    assert m.shape == (4, 3) and m.dtype == np.float32 and m.has_sorted_indices
    assert m.toarray().tolist() == [[0, 3.5, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0]]


@pytest.mark.parametrize("kw,needle", [
    ({"event_weights": {"like": 1.0}}, "unknown event like"),
    ({"channel_balance": 1.5}, "channel_balance"),
    ({"half_life_days": 0}, "half_life_days"),
    ({"balance_ref": -1.0}, "balance_ref"),
])
def test_bad_config(kw, needle):
    with pytest.raises(ConfigError, match=needle):
        WeightConfig(**kw)


def test_reference_total_is_the_median_block_total():
    df = frame([("a", "i", "purchase", "store", 1), ("b", "i", "view", "web", 1), ("b", "j", "view", "web", 1),
                ("b", "k", "purchase", "app", 1)])
    assert reference_total(df, WeightConfig()) == 8.0  # blocks: 8 (a/store), 2 (b/web), 8 (b/app)
    assert reference_total(df, WeightConfig(balance_ref=3.0)) == 3.0
    # passing it back as balance_ref gives the same weights
    same = WeightConfig(balance_ref=reference_total(df, WeightConfig()))
    assert event_weights(df, same, NOW).tolist() == event_weights(df, WeightConfig(), NOW).tolist()

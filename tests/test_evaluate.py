"""Metrics against hand-computed values, evaluate()'s sections, customer groups and the baselines."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from recsvc.core import scoring
from training import evaluate as ev
from training.learners.base import Factors


def keys(truth: dict[int, list[int]], n_items: int) -> np.ndarray:
    return np.unique([r * n_items + i for r, items in truth.items() for i in items]).astype(np.int64)


# ---------------------------------------------------------------- pure metrics, by hand
def test_metrics_by_hand():
    # one customer, truth {2, 5}, list [1, 2, 3]: one hit at rank 2
    recs = np.array([[1, 2, 3]])
    hits = ev.hits_matrix(recs, keys({0: [2, 5]}, 10), 10)
    n_truth = np.array([2])
    assert hits.tolist() == [[False, True, False]]
    assert ev.precision_at_k(hits, 3)[0] == pytest.approx(1 / 3)
    assert ev.recall_at_k(hits, n_truth)[0] == pytest.approx(1 / 2)
    assert ev.ndcg_at_k(hits, n_truth, 3)[0] == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))
    assert ev.average_precision_at_k(hits, n_truth, 3)[0] == pytest.approx((1 / 2) / 2)
    assert ev.hit_rate_at_k(hits)[0] == 1.0


def test_average_precision_is_the_kaggle_definition():
    # truth {1, 3, 9, 7} (4 > k=3), list [1, 2, 3]: hits at 1 and 3 -> (1/1 + 2/3) / min(4, 3)
    hits = ev.hits_matrix(np.array([[1, 2, 3]]), keys({0: [1, 3, 9, 7]}, 10), 10)
    assert ev.average_precision_at_k(hits, np.array([4]), 3)[0] == pytest.approx((1 + 2 / 3) / 3)
    # a perfect list scores 1 for every metric but recall when the truth is longer than k
    hits = ev.hits_matrix(np.array([[1, 3, 9]]), keys({0: [1, 3, 9, 7]}, 10), 10)
    m = ev.per_customer_metrics(hits, np.array([4]), 3)[0]
    assert m.tolist() == pytest.approx([1.0, 0.75, 1.0, 1.0, 1.0])


def test_padding_and_repeats_never_score():
    recs = ev.dedupe(np.array([[4, 4, -1, 5], [-1, -1, 2, 2]]))
    assert recs.tolist() == [[4, -1, -1, 5], [-1, -1, 2, -1]]
    hits = ev.hits_matrix(recs, keys({0: [4], 1: [2]}, 10), 10)
    assert hits.sum() == 2


def test_coverage_counts_distinct_items_of_the_catalogue():
    assert ev.coverage(np.array([[0, 1, -1], [1, 2, 3]]), 8) == pytest.approx(4 / 8)


def test_metrics_match_a_reference_loop_on_random_lists():
    rng = np.random.default_rng(3)
    n, k, n_items = 200, 10, 40
    recs = np.array([rng.choice(n_items, k, replace=False) for _ in range(n)])
    truth = {r: list(rng.choice(n_items, rng.integers(1, 15), replace=False)) for r in range(n)}
    hits = ev.hits_matrix(recs, keys(truth, n_items), n_items)
    m = ev.per_customer_metrics(hits, np.array([len(truth[r]) for r in range(n)]), k)
    for r in range(n):
        t, lst = set(truth[r]), list(recs[r])
        h = [i in t for i in lst]
        dcg = sum(1 / math.log2(j + 2) for j, x in enumerate(h) if x)
        idcg = sum(1 / math.log2(j + 2) for j in range(min(len(t), k)))
        ap = sum(sum(h[: j + 1]) / (j + 1) for j, x in enumerate(h) if x) / min(len(t), k)
        assert m[r].tolist() == pytest.approx([sum(h) / k, sum(h) / len(t), dcg / idcg, ap, float(any(h))])


def test_bootstrap_interval_is_seeded_and_sane():
    v = np.random.default_rng(0).random((500, 2))
    v[:, 1] = 0.25
    ci = ev.bootstrap_ci(v, 300, seed=7)
    assert ci[0, 0] < v[:, 0].mean() < ci[0, 1]
    assert ci[1].tolist() == pytest.approx([0.25, 0.25])
    np.testing.assert_array_equal(ci, ev.bootstrap_ci(v, 300, seed=7))
    assert np.isnan(ev.bootstrap_ci(v, 0, seed=7)).all()


# ---------------------------------------------------------------- evaluate()
N_ITEMS = 12
# customers 0..5; held-out items; channels: web for even customers' first item, store otherwise
TEST_CUST = np.array([0, 0, 1, 2, 2, 3, 4, 5, 5])
TEST_ITEM = np.array([1, 2, 3, 4, 5, 6, 7, 8, 1])
TEST_CHAN = np.array(["web", "store", "store", "web", "web", "store", "app", "store", "web"])


def oracle(rows: np.ndarray) -> np.ndarray:
    """Recommends exactly each customer's held-out items, then item 11 (never relevant)."""
    out = np.full((len(rows), 3), 11)
    for i, r in enumerate(rows):
        t = sorted(set(TEST_ITEM[TEST_CUST == r]))
        out[i, : len(t)] = t
    return out


def test_evaluate_perfect_lists_and_sections():
    res = ev.evaluate(oracle, TEST_CUST, TEST_ITEM, TEST_CHAN, k=3, n_items=N_ITEMS, bootstrap=50)
    assert res["k"] == 3 and res["customers"] == 6
    o = res["overall"]
    assert o["customers"] == 6 and o["ndcg@3"] == pytest.approx(1.0) and o["recall@3"] == pytest.approx(1.0)
    assert o["hit_rate@3"] == 1.0 and o["map@3"] == pytest.approx(1.0)
    assert o["precision@3"] == pytest.approx(np.mean([2, 1, 2, 1, 1, 2]) / 3)
    assert o["coverage@3"] == pytest.approx(len({1, 2, 3, 4, 5, 6, 7, 8, 11}) / N_ITEMS)
    assert set(o["ci95"]) == {"precision@3", "recall@3", "ndcg@3", "map@3", "hit_rate@3"}
    assert set(res["per_channel"]) == {"web", "store", "app"}
    web = res["per_channel"]["web"]
    assert web["customers"] == 3  # customers 0, 2, 5 have a web interaction held out
    # customer 0: truth {1}, list [1, 2, 11] -> hit at 1; customer 5: truth {1}, list [1, 8, 11]
    assert web["recall@3"] == pytest.approx(1.0) and web["precision@3"] == pytest.approx((1 + 2 + 1) / 9)
    store = res["per_channel"]["store"]
    # customer 0: truth {2} at rank 2; 1: {3} rank 1; 3: {6} rank 1; 5: {8} at rank 2 (list [1, 8, 11])
    d2 = 1 / math.log2(3)
    assert store["customers"] == 4 and store["ndcg@3"] == pytest.approx((d2 + 1 + 1 + d2) / 4)


def test_evaluate_groups_and_sampling():
    groups = {"even": np.arange(8) % 2 == 0, "nobody": np.zeros(8, bool)}
    res = ev.evaluate(
        oracle, TEST_CUST, TEST_ITEM, TEST_CHAN, k=3, n_items=N_ITEMS, groups=groups, bootstrap=0
    )
    assert res["per_group"]["even"]["customers"] == 3 and res["per_group"]["nobody"] == {"customers": 0}
    assert res["overall"]["ci95"] == {}
    sampled = ev.evaluate(
        oracle, TEST_CUST, TEST_ITEM, TEST_CHAN, k=3, n_items=N_ITEMS, max_customers=4, seed=1, bootstrap=0
    )
    assert sampled["customers"] == 4 and sampled["overall"]["ndcg@3"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="customer rows"):
        ev.evaluate(
            oracle, TEST_CUST, TEST_ITEM, TEST_CHAN, k=3, n_items=N_ITEMS, groups={"short": np.ones(3, bool)}
        )


def test_evaluate_calls_recommend_in_blocks():
    calls = []

    def rec(rows):
        calls.append(len(rows))
        return oracle(rows)

    ev.evaluate(rec, TEST_CUST, TEST_ITEM, TEST_CHAN, k=3, n_items=N_ITEMS, bootstrap=0, block=4)
    assert calls == [4, 2]


def test_customer_groups_by_channel_share_and_volume():
    cust = np.array([0, 0, 0, 1, 1, 1, 2, 2, 3, 3, 3, 3, 3, 3])
    chan = np.array(
        [
            "store",
            "store",
            "web",
            "app",
            "web",
            "store",
            "web",
            "store",
            "call_center",
            "call_center",
            "web",
            "web",
            "web",
            "web",
        ]
    )
    g = ev.customer_groups(cust, chan, 5)
    assert g["store_dominant"].tolist() == [True, False, False, False, False]
    assert g["online_dominant"].tolist() == [False, True, False, True, False]
    assert g["both"].tolist() == [False, False, True, False, False]
    # counts 3, 3, 2, 6 -> median 3
    assert g["light"].tolist() == [True, True, True, False, False]
    assert g["heavy"].tolist() == [False, False, False, True, False]


# ---------------------------------------------------------------- baselines and model recommenders
TRAIN = sp.csr_matrix(
    np.array(
        [
            [3, 0, 1, 0, 0, 0],
            [0, 0, 0, 5, 0, 0],
            [1, 1, 1, 1, 0, 0],
            [0, 0, 0, 0, 0, 0],
        ],
        dtype=np.float32,
    )
)  # column sums: 4, 1, 2, 6, 0, 0 -> popularity order 3, 0, 2, 1, 4, 5


def test_popularity_baseline_excludes_each_customers_items():
    rec = ev.popularity_recommender(TRAIN, 3, exclude=TRAIN)
    assert rec(np.array([0, 1, 2, 3])).tolist() == [[3, 1, 4], [0, 2, 1], [4, 5, -1], [3, 0, 2]]
    assert ev.popularity_recommender(TRAIN, 2)(np.array([2])).tolist() == [[3, 0]]
    scores = np.array([0, 0, 0, 0, 1, 2], np.float32)
    assert ev.popularity_recommender(TRAIN, 2, item_scores=scores)(np.array([0])).tolist() == [[5, 4]]


def test_repurchase_baseline_puts_own_items_first():
    rec = ev.repurchase_popularity_recommender(TRAIN, 4)
    # customer 0 bought 0 (3x) then 2 (1x); customer 2 has four ties -> by item row; 3 is cold
    assert rec(np.array([0, 2, 3])).tolist() == [[0, 2, 3, 1], [0, 1, 2, 3], [3, 0, 2, 1]]
    no_zero = sp.csr_matrix(([1.0], ([0], [0])), shape=TRAIN.shape)
    assert ev.repurchase_popularity_recommender(TRAIN, 3, exclude=no_zero)(np.array([0])).tolist() == [
        [2, 3, 1]
    ]


def test_factor_recommender_ranks_as_the_api_with_cold_fallback():
    rng = np.random.default_rng(0)
    f = Factors(
        kind="factors",
        item_factors=rng.normal(size=(6, 3)).astype(np.float32),
        customer_factors=rng.normal(size=(4, 3)).astype(np.float32),
        item_bias=rng.normal(size=6).astype(np.float32),
    )
    f.customer_factors[3] = 0  # no personal score: serving falls back
    rows = np.arange(4)
    got = ev.recommender_for(f, TRAIN, 3, exclude=TRAIN)(rows)
    for c in range(3):
        s = scoring.factor_scores(f.item_factors, f.customer_factors[c], f.item_bias)
        eligible = np.ones(6, bool)
        eligible[TRAIN[c].indices] = False
        want = scoring.refine(
            f.item_factors,
            f.customer_factors[c],
            scoring.top_k(s, 3 + scoring.MARGIN, eligible),
            3,
            f.item_bias,
        )[0]
        np.testing.assert_array_equal(got[c][got[c] >= 0], want)
    pop = np.asarray(TRAIN.sum(0)).ravel()
    fb = ev.recommender_for(f, TRAIN, 3, exclude=TRAIN, fallback_scores=pop)(rows)
    np.testing.assert_array_equal(fb[:3], got[:3])
    assert fb[3].tolist() == [3, 0, 2], "the customer without a vector gets popularity"


def test_neighbour_recommender_scores_history_and_falls_back_without_support():
    nb = np.full((6, 2), -1, np.int32)
    sc = np.zeros((6, 2), np.float32)
    nb[3] = [4, -1]
    sc[3] = [0.5, 0]
    f = Factors(kind="neighbours", neighbours=nb, neighbour_scores=sc)
    pop = np.asarray(TRAIN.sum(0)).ravel()
    # customer 1 (item 3) supports item 4; the rest of the list is the core's order of equal (0) scores
    assert ev.recommender_for(f, TRAIN, 3, exclude=TRAIN, fallback_scores=pop)(np.array([1])).tolist() == [
        [4, 0, 1]
    ]
    # customer 0 (items 0, 2) has no neighbour support at all: popularity, minus seen items
    assert ev.recommender_for(f, TRAIN, 3, exclude=TRAIN, fallback_scores=pop)(np.array([0])).tolist() == [
        [3, 1, 4]
    ]

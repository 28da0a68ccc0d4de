"""Id maps, confidence and flag matrices; temporal and per-customer splits."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recsvc.artifact.manifest import DECLINED, PURCHASED, RETURNED, SEEN
from training.errors import ConfigError
from training.io import load_dataset
from training.matrix import build_matrix
from training.split import default_cutoff, per_customer_random_split, temporal_split
from training.synth import synth
from training.weighting import WeightConfig, aggregate, event_weights

CATALOG = "item_id,title,category,price\n0001,A,x,1\n0002,B,x,1\n0003,C,y,1\nnew,Never sold,y,1\n"
CUSTOMERS = "customer_id\nc1\ncold\n"
ROWS = """customer_id,item_id,event,channel,timestamp
c1,0001,view,web,1790000000
c1,0001,purchase,store,1790000100
c1,0002,purchase,web,1790000200
c1,0002,return,store,1790000300
c2,0003,offer_declined,app,1790000400
c2,0001,click,app,1790000500
"""


@pytest.fixture
def small(tmp_path):
    (tmp_path / "catalog.csv").write_text(CATALOG)
    (tmp_path / "customers.csv").write_text(CUSTOMERS)
    (tmp_path / "interactions.csv").write_text(ROWS)
    return load_dataset(str(tmp_path))


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("m") / "d")
    synth(d, customers=800, items=200, stores=3, events=15_000, seed=5)
    return load_dataset(d, max_reject_share=0.0)


def test_ids_rows_and_columns(small):
    w = event_weights(small.interactions, WeightConfig(half_life_days=None), now=1790000500)
    m = build_matrix(small, w)
    assert m.customer_ids.tolist() == ["c1", "c2", "cold"]  # interactions ∪ customers.*, sorted
    assert m.item_ids.tolist() == ["0001", "0002", "0003", "new"]  # every catalog item, leading zeros kept
    assert m.customer_ids.dtype.kind == "U" and m.item_ids.dtype.kind == "U"
    assert m.shape == (3, 4) == m.confidence.shape == m.flags.shape
    assert m.customer_ids[m.cust_row].tolist() == small.interactions["customer_id"].astype(str).tolist()
    assert m.item_ids[m.item_col].tolist() == small.interactions["item_id"].astype(str).tolist()
    assert m.confidence.dtype == np.float32 and m.flags.dtype == np.uint8
    dense = m.confidence.toarray()
    assert dense[0, 0] > 0 and dense[0, 1] == 0  # bought then returned: dropped
    assert dense[1].tolist()[2] == 0 and dense[1, 0] > 0
    assert not dense[2].any() and not dense[:, 3].any()  # cold customer, new item: empty row / column
    flags = m.flags.toarray()
    assert flags[0, 0] == SEEN | PURCHASED
    assert flags[0, 1] == SEEN | PURCHASED | RETURNED  # the flags remember what the confidence dropped
    assert flags[1, 2] == DECLINED and flags[1, 0] == SEEN
    assert flags[2].tolist() == [0, 0, 0, 0]


def test_a_subset_keeps_the_full_id_maps(synthetic):
    inter = synthetic.interactions
    w = event_weights(inter, WeightConfig(), now=float(inter["ts"].max()))
    full = build_matrix(synthetic, w)
    rows = temporal_split(inter["ts"].to_numpy(), default_cutoff(inter["ts"].to_numpy())) == 0
    part = build_matrix(synthetic, w, rows=rows, customer_ids=full.customer_ids, item_ids=full.item_ids)
    assert part.shape == full.shape and (part.customer_ids == full.customer_ids).all()
    assert np.array_equal(part.cust_row, full.cust_row) and np.array_equal(part.item_col, full.item_col)
    assert 0 < part.confidence.nnz < full.confidence.nnz
    expected = aggregate(full.cust_row[rows], full.item_col[rows], w[rows], *full.shape)
    assert (abs(part.confidence - expected)).max() == 0
    assert len(full.customer_ids) == 800 and len(full.item_ids) == 200
    assert (full.cust_row >= 0).all() and (full.item_col >= 0).all()
    assert np.all(np.diff(full.confidence.indptr) >= 0) and full.confidence.has_sorted_indices


def test_temporal_split_and_default_cutoff():
    day = 86400
    ts = np.array([0, 10 * day, 50 * day + 7, 99 * day + 5, 100 * day])
    cut = default_cutoff(ts, 0.1)
    assert cut == 90 * day and cut % day == 0
    assert temporal_split(ts, cut).tolist() == [False, False, False, True, True]
    assert default_cutoff(ts + 3600, 0.1) == 90 * day  # rounded down to the day
    with pytest.raises(ConfigError):
        default_cutoff(np.array([]))


def test_per_customer_random_split_invariants():
    rng = np.random.default_rng(0)
    cust = rng.integers(0, 300, 5000)
    cust[:3] = 999  # one customer with three rows
    cust = np.r_[cust, 1234, -1]  # one with a single row, one unknown
    test = per_customer_random_split(cust, 0.25, seed=1)
    assert test.dtype == bool and len(test) == len(cust)
    for c in np.unique(cust[cust >= 0]):
        n = int((cust == c).sum())
        held = int(test[cust == c].sum())
        expected = 0 if n < 2 else min(math.ceil(0.25 * n), n - 1)
        assert held == expected, (c, n, held)
    assert not test[-1] and not test[-2]
    assert np.array_equal(test, per_customer_random_split(cust, 0.25, seed=1))  # deterministic
    assert not np.array_equal(test, per_customer_random_split(cust, 0.25, seed=2))
    # exact fractions are not rounded up by float error: 0.3 x 10 holds out 3
    assert per_customer_random_split(np.zeros(10, dtype=np.int64), 0.3, seed=0).sum() == 3
    with pytest.raises(ConfigError):
        per_customer_random_split(cust, 1.0, seed=0)

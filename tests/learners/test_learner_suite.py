"""One behavioural suite every learner passes on known-answer data, plus each learner's own promises.

The data: two blocks. Customers 0-99 interact only with items 0-19 (block A), customers 100-199
only with items 20-39 (block B). Customer 200 has no interactions (cold) and item 40 none (new; its
catalogue category is B's). A learner that understands anything must keep each block's customers
inside their block, and its exported arrays must rank exactly as serving's scoring core does.
Adding a learner costs one entry in SUITE.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recsvc.core import scoring
from recsvc.core.foldin import fold_in
from training.evaluate import recommender_for
from training.learners import LEARNER_NAMES, Factors, LearnerConfigError, ModelFitError, get_learner
from training.learners.base import factor_neighbours

N_CUST, N_ITEMS, HALF_C, HALF_I = 201, 41, 100, 20
COLD_CUSTOMER, NEW_ITEM = 200, 40
ITEM_IDS = np.array([f"i{j:03d}" for j in range(N_ITEMS)])
CUSTOMER_IDS = np.array([f"c{j:03d}" for j in range(N_CUST)])
CATALOG = pd.DataFrame(
    {
        "item_id": ITEM_IDS,
        "category": ["a"] * HALF_I + ["b"] * (N_ITEMS - HALF_I),
        "brand": "acme",
        "tags": "x;y",
        "price": np.arange(N_ITEMS) + 1.0,
    }
)
CUSTOMERS = pd.DataFrame(
    {
        "customer_id": CUSTOMER_IDS,
        "segment": ["A"] * HALF_C + ["B"] * (N_CUST - HALF_C),
        "locale": "en-GB",
        "home_store": "s1",
    }
)

# learner -> params for the suite (defaults wherever they are fast and deterministic)
SUITE = {
    "als": {},  # includes the automatic small-data tuning
    "bpr": {},
    "lightfm": {"num_threads": 1},  # one thread: Hogwild SGD is only deterministic single-threaded
    "itemknn": {},
    "ease": {},
    "popularity": {},
}
PERSONAL = [n for n in SUITE if n != "popularity"]


def block_matrix(seed: int = 0, per: int = 8) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    rows, cols, vals = [], [], []
    for c in range(2 * HALF_C):
        b = int(c >= HALF_C)
        items = rng.choice(np.arange(b * HALF_I, (b + 1) * HALF_I), size=per, replace=False)
        rows += [c] * per
        cols += list(items)
        vals += list(rng.integers(1, 4, per))
    return sp.csr_matrix((np.array(vals, np.float32), (rows, cols)), shape=(N_CUST, N_ITEMS))


X = block_matrix()


def fit(name: str, x: sp.csr_matrix = X, seed: int = 0, **params) -> Factors:
    return get_learner(name, {**SUITE[name], **params}).fit(
        x, catalog=CATALOG, customers=CUSTOMERS, item_ids=ITEM_IDS, customer_ids=CUSTOMER_IDS, seed=seed
    )


@pytest.fixture(scope="module")
def fitted() -> dict[str, Factors]:
    return {name: fit(name) for name in SUITE}


def block_of_item(j: np.ndarray) -> np.ndarray:
    return (np.asarray(j) >= HALF_I).astype(int)


def test_suite_covers_every_learner():
    assert set(SUITE) == set(LEARNER_NAMES)


# ---------------------------------------------------------------- shared behaviour
@pytest.mark.parametrize("name", list(SUITE))
def test_export_is_finite_and_shaped_for_serving(fitted, name):
    f = fitted[name]
    assert f.kind in ("factors", "neighbours", "popularity")
    if f.kind == "factors":
        assert f.item_factors.dtype == np.float32 and f.item_factors.flags.c_contiguous
        assert f.customer_factors.dtype == np.float32
        assert f.item_factors.shape[0] == N_ITEMS and f.customer_factors.shape[0] == N_CUST
        assert f.item_factors.shape[1] == f.customer_factors.shape[1]
        assert np.isfinite(f.item_factors).all() and np.isfinite(f.customer_factors).all()
        if f.item_bias is not None:
            assert f.item_bias.shape == (N_ITEMS,) and f.item_bias.dtype == np.float32
            assert np.isfinite(f.item_bias).all()
    if f.kind in ("factors", "neighbours"):
        nb, sc = f.neighbours, f.neighbour_scores
        assert nb.dtype == np.int32 and sc.dtype == np.float32 and nb.shape == sc.shape
        assert nb.shape[0] == N_ITEMS and 0 < nb.shape[1] <= N_ITEMS - 1
        assert np.isfinite(sc).all()
        assert ((nb >= -1) & (nb < N_ITEMS)).all()
        assert not (nb == np.arange(N_ITEMS)[:, None]).any(), "an item is never its own neighbour"
        valid = nb >= 0
        assert not (valid[:, 1:] & ~valid[:, :-1]).any(), "padding (-1) only at the end of a row"
        assert (sc[~valid] == 0).all() and (sc[valid] > 0).all()
        assert (np.diff(np.where(valid, sc, -1e9), axis=1)[valid[:, 1:]] <= 0).all(), "best first"
        for row in nb:
            r = row[row >= 0]
            assert len(np.unique(r)) == len(r)
    if f.kind == "popularity":
        assert f.item_scores.shape == (N_ITEMS,) and np.isfinite(f.item_scores).all()


@pytest.mark.parametrize("name", list(SUITE))
def test_deterministic_for_a_seed(fitted, name):
    again = fit(name)
    for field in (
        "item_factors",
        "customer_factors",
        "item_bias",
        "neighbours",
        "neighbour_scores",
        "item_scores",
    ):
        a, b = getattr(fitted[name], field), getattr(again, field)
        assert (a is None) == (b is None), field
        if a is not None:
            np.testing.assert_array_equal(a, b, err_msg=field)


@pytest.mark.parametrize("name", list(SUITE))
def test_params_record_what_was_used_as_json(fitted, name):
    p = fitted[name].params
    assert p and json.loads(json.dumps(p)) == p


@pytest.mark.parametrize("name", PERSONAL)
def test_block_customers_get_block_items(fitted, name):
    rows = np.arange(2 * HALF_C)
    recs = recommender_for(fitted[name], X, 5, exclude=X)(rows)
    assert (recs >= 0).all()
    want = (rows >= HALF_C).astype(int)[:, None]
    assert (block_of_item(recs) == want).all()
    shown = sp.csr_matrix((np.ones(recs.size), (np.repeat(rows, 5), recs.ravel())), shape=X.shape)
    assert not X.multiply(shown).nnz, "seen items are excluded"


@pytest.mark.parametrize("name", [n for n in PERSONAL])
def test_neighbours_stay_in_their_block(fitted, name):
    nb = fitted[name].neighbours
    first = nb[: 2 * HALF_I, 0]
    assert (first >= 0).all()
    assert (block_of_item(first) == block_of_item(np.arange(2 * HALF_I))).all()


@pytest.mark.parametrize("name", PERSONAL)
def test_batch_ranking_equals_the_serving_core(fitted, name):
    """recommender_for (batch, evaluation) and the scoring primitives as the API uses them agree exactly:
    factors: top_k with a margin, then `refine` on exact scores; neighbours: top_k of the summed scores."""
    f = fitted[name]
    rows = np.array([0, 1, 57, 100, 150, 199])
    batch = recommender_for(f, X, 7, exclude=X)(rows)
    for i, c in enumerate(rows):
        hist = X[c]
        eligible = np.ones(N_ITEMS, bool)
        eligible[hist.indices] = False
        if f.kind == "factors":
            u = f.customer_factors[c]
            s = scoring.factor_scores(f.item_factors, u, f.item_bias)
            want = scoring.refine(
                f.item_factors, u, scoring.top_k(s, 7 + scoring.MARGIN, eligible), 7, f.item_bias
            )[0]
        else:
            s = scoring.neighbour_scores(N_ITEMS, hist.indices, hist.data, f.neighbours, f.neighbour_scores)
            want = scoring.top_k(s, 7, eligible)
        np.testing.assert_array_equal(batch[i], want)


@pytest.mark.parametrize("name", list(SUITE))
def test_fit_from_init_keeps_the_model_shape(fitted, name):
    """The pipeline continues on the full matrix from the evaluated model: warm start where the
    learner has one, else a refit with the same hyper-parameters."""
    f = fitted[name]
    g = get_learner(name, SUITE[name]).fit(
        X, seed=0, init=f, iterations=2, catalog=CATALOG, item_ids=ITEM_IDS
    )
    assert g.kind == f.kind
    for field in ("item_factors", "customer_factors", "item_bias", "neighbours", "item_scores"):
        a, b = getattr(f, field), getattr(g, field)
        assert (a is None) == (b is None) and (a is None or a.shape == b.shape), field
    if name == "bpr":
        assert (g.customer_factors[:, -1] == 1).all()


@pytest.mark.parametrize("name", list(SUITE))
def test_non_finite_confidence_is_refused_with_a_fix(name):
    bad = X.copy()
    bad.data[3] = np.nan
    with pytest.raises(ModelFitError, match="NaN or inf"):
        fit(name, bad)


@pytest.mark.parametrize("name", list(SUITE))
def test_empty_rows_and_columns_stay_finite(fitted, name):
    f = fitted[name]
    if f.kind == "factors":
        assert np.isfinite(f.customer_factors[COLD_CUSTOMER]).all()
        assert np.isfinite(f.item_factors[NEW_ITEM]).all()
    recs = recommender_for(f, X, 5, exclude=X, fallback_scores=np.asarray(X.sum(axis=0)).ravel())(
        np.array([COLD_CUSTOMER])
    )
    assert (recs >= 0).all()


# ---------------------------------------------------------------- learner by learner
def test_popularity_known_answer(fitted):
    f = fitted["popularity"]
    np.testing.assert_allclose(f.item_scores, np.asarray(X.sum(axis=0)).ravel(), rtol=1e-6)
    by_customers = fit("popularity", by="customers")
    np.testing.assert_array_equal(by_customers.item_scores, np.bincount(X.indices, minlength=N_ITEMS))
    recs = recommender_for(f, X, 3)(np.array([0, COLD_CUSTOMER]))
    top = np.lexsort((np.arange(N_ITEMS), -f.item_scores))[:3]
    np.testing.assert_array_equal(recs, [top, top])


def test_als_small_data_is_tuned_and_recorded(fitted):
    p = fitted["als"].params
    t = p["tuning"]
    assert 1 < len(t["grid"]) <= 15
    assert {k: p[k] for k in ("factors", "regularization", "alpha")} == t["best"]
    assert max(g["score"] for g in t["grid"]) == next(
        g["score"] for g in t["grid"] if g["params"] == t["best"]
    )
    too_big = fit("als", tune_max_nnz=X.nnz - 1)
    assert "tuning" not in too_big.params and too_big.params["factors"] == 64
    chosen = fit("als", factors=4, regularization=1.0)  # an explicit choice wins over the search
    assert "tuning" not in chosen.params and chosen.params["factors"] == 4
    with pytest.raises(LearnerConfigError, match="tune must be"):
        fit("als", tune="yes")


def test_als_warm_start_continues_the_same_model():
    """2 sweeps then 2 more from those factors == 4 sweeps (exact solver: state is the factors)."""
    base = {"tune": "off", "factors": 4, "regularization": 1.0, "use_cg": False, "neighbours": 0}
    four = fit("als", iterations=4, **base)
    two = fit("als", iterations=2, **base)
    more = get_learner("als", base).fit(X, seed=0, init=two, iterations=2)
    np.testing.assert_allclose(more.item_factors, four.item_factors, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(more.customer_factors, four.customer_factors, rtol=1e-5, atol=1e-6)
    assert more.params["warm_start_after"] == 2 and more.params["iterations"] == 2


def test_als_warm_start_refuses_other_shapes():
    two = fit("als", tune="off", factors=4, iterations=2, neighbours=0)
    with pytest.raises(ModelFitError, match="warm start"):
        get_learner("als", {"tune": "off"}).fit(X[:, :30], init=two, iterations=1)


def test_als_customer_rows_equal_serving_fold_in(fitted):
    f = fitted["als"]
    y = f.item_factors.astype(np.float64)
    for c in (0, 120):
        row = X[c]
        v = fold_in(f.item_factors, y.T @ y, row.indices, row.data, **f.foldin)
        np.testing.assert_allclose(v, f.customer_factors[c], rtol=1e-4, atol=1e-5)


def test_bpr_export_is_implicits_own_factors(fitted):
    from implicit.cpu.bpr import BayesianPersonalizedRanking

    f = fitted["bpr"]
    p = f.params
    m = BayesianPersonalizedRanking(
        factors=p["factors"],
        learning_rate=p["learning_rate"],
        regularization=p["regularization"],
        iterations=p["iterations"],
        num_threads=1,
        random_state=0,
    )
    m.fit(X, show_progress=False)
    np.testing.assert_array_equal(f.item_factors, m.item_factors)
    np.testing.assert_array_equal(f.customer_factors, m.user_factors)
    assert (f.customer_factors[:, -1] == 1).all() and f.item_bias is None


def test_lightfm_features_place_new_items_and_customers(fitted):
    f = fitted["lightfm"]
    s = f.item_factors @ f.customer_factors.T + f.item_bias[:, None]
    # the new item shares block B's category: B's customers like it more than A's do
    assert s[NEW_ITEM, HALF_C : 2 * HALF_C].mean() > s[NEW_ITEM, :HALF_C].mean()
    # the cold customer shares block B's segment: their favourites come from block B
    top = scoring.top_k(s[:, COLD_CUSTOMER], 5)
    assert (block_of_item(top) == 1).all()


def test_lightfm_divergence_is_a_model_fit_error():
    with pytest.raises(ModelFitError, match="learning_rate"):
        fit("lightfm", learning_rate=1e6)


def test_itemknn_neighbours_are_exact_cosine(fitted):
    f = fitted["itemknn"]
    dense = X.toarray().astype(np.float64)
    norms = np.linalg.norm(dense, axis=0)
    norms[norms == 0] = 1
    sim = (dense / norms).T @ (dense / norms)
    np.fill_diagonal(sim, 0)
    k = f.neighbours.shape[1]
    for j in (0, 25):
        want = np.lexsort((np.arange(N_ITEMS), -sim[j]))[:k]
        want = want[sim[j, want] > 0]
        np.testing.assert_array_equal(f.neighbours[j, : len(want)], want)
        np.testing.assert_allclose(f.neighbour_scores[j, : len(want)], sim[j, want], rtol=1e-5)


def test_ease_refuses_a_catalogue_above_its_limit():
    with pytest.raises(ModelFitError, match="max_items"):
        fit("ease", max_items=N_ITEMS - 1)


def test_get_learner_names_the_choices():
    with pytest.raises(LearnerConfigError, match="als, bpr"):
        get_learner("svd")
    with pytest.raises(LearnerConfigError, match="unknown parameter.*factor"):
        get_learner("als", {"factor": 8})


def test_factor_neighbours_known_answer():
    y = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9], [0, 0], [-1, 0]], dtype=np.float32)
    nb, sc = factor_neighbours(y, 2)
    assert nb[0, 0] == 1 and nb[2, 0] == 3
    assert (nb[4] == -1).all(), "a zero vector has no neighbours"
    assert not (nb == 4).any(), "and is nobody's neighbour"
    assert not (nb[5] >= 0).any(), "only positive similarity counts"
    np.testing.assert_allclose(sc[0, 0], 0.9 / np.hypot(0.9, 0.1), rtol=1e-6)

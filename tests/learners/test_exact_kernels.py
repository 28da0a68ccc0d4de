"""The two exact kernels behind a factor model's artifact, against brute force.

- `factor_neighbours` (similar items): the k best positive cosines of every item, self and zero
  vectors excluded, ties to the lower item row, whatever the blocking and the number of threads.
- `solve_customers` (the published customer rows): each row is the ALS closed form against the final
  item factors, i.e. what serving's `fold_in` computes from the same history, for customers with no,
  few and many entries (the latter through the fallback solver), confidences below and above 1.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recsvc.core.foldin import fold_in
from training.learners import base
from training.learners.als import WOODBURY_MAX, solve_customers
from training.learners.base import compact_neighbours, factor_neighbours


def brute_neighbours(y: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    n = len(y)
    norms = np.linalg.norm(y, axis=1)
    live = norms > 0
    yn = np.zeros_like(y)
    yn[live] = y[live] / norms[live, None]
    s = (yn @ yn.T).astype(np.float32)
    np.fill_diagonal(s, -np.inf)
    s[:, ~live] = -np.inf
    k = min(k, n - 1)
    order = np.lexsort((np.broadcast_to(np.arange(n), (n, n)), -s), axis=1)[:, :k]
    v = np.take_along_axis(s, order, axis=1)
    ok = (v > 0) & live[:, None]
    return compact_neighbours(np.where(ok, order, -1).astype(np.int32), np.where(ok, v, 0).astype(np.float32))


def factors_with_ties(n: int, f: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y = rng.standard_normal((n, f)).astype(np.float32)
    y[rng.random(n) < 0.05] = 0.0  # items nobody touched
    y[: n // 10] = y[n // 10 : 2 * (n // 10)]  # identical vectors: exact ties
    y[-3:] = -y[0]  # opposite vectors: no positive similarity to item 0's group
    return y


def assert_same_neighbours(nb, sc, want_nb, want_sc, y, eps: float = 1e-5):
    """The k best, up to float rounding: BLAS may sum a dot product in another order than brute force,
    so tied items (identical vectors) can differ by an ulp and swap, and a cosine of ~0 can fall either
    side of the positive cut. So: the same scores as brute force, row by row, and each listed item
    really has its listed cosine (no self, no repeat). A missed or a wrong neighbour fails."""
    np.testing.assert_allclose(sc, want_sc, rtol=0, atol=eps)
    norms = np.linalg.norm(y, axis=1)
    yn = np.where(norms[:, None] > 0, y / np.where(norms > 0, norms, 1)[:, None], 0)
    for r, j in zip(*np.nonzero(nb != want_nb)):
        if nb[r, j] == -1 or want_nb[r, j] == -1:  # a near-zero cosine kept by one side only
            assert max(sc[r, j], want_sc[r, j]) < eps, (r, j)
            continue
        assert nb[r, j] != r and np.count_nonzero(nb[r] == nb[r, j]) == 1, (r, j)
        assert abs(float(yn[r] @ yn[nb[r, j]]) - sc[r, j]) < eps, (r, j)


@pytest.mark.parametrize("n,f,k", [(6, 2, 2), (300, 8, 20), (1000, 16, 7)])
def test_factor_neighbours_are_the_exact_top_k(n, f, k):
    y = factors_with_ties(n, f, seed=n)
    want_nb, want_sc = brute_neighbours(y, k)
    nb, sc = factor_neighbours(y, k)
    assert_same_neighbours(nb, sc, want_nb, want_sc, y)


def test_factor_neighbours_do_not_depend_on_blocks_or_threads():
    y = factors_with_ties(1500, 12, seed=3)
    norms = np.linalg.norm(y, axis=1)
    live = np.flatnonzero(norms > 0)
    yn = np.ascontiguousarray(y[live] / norms[live, None], dtype=np.float32)
    runs = [base._cosine_top_k(yn, 10, threads, block=block) for block, threads in
            ((2048, 1), (64, 1), (64, 2), (200, 2))]  # 200: a last block narrower than the others
    want_nb, want_sc = brute_neighbours(y, 10)
    for ids, scores in runs:
        got = np.full_like(want_nb, -1)
        got_sc = np.zeros_like(want_sc)
        got[live] = np.where(ids >= 0, live[np.clip(ids, 0, None)], -1)
        got_sc[live] = np.where(ids >= 0, scores, 0.0)
        assert_same_neighbours(*compact_neighbours(got, got_sc), want_nb, want_sc, y)


def customers(seed: int, n_items: int = 120) -> sp.csr_matrix:
    """Rows with 0, 1, a few, WOODBURY_MAX and more entries; confidences from 0.05 to 30."""
    rng = np.random.default_rng(seed)
    sizes = [0, 1, 2, 3, 5, 8, 9, 17, 33, WOODBURY_MAX, WOODBURY_MAX + 1, 90, 0, 4]
    rows, cols, vals = [], [], []
    for r, size in enumerate(sizes):
        items = rng.choice(n_items, size=size, replace=False)
        rows += [r] * size
        cols += items.tolist()
        vals += np.exp(rng.uniform(np.log(0.05), np.log(30), size=size)).tolist()
    return sp.csr_matrix((np.array(vals, np.float32), (rows, cols)), shape=(len(sizes), n_items))


@pytest.mark.parametrize("alpha,reg,threads", [(1.0, 0.01, 1), (2.0, 0.5, 2)])
def test_solve_customers_is_servings_fold_in(alpha, reg, threads):
    from implicit.cpu.als import AlternatingLeastSquares

    x = customers(seed=int(alpha * 10))
    y = np.random.default_rng(1).standard_normal((x.shape[1], 16)).astype(np.float32) * 0.3
    model = AlternatingLeastSquares(factors=16, regularization=reg, alpha=alpha, iterations=1,
                                    num_threads=1, random_state=0)
    model.item_factors = y
    model.user_factors = np.zeros((x.shape[0], 16), np.float32)
    got = solve_customers(x, y, reg, alpha, threads, fallback=model.recalculate_user, chunk=3)
    g = y.astype(np.float64).T @ y.astype(np.float64)
    for u in range(x.shape[0]):
        row = x[u]
        want = fold_in(y, g, row.indices, row.data, reg, alpha)
        if want is None:
            assert not got[u].any(), "a customer without history gets the zero vector"
            continue
        np.testing.assert_allclose(got[u], want, rtol=1e-4, atol=1e-5, err_msg=f"customer {u}")
    np.testing.assert_allclose(got, model.recalculate_user(np.arange(x.shape[0]), x), rtol=1e-3, atol=1e-5)


def test_solve_customers_needs_a_fallback_for_long_histories():
    x = customers(seed=5)
    y = np.ones((x.shape[1], 4), np.float32)
    with pytest.raises(ValueError, match="fallback"):
        solve_customers(x, y, 0.1, 1.0)

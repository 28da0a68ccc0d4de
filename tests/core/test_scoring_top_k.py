"""top_k and the batch top-k: exact, best first, ties by ascending row, -inf never returned."""

from __future__ import annotations

import numpy as np
import pytest

from recsvc.core.scoring import NEG, _block_top_k, _block_top_k_grouped, batch_top_k, top_k


def reference(s: np.ndarray, k: int, eligible: np.ndarray | None = None) -> np.ndarray:
    """The definition: sort every eligible finite score, best first, ties by row."""
    rows = np.arange(len(s))
    ok = np.isfinite(s) if eligible is None else (np.isfinite(s) & eligible)
    rows = rows[ok]
    return rows[np.lexsort((rows, -s[rows]))][:k]


def blocks(seed: int):
    """Random, tie-heavy and partly -inf score blocks of various shapes."""
    rng = np.random.default_rng(seed)
    for trial in range(40):
        m, n = int(rng.integers(1, 40)), int(rng.integers(1, 6000))
        s = rng.normal(size=(m, n)).astype(np.float32)
        if trial % 3 == 0:
            s = np.round(s, 1)  # many ties, also at the k-th score
        if trial % 4 == 0:
            s[rng.random(s.shape) < rng.choice([0.3, 0.9, 0.999])] = NEG
        if trial % 5 == 0:
            s[: m // 2] = NEG  # rows with nothing eligible
        yield s, int(rng.integers(1, 60))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_grouped_block_top_k_equals_row_wise_top_k(seed):
    for s, k in blocks(seed):
        rows, vals = _block_top_k_grouped(s.copy(), k)
        old_rows, old_vals = _block_top_k(s.copy(), k)
        assert np.array_equal(rows, old_rows) and np.array_equal(vals, old_vals)
        for j in range(s.shape[0]):
            t = top_k(s[j], k)
            assert np.array_equal(rows[j, :len(t)], t)
            assert np.all(rows[j, len(t):] == -1) and np.all(vals[j, len(t):] == NEG)
            assert np.array_equal(vals[j, :len(t)], s[j, t])


def test_grouped_block_top_k_on_a_wide_catalogue_with_ties_at_the_boundary():
    rng = np.random.default_rng(7)
    s = rng.normal(size=(64, 50_000)).astype(np.float32)
    s[::3, 100:140] = s[::3].max(axis=1, keepdims=True)  # a run of equal scores at the top
    s[1::3, :] = np.round(s[1::3, :], 2)
    rows, _ = _block_top_k_grouped(s, 12)
    for j in range(len(s)):
        assert np.array_equal(rows[j], reference(s[j], 12))


@pytest.mark.parametrize("n", [50, 5000, 20_000])
def test_top_k_is_exact_with_and_without_an_eligibility_mask(n):
    rng = np.random.default_rng(n)
    for trial in range(30):
        s = rng.normal(size=n).astype(np.float32)
        if trial % 2:
            s = np.round(s, 1)
        eligible = rng.random(n) < rng.choice([0.01, 0.5, 0.99])
        for k in (1, 10, 26, 300):
            assert np.array_equal(top_k(s, k), reference(s, k))
            assert np.array_equal(top_k(s, k, eligible), reference(s, k, eligible))


def test_batch_top_k_equals_top_k_per_customer_with_exclusions_and_bias():
    """Small integer factors: every score is exact whatever order BLAS sums in (and ties abound)."""
    rng = np.random.default_rng(3)
    y = rng.integers(-3, 4, size=(9000, 16)).astype(np.float32)
    x = rng.integers(-3, 4, size=(300, 16)).astype(np.float32)
    bias = rng.integers(-2, 3, size=9000).astype(np.float32)
    eligible = rng.random(9000) < 0.9
    excl = [rng.choice(9000, size=rng.integers(0, 30), replace=False) for _ in range(300)]
    indptr = np.concatenate([[0], np.cumsum([len(e) for e in excl])]).astype(np.int64)
    items = np.concatenate(excl).astype(np.int64)
    rows, _ = batch_top_k(y, x, 20, indptr, items, item_bias=bias, eligible=eligible, block=64)
    for c in range(300):
        s = x[c] @ y.T + bias
        ok = eligible.copy()
        ok[excl[c]] = False
        t = top_k(s, 20, ok)
        assert np.array_equal(rows[c], t)

"""Scores and top-k: one implementation for the API, batch recommend and offline evaluation.

Ties are broken by item row (ascending), so equal scores always come out in the same order.
"""

from __future__ import annotations

import numpy as np

NEG = np.float32(-np.inf)


def factor_scores(item_factors: np.ndarray, u: np.ndarray, item_bias: np.ndarray | None = None) -> np.ndarray:
    """item_factors @ u (+ item bias), float32. One BLAS gemv over the memory-mapped factors."""
    s = item_factors @ u.astype(item_factors.dtype, copy=False)
    if item_bias is not None:
        s = s + item_bias
    return s


def neighbour_scores(n_items: int, items: np.ndarray, weights: np.ndarray,
                     neighbours: np.ndarray, neighbour_sims: np.ndarray) -> np.ndarray:
    """Item-to-item scores: Σ over the customer's items of weight × similarity to each neighbour."""
    s = np.zeros(n_items, dtype=np.float32)
    if len(items) == 0:
        return s
    nb = np.asarray(neighbours[items])
    sim = np.asarray(neighbour_sims[items]) * np.asarray(weights, dtype=np.float32)[:, None]
    ok = nb >= 0
    np.add.at(s, nb[ok], sim[ok])
    return s


def top_k(scores: np.ndarray, k: int, eligible: np.ndarray | None = None) -> np.ndarray:
    """Rows of the k best eligible scores, best first; ties by ascending row. -inf never returned."""
    if eligible is not None:
        scores = np.where(eligible, scores, NEG)
    n = scores.shape[0]
    k = min(k, n)
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    if k < n:
        # widen the partition so ties at the boundary are resolved by row, not by partition order
        part = np.argpartition(-scores, k - 1)[:k]
        kth = scores[part].min()
        cand = np.flatnonzero(scores >= kth) if np.isfinite(kth) else part
    else:
        cand = np.arange(n)
    order = np.lexsort((cand, -scores[cand]))
    top = cand[order][:k]
    return top[np.isfinite(scores[top])]


def batch_top_k(item_factors: np.ndarray, customer_vectors: np.ndarray, k: int,
                exclude_indptr: np.ndarray | None = None, exclude_items: np.ndarray | None = None,
                item_bias: np.ndarray | None = None, eligible: np.ndarray | None = None,
                block: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Top-k rows and scores for many customers at once (blocks of gemm), the same order `top_k` gives.

    exclude_indptr/exclude_items: a CSR (per customer row) of item rows never to return.
    Returns (rows, scores), shape (n_customers, k), rows -1 / scores -inf where fewer are eligible.
    """
    n_c = customer_vectors.shape[0]
    n_i = item_factors.shape[0]
    k = min(k, n_i)
    rows = np.full((n_c, k), -1, dtype=np.int64)
    vals = np.full((n_c, k), NEG, dtype=np.float32)
    yt = np.ascontiguousarray(item_factors, dtype=np.float32).T
    for a in range(0, n_c, block):
        b = min(n_c, a + block)
        s = np.asarray(customer_vectors[a:b], dtype=np.float32) @ yt
        if item_bias is not None:
            s += item_bias
        if eligible is not None:
            s[:, ~eligible] = NEG
        if exclude_indptr is not None:
            lo, hi = exclude_indptr[a], exclude_indptr[b]
            r = np.repeat(np.arange(b - a), np.diff(exclude_indptr[a:b + 1]))
            s[r, exclude_items[lo:hi]] = NEG
        rows[a:b], vals[a:b] = _block_top_k(s, k)
    return rows, vals


def _block_top_k(s: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise top_k of a score block: vectorised, with the exact path for rows tied at the boundary."""
    m, n = s.shape
    if k < n:
        part = np.argpartition(-s, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(n), (m, n)).copy()
    ps = np.take_along_axis(s, part, axis=1)
    order = np.lexsort((part, -ps), axis=1)
    rows = np.take_along_axis(part, order, axis=1).astype(np.int64)
    vals = np.take_along_axis(ps, order, axis=1)
    if k < n:
        kth = vals[:, -1:]
        tied = np.flatnonzero(((s >= kth).sum(axis=1) > k) & np.isfinite(kth[:, 0]))
        for j in tied:
            t = top_k(s[j], k)
            rows[j] = -1
            vals[j] = NEG
            rows[j, :len(t)] = t
            vals[j, :len(t)] = s[j, t]
    bad = ~np.isfinite(vals)
    rows[bad] = -1
    return rows, vals

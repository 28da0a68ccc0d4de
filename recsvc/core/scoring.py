"""Scores and top-k: one implementation for the API, batch recommend and offline evaluation.

Ties are broken by item row (ascending), so equal scores always come out in the same order.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

NEG = np.float32(-np.inf)


def factor_scores(item_factors: np.ndarray, u: np.ndarray, item_bias: np.ndarray | None = None) -> np.ndarray:
    """item_factors @ u (+ item bias), float32. One BLAS gemv over the memory-mapped factors."""
    s = item_factors @ u.astype(item_factors.dtype, copy=False)
    if item_bias is not None:
        s = s + item_bias
    return s


def exact_scores(item_factors: np.ndarray, u: np.ndarray, rows: np.ndarray,
                 item_bias: np.ndarray | None = None) -> np.ndarray:
    """Final scores of candidate rows, in float64 then rounded to float32.

    BLAS kernels sum in different orders (gemm for a batch, gemv for one request, other kernels for
    small sizes), so float32 scores can differ in the last bit between batch and API. Candidates
    are chosen with BLAS, with a margin; their final scores come from here, identical on every path.
    """
    rows = np.asarray(rows, dtype=np.int64)
    s = np.asarray(item_factors[rows], dtype=np.float64) @ np.asarray(u, dtype=np.float64)
    if item_bias is not None:
        s = s + np.asarray(item_bias[rows], dtype=np.float64)
    return s.astype(np.float32)


def refine(item_factors: np.ndarray, u: np.ndarray, rows: np.ndarray, want: int,
           item_bias: np.ndarray | None = None, front: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Re-order BLAS candidates by their exact scores (rows in `front` first; ties by row)."""
    s = exact_scores(item_factors, u, rows, item_bias)
    keys = (rows, -s) if front is None else (rows, -s, ~front[rows])
    order = np.lexsort(keys)[:want]
    return np.asarray(rows, np.int64)[order], s[order]


MARGIN = 16  # extra BLAS candidates kept so last-bit differences cannot change the final top-k


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


@lru_cache(maxsize=8)
def _sample_rows(n: int) -> np.ndarray:
    """A fixed pseudo-random 1/16 of the rows (a stride would alias with periodic catalogues)."""
    rows = np.random.default_rng(n).choice(n, size=n // 16, replace=False)
    rows.sort()
    rows.setflags(write=False)
    return rows


def top_k(scores: np.ndarray, k: int, eligible: np.ndarray | None = None) -> np.ndarray:
    """Rows of the k best eligible scores, best first; ties by ascending row. -inf never returned.

    Exact, and cheaper than a full argpartition on large catalogues: a fixed random 1/16 sample gives a
    threshold that about 2k+64 items reach; every item at or above it is a candidate, so the top k
    of the candidates is the top k of all (ties at the threshold included). When fewer than k
    items reach it, the full partition runs. The eligibility mask is applied to the sample and to the
    candidates only, so the common case never writes a masked copy of the whole score vector.
    """
    n = scores.shape[0]
    k = min(k, n)
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    if n >= 4096 and k * 64 < n:
        sample_rows = _sample_rows(n)
        sample = scores[sample_rows]
        if eligible is not None:
            sample = np.where(eligible[sample_rows], sample, NEG)
        m = min(sample.shape[0], k // 8 + 4)
        t = np.partition(sample, sample.shape[0] - m)[sample.shape[0] - m]
        if np.isfinite(t):
            c = np.flatnonzero(scores >= t)
            if eligible is not None:
                c = c[eligible[c]]
            if len(c) >= k:
                return c[np.lexsort((c, -scores[c]))][:k]  # all >= t: finite
    if eligible is not None:
        scores = np.where(eligible, scores, NEG)
    if k < n:
        part = np.argpartition(scores, n - k)[n - k:]
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
    y = np.ascontiguousarray(item_factors, dtype=np.float32)
    wide = -(-n_i // GROUP) * GROUP
    if -(-n_i // GROUP) > 2 * k and wide != n_i:
        # whole groups for `_block_top_k_grouped`: zero items scored, then set to -inf, cost less than
        # a padded copy of every score block
        y = np.concatenate([y, np.zeros((wide - n_i, y.shape[1]), np.float32)])
    yt = y.T
    for a in range(0, n_c, block):
        b = min(n_c, a + block)
        s = np.asarray(customer_vectors[a:b], dtype=np.float32) @ yt
        if item_bias is not None:
            s[:, :n_i] += item_bias
        if s.shape[1] > n_i:
            s[:, n_i:] = NEG
        if eligible is not None:
            s[:, :n_i][:, ~eligible] = NEG
        if exclude_indptr is not None:
            lo, hi = exclude_indptr[a], exclude_indptr[b]
            r = np.repeat(np.arange(b - a), np.diff(exclude_indptr[a:b + 1]))
            s[r, exclude_items[lo:hi]] = NEG
        rows[a:b], vals[a:b] = _block_top_k_grouped(s, k)
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


GROUP = 64


def _block_top_k_grouped(s: np.ndarray, k: int, group: int = GROUP) -> tuple[np.ndarray, np.ndarray]:
    """`_block_top_k`, an order of magnitude faster on wide blocks: exact, the same output.

    Each row's items are cut into groups of `group`; the k groups with the largest maxima hold every
    item above the row's k-th score (a group with such an item has a larger maximum than any group
    without one, and there are fewer than k such items). The partition then runs over those k groups
    only; a row tied at its k-th score, where the choice among equal scores matters, takes the exact
    path of `_block_top_k`. Slower than `top_k` for a single row: for batches only.

    Any grouping works; group g is the items g, g + G, g + 2G, ... (G groups): the maxima are then a
    reduction across rows of a (group, G) view, which runs along contiguous memory. The tie test needs
    no pass over the block either: more than k items reach the k-th score exactly when more than k
    groups do, or, when at most k do (those are all among the k chosen), when more than k candidates do.
    """
    m, n = s.shape
    n_groups = -(-n // group)
    if k <= 0 or n_groups <= 2 * k:
        return _block_top_k(s, k)
    pad = n_groups * group - n
    sp = s if pad == 0 else np.concatenate([s, np.full((m, pad), NEG, s.dtype)], axis=1)
    gmax = sp.reshape(m, group, n_groups).max(axis=1)
    best = np.argpartition(-gmax, k - 1, axis=1)[:, :k]
    cand = (best[:, :, None] + n_groups * np.arange(group)[None, None, :]).reshape(m, k * group)
    cvals = np.take_along_axis(sp, cand, axis=1)
    part = np.argpartition(-cvals, k - 1, axis=1)[:, :k]
    rows = np.take_along_axis(cand, part, axis=1)
    vals = np.take_along_axis(cvals, part, axis=1)
    order = np.lexsort((rows, -vals), axis=1)
    rows = np.take_along_axis(rows, order, axis=1).astype(np.int64)
    vals = np.take_along_axis(vals, order, axis=1)
    kth = vals[:, -1:]
    reached = ((gmax >= kth).sum(axis=1) > k) | ((cvals >= kth).sum(axis=1) > k)
    tied = np.flatnonzero(reached & np.isfinite(kth[:, 0]))
    for j in tied:
        t = top_k(s[j], k)
        rows[j] = -1
        vals[j] = NEG
        rows[j, :len(t)] = t
        vals[j, :len(t)] = s[j, t]
    rows[~np.isfinite(vals)] = -1
    return rows, vals

"""Recency-decayed popularity, globally and per group (store, locale, segment): every model carries
these for serving's fallbacks (context → store → locale → global).

Never per channel: an anonymous store visitor and a web visitor in the same context must get the
same list (the parity rule), so no function here takes a channel.

Inputs are one entry per interaction: item row, optional weight (event weight; only positive weights
count, so returns and declined offers never make an item popular) and optional timestamp (epoch
seconds) for the decay 0.5 ** (age_days / half_life_days), age measured back from `now`.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

DAY = 86400.0


def interaction_weights(
    n: int,
    weights: np.ndarray | None = None,
    ts: np.ndarray | None = None,
    now: float | None = None,
    half_life_days: float | None = 30.0,
) -> np.ndarray:
    """Per-interaction contribution: max(weight, 0) x recency decay (float64)."""
    w = np.ones(n) if weights is None else np.clip(np.asarray(weights, dtype=np.float64), 0.0, None)
    if len(w) != n:
        raise ValueError(f"weights has {len(w)} entries for {n} interactions")
    if ts is not None and half_life_days:
        ts = np.asarray(ts, dtype=np.float64)
        if len(ts) != n:
            raise ValueError(f"ts has {len(ts)} entries for {n} interactions")
        if now is None:
            now = float(ts.max()) if n else 0.0
        age = np.clip(now - ts, 0.0, None) / DAY
        w = w * np.exp2(-age / float(half_life_days))
        w[ts > now] = 0.0  # after the cut-off: not known yet
    return w


def global_popularity(
    item_rows: np.ndarray,
    n_items: int,
    *,
    weights: np.ndarray | None = None,
    ts: np.ndarray | None = None,
    now: float | None = None,
    half_life_days: float | None = 30.0,
) -> np.ndarray:
    """float32 (n_items,): Σ positive weight x decay per item."""
    item_rows = np.asarray(item_rows, dtype=np.int64)
    w = interaction_weights(len(item_rows), weights, ts, now, half_life_days)
    return np.bincount(item_rows, weights=w, minlength=n_items).astype(np.float32)


def group_popularity(
    item_rows: np.ndarray,
    groups: np.ndarray,
    n_groups: int,
    n_items: int,
    *,
    weights: np.ndarray | None = None,
    ts: np.ndarray | None = None,
    now: float | None = None,
    half_life_days: float | None = 30.0,
    top: int = 200,
) -> tuple[np.ndarray, np.ndarray]:
    """Each group's `top` most popular items: (items int32 (n_groups, top) -1 padded, scores float32).

    groups: group row per interaction (-1: the interaction belongs to no group, e.g. an online order
    for per-store popularity). Ties by item row. Sparse accumulation: n_groups x n_items never dense.
    """
    item_rows = np.asarray(item_rows, dtype=np.int64)
    groups = np.asarray(groups, dtype=np.int64)
    if len(groups) != len(item_rows):
        raise ValueError(f"groups has {len(groups)} entries for {len(item_rows)} interactions")
    w = interaction_weights(len(item_rows), weights, ts, now, half_life_days)
    ok = (groups >= 0) & (groups < n_groups) & (w > 0)
    if 0 < n_groups * n_items <= DENSE_MAX:  # few groups (stores, locales, segments): one bincount
        dense = np.bincount(groups[ok] * n_items + item_rows[ok], weights=w[ok],
                            minlength=n_groups * n_items).reshape(n_groups, n_items)
        m = sp.csr_matrix(dense)
    else:
        m = sp.csr_matrix((w[ok], (groups[ok], item_rows[ok])), shape=(n_groups, n_items))
        m.sum_duplicates()
    return top_per_row(m, top)


DENSE_MAX = 1 << 24  # group x item cells summed densely (128 MiB of float64 at most)


def top_per_row(m: sp.csr_matrix, top: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise top `top` of a sparse score matrix (best first, ties by column), -1 / 0 padded."""
    m = sp.csr_matrix(m)
    n = m.shape[0]
    items = np.full((n, top), -1, dtype=np.int32)
    scores = np.zeros((n, top), dtype=np.float32)
    coo = m.tocoo()
    keep = coo.data > 0
    r, c, v = coo.row[keep].astype(np.int64), coo.col[keep].astype(np.int64), coo.data[keep]
    if len(r) == 0:
        return items, scores
    order = np.lexsort((c, -v, r))
    r, c, v = r[order], c[order], v[order]
    rank = np.arange(len(r)) - np.searchsorted(r, np.arange(n))[r]
    ok = rank < top
    items[r[ok], rank[ok]] = c[ok]
    scores[r[ok], rank[ok]] = v[ok]
    return items, scores

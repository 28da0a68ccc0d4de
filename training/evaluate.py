"""Offline evaluation: metrics@k overall, per channel of the held-out interactions, per customer group,
with bootstrap 95% intervals; plus the baselines every report shows.

Recommendations never depend on the channel (the parity rule): a customer gets one list, and the
per-channel figures only restrict the *truth* to the held-out interactions on that channel, over
the customers with at least one of them.

Metrics (binary relevance, one list of k item rows per customer, best first, -1 padded):
  precision = hits / k; recall = hits / |truth|; hit_rate = 1 if any hit;
  ndcg = Σ_hits 1/log2(rank+1) / Σ_{r<=min(|truth|,k)} 1/log2(r+1);
  map = H&M/Kaggle AP@k = Σ_r P@r·rel_r / min(|truth|, k);
  coverage = share of catalogue items in any list of the customers evaluated.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import lru_cache

import numpy as np
import scipy.sparse as sp

from recsvc.core.scoring import MARGIN, NEG, batch_top_k, refine, top_k

Recommend = Callable[[np.ndarray], np.ndarray]
PER_CUSTOMER = ("precision", "recall", "ndcg", "map", "hit_rate")
ONLINE = ("web", "app")
STORE = ("store",)


# ---------------------------------------------------------------- pure metric functions
def dedupe(recs: np.ndarray) -> np.ndarray:
    """Blank (-1) repeated items in each row after their first occurrence, so a repeat never scores twice."""
    recs = np.array(recs, dtype=np.int64, copy=True)
    if recs.size == 0:
        return recs
    order = np.argsort(recs, axis=1, kind="stable")
    s = np.take_along_axis(recs, order, axis=1)
    dup_sorted = np.zeros_like(s, dtype=bool)
    dup_sorted[:, 1:] = (s[:, 1:] == s[:, :-1]) & (s[:, 1:] >= 0)
    dup = np.zeros_like(dup_sorted)
    np.put_along_axis(dup, order, dup_sorted, axis=1)
    recs[dup] = -1
    return recs


def hits_matrix(recs: np.ndarray, truth_keys: np.ndarray, n_items: int) -> np.ndarray:
    """hits[i, r] = recs[i, r] is in row i's truth. truth_keys: sorted unique i·n_items + item."""
    recs = np.asarray(recs, dtype=np.int64)
    if len(truth_keys) == 0 or recs.size == 0:
        return np.zeros(recs.shape, dtype=bool)
    keys = np.arange(recs.shape[0], dtype=np.int64)[:, None] * n_items + recs
    pos = np.minimum(np.searchsorted(truth_keys, keys), len(truth_keys) - 1)
    return (truth_keys[pos] == keys) & (recs >= 0)


def discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2))


def precision_at_k(hits: np.ndarray, k: int) -> np.ndarray:
    return hits.sum(axis=1) / float(k)


def recall_at_k(hits: np.ndarray, n_truth: np.ndarray) -> np.ndarray:
    return hits.sum(axis=1) / np.maximum(n_truth, 1)


def ndcg_at_k(hits: np.ndarray, n_truth: np.ndarray, k: int) -> np.ndarray:
    d = discounts(k)
    dcg = hits[:, :k].astype(np.float64) @ d[: hits.shape[1]]
    ideal = np.cumsum(d)[np.clip(np.minimum(n_truth, k), 1, k) - 1]
    return np.where(n_truth > 0, dcg / ideal, 0.0)


def average_precision_at_k(hits: np.ndarray, n_truth: np.ndarray, k: int) -> np.ndarray:
    h = hits[:, :k].astype(np.float64)
    prec = np.cumsum(h, axis=1) / np.arange(1, h.shape[1] + 1)
    return np.where(n_truth > 0, (prec * h).sum(axis=1) / np.maximum(np.minimum(n_truth, k), 1), 0.0)


def hit_rate_at_k(hits: np.ndarray) -> np.ndarray:
    return hits.any(axis=1).astype(np.float64)


def coverage(recs: np.ndarray, n_items: int) -> float:
    r = np.asarray(recs)
    return float(len(np.unique(r[r >= 0])) / n_items) if n_items else 0.0


def per_customer_metrics(hits: np.ndarray, n_truth: np.ndarray, k: int) -> np.ndarray:
    """(n_customers, 5) in PER_CUSTOMER order."""
    return np.column_stack(
        [
            precision_at_k(hits, k),
            recall_at_k(hits, n_truth),
            ndcg_at_k(hits, n_truth, k),
            average_precision_at_k(hits, n_truth, k),
            hit_rate_at_k(hits),
        ]
    )


def bootstrap_ci(values: np.ndarray, n_boot: int, seed: int, level: float = 0.95) -> np.ndarray:
    """Percentile intervals of column means, resampling rows (customers). values (n, m) -> (m, 2)."""
    values = np.asarray(values, dtype=np.float64)
    n, m = values.shape
    if n == 0 or n_boot <= 0:
        return np.full((m, 2), np.nan)
    out = np.empty((n_boot, m))
    for a, counts in _resample_counts(n, n_boot, seed):
        out[a : a + len(counts)] = counts @ values / n
    tail = (1.0 - level) / 2.0 * 100.0
    return np.percentile(out, [tail, 100.0 - tail], axis=0).T


def _resample_counts(n: int, n_boot: int, seed: int):
    """(first draw, counts (draws, n)): how often each of n rows is drawn in each resample, in chunks
    that bound the matrix. The same (n, n_boot, seed) always gives the same resamples, so the models
    and baselines evaluated on the same customers share them (kept for the last few sizes)."""
    if n * n_boot <= _COUNTS_CACHED_MAX:
        return _resample_counts_cached(n, n_boot, seed)
    return _resample_counts_gen(n, n_boot, seed)


def _resample_counts_gen(n: int, n_boot: int, seed: int):
    rng = np.random.default_rng(seed)
    chunk = max(1, (1 << 23) // n)  # bound the (draws x customers) count matrix
    for a in range(0, n_boot, chunk):
        b = min(n_boot, a + chunk)
        draws = rng.integers(0, n, size=(b - a, n))
        counts = np.bincount((np.arange(b - a)[:, None] * n + draws).ravel(), minlength=(b - a) * n)
        yield a, counts.reshape(b - a, n)


_COUNTS_CACHED_MAX = 1 << 22


@lru_cache(maxsize=16)
def _resample_counts_cached(n: int, n_boot: int, seed: int) -> tuple[tuple[int, np.ndarray], ...]:
    small = np.uint16 if n < 1 << 16 else np.int64
    out = tuple((a, c.astype(small)) for a, c in _resample_counts_gen(n, n_boot, seed))
    for _, c in out:
        c.setflags(write=False)
    return out


# ---------------------------------------------------------------- evaluation
def evaluate(
    recommend: Recommend,
    test_cust: np.ndarray,
    test_item: np.ndarray,
    test_channel: np.ndarray,
    k: int,
    n_items: int,
    groups: Mapping[str, np.ndarray] | None = None,
    bootstrap: int = 200,
    seed: int = 0,
    max_customers: int | None = 20000,
    block: int = 1024,
    threads: int = 0,
) -> dict:
    """Metrics@k of `recommend` (customer rows -> (len, k) item rows, best first, -1 padded) against
    the held-out (customer row, item row, channel) interactions. See the module docstring."""
    test_cust = np.asarray(test_cust, dtype=np.int64)
    test_item = np.asarray(test_item, dtype=np.int64)
    test_channel = np.asarray(test_channel)
    if not (len(test_cust) == len(test_item) == len(test_channel)):
        raise ValueError("test_cust, test_item and test_channel must have the same length")
    customers = np.unique(test_cust)
    if max_customers is not None and len(customers) > max_customers:
        rng = np.random.default_rng(seed)
        customers = np.sort(rng.choice(customers, size=max_customers, replace=False))
    recs = _collect(recommend, customers, k, block, threads)
    sel = np.flatnonzero(np.isin(test_cust, customers))
    e_idx = np.searchsorted(customers, test_cust[sel])
    e_item, e_chan = test_item[sel], test_channel[sel]

    def section(rows_mask: np.ndarray | None, members: np.ndarray | None) -> dict:
        idx, it = (e_idx, e_item) if rows_mask is None else (e_idx[rows_mask], e_item[rows_mask])
        keys = np.unique(idx * n_items + it)
        n_truth = np.bincount(keys // n_items, minlength=len(customers))
        who = n_truth > 0 if members is None else (n_truth > 0) & members
        return _summarise(recs[who], keys, n_truth[who], np.flatnonzero(who), k, n_items, bootstrap, seed)

    out = {
        "k": k,
        "customers": len(customers),
        "overall": section(None, None),
        "per_channel": {},
        "per_group": {},
    }
    for ch in np.unique(e_chan):
        out["per_channel"][str(ch)] = section(e_chan == ch, None)
    for name, mask in (groups or {}).items():
        mask = np.asarray(mask, dtype=bool)
        if len(mask) <= (customers.max() if len(customers) else -1):
            raise ValueError(
                f"group {name!r}: mask covers {len(mask)} customer rows, the test set has row "
                f"{customers.max()}; build it over all customer rows"
            )
        out["per_group"][name] = section(None, mask[customers])
    return out


def _collect(recommend: Recommend, customers: np.ndarray, k: int, block: int, threads: int = 0) -> np.ndarray:
    """Every customer's list, in blocks; blocks run on `threads` threads (0: every core): the
    recommenders here are numpy and BLAS, which release the GIL, and each block writes its own rows."""
    from concurrent.futures import ThreadPoolExecutor

    from training.learners.base import cpu_threads

    recs = np.full((len(customers), k), -1, dtype=np.int64)

    def one(a: int) -> None:
        r = np.asarray(recommend(customers[a : a + block]))
        if r.ndim != 2 or r.shape[0] != min(block, len(customers) - a):
            raise ValueError(
                f"recommend returned shape {r.shape} for {min(block, len(customers) - a)} customers"
            )
        w = min(k, r.shape[1])
        recs[a : a + block, :w] = r[:, :w]

    starts = range(0, len(customers), block)
    threads = min(cpu_threads(threads), len(starts))
    if threads > 1:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(one, starts))
    else:
        for a in starts:
            one(a)
    return dedupe(recs)


def _summarise(
    recs: np.ndarray,
    keys: np.ndarray,
    n_truth: np.ndarray,
    who: np.ndarray,
    k: int,
    n_items: int,
    bootstrap: int,
    seed: int,
) -> dict:
    n = len(who)
    res: dict = {"customers": int(n)}
    if n == 0:
        return res
    # re-key the truth to the positions of `who` so hits_matrix sees rows 0..n-1
    cust_of_key = keys // n_items
    keep = np.isin(cust_of_key, who)
    sub_keys = np.searchsorted(who, cust_of_key[keep]) * n_items + keys[keep] % n_items
    hits = hits_matrix(recs, sub_keys, n_items)
    m = per_customer_metrics(hits, n_truth, k)
    means = m.mean(axis=0)
    for name, v in zip(PER_CUSTOMER, means, strict=True):
        res[f"{name}@{k}"] = float(v)
    res[f"coverage@{k}"] = coverage(recs, n_items)
    ci = bootstrap_ci(m, bootstrap, seed)
    res["ci95"] = (
        {}
        if bootstrap <= 0
        else {f"{name}@{k}": [float(lo), float(hi)] for name, (lo, hi) in zip(PER_CUSTOMER, ci, strict=True)}
    )
    return res


# ---------------------------------------------------------------- customer groups
def customer_groups(cust_row: np.ndarray, channels: np.ndarray, n_customers: int) -> dict[str, np.ndarray]:
    """Bool masks over customer rows from their *training* interactions (one entry per interaction).

    store_dominant: >= 2/3 in store; online_dominant: >= 2/3 on web or app; both: the other active
    customers; light: <= the median interaction count of active customers; heavy: above it.
    """
    cust_row = np.asarray(cust_row, dtype=np.int64)
    channels = np.asarray(channels)
    if channels.dtype.kind != "U":
        channels = channels.astype(str)

    def among(names: tuple[str, ...]) -> np.ndarray:  # a few equality passes: no sort of the strings
        return np.logical_or.reduce([channels == c for c in names]) if len(channels) else np.zeros(0, bool)

    total = np.bincount(cust_row, minlength=n_customers)
    store = np.bincount(cust_row[among(STORE)], minlength=n_customers)
    online = np.bincount(cust_row[among(ONLINE)], minlength=n_customers)
    active = total > 0
    store_dom = active & (3 * store >= 2 * total)
    online_dom = active & (3 * online >= 2 * total)
    median = float(np.median(total[active])) if active.any() else 0.0
    return {
        "store_dominant": store_dom,
        "online_dominant": online_dom,
        "both": active & ~store_dom & ~online_dom,
        "light": active & (total <= median),
        "heavy": active & (total > median),
    }


# ---------------------------------------------------------------- recommenders for evaluation
def _block_rows(m: sp.csr_matrix | None, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(indptr, indices) of m's rows `rows`, or an empty CSR."""
    if m is None:
        return np.zeros(len(rows) + 1, dtype=np.int64), np.zeros(0, dtype=np.int64)
    sub = m[rows]
    return sub.indptr.astype(np.int64), sub.indices.astype(np.int64)


def _popular_fill(
    order: np.ndarray, position: np.ndarray, indptr: np.ndarray, items: np.ndarray, k: int
) -> np.ndarray:
    """For each row, the first k items of the global `order` not among that row's (indptr, items)."""
    n_rows, n_items = len(indptr) - 1, len(order)
    per_row = np.diff(indptr)
    width = int(min(n_items, k + (per_row.max() if n_rows else 0)))
    blocked = np.zeros((n_rows, width), dtype=bool)
    p = position[items]
    r = np.repeat(np.arange(n_rows), per_row)
    inside = p < width
    blocked[r[inside], p[inside]] = True
    first = np.argsort(blocked, axis=1, kind="stable")[:, :k]  # positions of the first unblocked
    out = np.where(np.take_along_axis(blocked, first, axis=1), -1, order[first])
    if out.shape[1] < k:
        out = np.hstack([out, np.full((n_rows, k - out.shape[1]), -1, dtype=out.dtype)])
    return out.astype(np.int64)


def _merge_first(first: np.ndarray, fill: np.ndarray, k: int) -> np.ndarray:
    """Rows of `first` (valid entries left-aligned, -1 after) completed with `fill` up to k."""
    c = (first >= 0).sum(axis=1)
    j = np.arange(k)[None, :]
    src = np.clip(j - c[:, None], 0, fill.shape[1] - 1)
    return np.where(j < c[:, None], first[:, :k], np.take_along_axis(fill, src, axis=1))


def _union_rows(a: tuple[np.ndarray, np.ndarray], b_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CSR (indptr, items) a plus the valid entries of a dense (n, w) -1 padded array."""
    indptr, items = a
    n = len(indptr) - 1
    r_a = np.repeat(np.arange(n), np.diff(indptr))
    rr, cc = np.nonzero(b_rows >= 0)
    rows = np.concatenate([r_a, rr])
    cols = np.concatenate([items, b_rows[rr, cc]])
    order = np.argsort(rows, kind="stable")
    new_ptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n), out=new_ptr[1:])
    return new_ptr, cols[order]


def popularity_order(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Item rows best first (ties by row) and each item's position in that order."""
    scores = np.asarray(scores, dtype=np.float64)
    order = np.lexsort((np.arange(len(scores)), -scores))
    position = np.empty_like(order)
    position[order] = np.arange(len(order))
    return order, position


def popularity_recommender(
    train_confidence: sp.csr_matrix,
    k: int,
    exclude: sp.csr_matrix | None = None,
    item_scores: np.ndarray | None = None,
) -> Recommend:
    """Recent popularity: the same list for everyone, minus each customer's `exclude` row.

    item_scores defaults to the column sums of the (recency-weighted) training confidence.
    """
    scores = np.asarray(train_confidence.sum(axis=0)).ravel() if item_scores is None else item_scores
    order, position = popularity_order(scores)
    exclude = None if exclude is None else sp.csr_matrix(exclude)

    def recommend(rows: np.ndarray) -> np.ndarray:
        return _popular_fill(order, position, *_block_rows(exclude, np.asarray(rows)), k)

    return recommend


def repurchase_popularity_recommender(
    train_confidence: sp.csr_matrix,
    k: int,
    exclude: sp.csr_matrix | None = None,
    item_scores: np.ndarray | None = None,
    history: sp.csr_matrix | None = None,
) -> Recommend:
    """The customer's own past items first (highest confidence first: frequent and recent), then
    recent popularity. `history` defaults to the training confidence; `exclude` removes items from both."""
    hist = sp.csr_matrix(train_confidence if history is None else history)
    scores = np.asarray(train_confidence.sum(axis=0)).ravel() if item_scores is None else item_scores
    order, position = popularity_order(scores)
    exclude = None if exclude is None else sp.csr_matrix(exclude)

    def recommend(rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows)
        own = _own_top(hist[rows], exclude[rows] if exclude is not None else None, k)
        fill = _popular_fill(order, position, *_union_rows(_block_rows(exclude, rows), own), k)
        return _merge_first(own, fill, k)

    return recommend


def _own_top(h: sp.csr_matrix, ex: sp.csr_matrix | None, k: int) -> np.ndarray:
    """Each row's k highest-valued entries (ties by item row), excluded entries dropped; -1 padded."""
    coo = sp.csr_matrix(h).tocoo()
    n, n_items = h.shape
    out = np.full((n, k), -1, dtype=np.int64)
    row, col, val = coo.row.astype(np.int64), coo.col.astype(np.int64), coo.data
    if ex is not None and ex.nnz:
        ex = sp.csr_matrix(ex).tocoo()
        drop = np.isin(row * n_items + col, ex.row.astype(np.int64) * n_items + ex.col)
        row, col, val = row[~drop], col[~drop], val[~drop]
    pos = val > 0
    row, col, val = row[pos], col[pos], val[pos]
    if len(row) == 0:
        return out
    order = np.lexsort((col, -val, row))
    r, c = row[order], col[order]
    rank = np.arange(len(r)) - np.searchsorted(r, np.arange(n))[r]
    ok = rank < k
    out[r[ok], rank[ok]] = c[ok]
    return out


def recommender_for(
    factors,
    history: sp.csr_matrix,
    k: int,
    exclude: sp.csr_matrix | None = None,
    fallback_scores: np.ndarray | None = None,
) -> Recommend:
    """Batch top-k of a fitted model (training.learners.base.Factors), ranked as the API ranks.

    Kind "factors": BLAS candidates (`batch_top_k`, k + MARGIN) re-ordered by their exact scores
    (`refine`); a customer whose vector is all zeros has no personal score. Kind "neighbours":
    Σ weight × similarity over the `history` row (training confidence), then `top_k`; a customer
    with no positive score has no personal score. Customers without a personal score get
    `fallback_scores` popularity (None: the model's own, uninformed order). `exclude`: items never
    to return per customer (e.g. seen).
    """
    history = sp.csr_matrix(history)
    exclude = None if exclude is None else sp.csr_matrix(exclude)
    n_items = history.shape[1]
    block = max(64, min(2048, (1 << 23) // max(1, n_items)))
    if factors.kind == "popularity":
        return popularity_recommender(history, k, exclude, factors.item_scores)
    fb = None if fallback_scores is None else popularity_order(fallback_scores)

    if factors.kind == "factors":
        y, bias = factors.item_factors, factors.item_bias
        live = np.any(np.asarray(factors.customer_factors) != 0, axis=1)

        def personal(rows: np.ndarray, ex: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
            u = np.asarray(factors.customer_factors[rows])
            cand, _ = batch_top_k(y, u, k + MARGIN, ex[0], ex[1], item_bias=bias, block=block)
            out = np.full((len(rows), k), -1, dtype=np.int64)
            for j in range(len(rows)):
                c = cand[j][cand[j] >= 0]
                r, _ = refine(y, u[j], c, k, bias)
                out[j, : len(r)] = r
            return out, ~live[rows]

    elif factors.kind == "neighbours":
        nb, sim = np.asarray(factors.neighbours), np.asarray(factors.neighbour_scores)
        ok = nb >= 0
        s_mat = sp.csr_matrix((sim[ok], (np.nonzero(ok)[0], nb[ok])), shape=(n_items, n_items))

        def personal(rows: np.ndarray, ex: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
            out = np.full((len(rows), k), -1, dtype=np.int64)
            cold = np.zeros(len(rows), dtype=bool)
            for a in range(0, len(rows), block):
                b = min(len(rows), a + block)
                s = np.asarray((history[rows[a:b]] @ s_mat).todense(), dtype=np.float32)
                cold[a:b] = ~np.any(s > 0, axis=1)
                r = np.repeat(np.arange(b - a), np.diff(ex[0][a : b + 1]))
                s[r, ex[1][ex[0][a] : ex[0][b]]] = NEG
                for j in range(b - a):
                    t = top_k(s[j], k)
                    out[a + j, : len(t)] = t
            return out, cold

    else:
        raise ValueError(f"unknown factors kind {factors.kind!r}")

    def recommend(rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows)
        ex = _block_rows(exclude, rows)
        recs, cold = personal(rows, ex)
        if fb is None or not cold.any():
            return recs
        recs[cold] = -1
        fill = _popular_fill(fb[0], fb[1], *_union_rows(ex, recs), k)
        return _merge_first(recs, fill, k)

    return recommend

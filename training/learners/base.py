"""What every learner hands to export: numpy arrays only. Library objects never leave a wrapper.

A learner's ranking for a customer is exactly what serving computes from these arrays
(`recsvc.core.scoring`): `item_factors @ customer_factors[c] + item_bias` for kind "factors",
Σ weight × similarity over the customer's history for kind "neighbours", `item_scores` for kind
"popularity".
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp

KINDS = ("factors", "neighbours", "popularity")
DEFAULT_NEIGHBOURS = 20


class ModelFitError(Exception):
    """The fit produced unusable numbers (NaN/inf) or could not run; the message says what to change."""


class LearnerConfigError(ValueError):
    """Unknown learner name or hyper-parameter."""


@dataclass(frozen=True)
class Factors:
    """A fitted model as plain arrays (see the module docstring for how each kind scores)."""

    kind: str
    item_factors: np.ndarray | None = None  # float32 (n_items, k), C-contiguous
    customer_factors: np.ndarray | None = None  # float32 (n_customers, k)
    item_bias: np.ndarray | None = None  # float32 (n_items,)
    neighbours: np.ndarray | None = None  # int32 (n_items, K), -1 padded, best first
    neighbour_scores: np.ndarray | None = None  # float32 (n_items, K), 0 where padded
    item_scores: np.ndarray | None = None  # float32 (n_items,), kind "popularity"
    foldin: dict | None = None  # {"regularization": r, "alpha": a}: ALS closed-form fold-in at serving
    params: dict = field(default_factory=dict)  # hyper-parameters actually used (after tuning)

    def replace(self, **changes: Any) -> Factors:
        return dataclasses.replace(self, **changes)


class Learner(Protocol):
    name: str
    warm_start: bool  # True: fit(init=..., iterations=n) continues from init's factors

    def fit(
        self,
        confidence: sp.csr_matrix,
        *,
        catalog=None,
        customers=None,
        item_ids=None,
        customer_ids=None,
        seed: int = 0,
        init: Factors | None = None,
        iterations: int | None = None,
        progress: bool = False,
        neighbours: bool = True,
    ) -> Factors: ...


def check_confidence(confidence: sp.spmatrix, learner: str) -> sp.csr_matrix:
    """CSR float32 with sorted indices; refuse NaN/inf and negatives (the contract: positive confidences)."""
    if not sp.issparse(confidence):
        raise ModelFitError(
            f"{learner}: confidence must be a scipy.sparse matrix, got {type(confidence).__name__}"
        )
    x = sp.csr_matrix(confidence, dtype=np.float32)
    if not x.has_sorted_indices:
        x = x.sorted_indices()
    if x.nnz and not np.all(np.isfinite(x.data)):
        raise ModelFitError(
            f"{learner}: the confidence matrix holds NaN or inf; check the event weights "
            "and recency settings that produced it"
        )
    if x.nnz and x.data.min() < 0:
        raise ModelFitError(
            f"{learner}: the confidence matrix holds negative values; net them per "
            "(customer, item) and keep the positive totals before fitting"
        )
    return x


def check_finite(f: Factors, learner: str, fix: str) -> Factors:
    """Raise ModelFitError naming the array when any exported number is NaN/inf."""
    for name in ("item_factors", "customer_factors", "item_bias", "neighbour_scores", "item_scores"):
        a = getattr(f, name)
        if a is not None and a.size and not np.isfinite(a).all():
            raise ModelFitError(f"{learner}: {name} holds NaN or inf, the fit diverged; {fix}")
    return f


def as_f32(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32)


def cpu_threads(requested: int = 0) -> int:
    """Threads for a native kernel: `requested` if > 0, else every core this process may run on.

    Passed explicitly to implicit, because its own 0 means OpenMP's default, which follows
    OMP_NUM_THREADS: a process started with OMP_NUM_THREADS=1 (common, to keep BLAS single-threaded)
    would otherwise train on one core.
    """
    if requested > 0:
        return int(requested)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def factor_neighbours(
    item_factors: np.ndarray, k: int = DEFAULT_NEIGHBOURS, num_threads: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k cosine neighbours of each item's factor vector (self excluded, only positive similarity).

    Exact: of equal similarities the lower item row wins, so the result never depends on the order of
    the work. Items with a zero vector get no neighbours and are nobody's neighbour. See
    `_cosine_top_k` for how (about half the work of a row-by-row top-k over all items).
    """
    n = item_factors.shape[0]
    k = max(0, min(k, n - 1))
    nb = np.full((n, k), -1, dtype=np.int32)
    sc = np.zeros((n, k), dtype=np.float32)
    if k == 0:
        return nb, sc
    y = np.asarray(item_factors, dtype=np.float32)
    norms = np.linalg.norm(y, axis=1)
    live = np.flatnonzero(norms > 0)
    if len(live) < 2:
        return nb, sc
    yn = np.ascontiguousarray(y[live] / norms[live, None], dtype=np.float32)
    threads = cpu_threads(num_threads or (1 if len(live) < 5000 else 0))  # start-up dominates small catalogues
    ids, scores = _cosine_top_k(yn, k, threads)
    ok = ids >= 0
    nb[live] = np.where(ok, live[np.clip(ids, 0, None)], -1)
    sc[live] = np.where(ok, scores, 0.0)
    return compact_neighbours(nb, sc)


# BLAS sums a dot product in an order that depends on the shapes multiplied, so the sample that sets
# the first thresholds and the block that finds the entry may differ in the last bits of a cosine
SAMPLE_MARGIN = np.float32(1e-4)


def _cosine_top_k(yn: np.ndarray, k: int, threads: int, block: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Each row's k best positive dot products with the other rows of `yn` (ids -1 / scores -inf padded),
    in no particular order.

    The similarity matrix is symmetric, so it is computed in blocks of its upper triangle only and
    each block serves both its rows and its columns. Every row keeps its best k so far; their lowest
    score is a threshold nothing below can enter, and it rises fast: rows are visited in a fixed
    random order, so the j-th block brings about k/j entries above it. Only the entries at or above
    their row's threshold are read again. Blocks run on `threads` threads (BLAS and numpy release
    the GIL); each row block's state has its own lock, and a late threshold is only a lower one
    (more candidates, same result). An entry is one int64 key, score bits above, inverted item row
    below, so "higher key" is "higher score, then lower row" and a plain partition selects.
    """
    import threading
    from concurrent.futures import ThreadPoolExecutor

    m = len(yn)
    low = np.int64(0xFFFFFFFF)
    perm = np.random.default_rng(m).permutation(m)  # a fixed order: items sorted by id are often grouped
    ys = np.ascontiguousarray(yn[perm])
    inv_id = low - perm.astype(np.int64)  # the low half of a key: ties go to the lower row of yn
    top = np.zeros((m, k), dtype=np.int64)  # keys; 0 = none (a positive score's key is > 2**32)
    thr = np.zeros(m, dtype=np.float32)  # only positive similarities qualify
    block = max(8, min(block, -(-m // 8) * 8))
    starts = list(range(0, m, block))
    locks = {a: threading.Lock() for a in starts}

    def merge(a: int, r: np.ndarray, c: np.ndarray, v: np.ndarray) -> None:
        """Fold candidates (row r of block a, permuted column c, score v) into the rows' best k."""
        keep = v > 0
        if not keep.all():
            r, c, v = r[keep], c[keep], v[keep]
        if len(r) == 0:
            return
        keys = (v.astype(np.float32).view(np.int32).astype(np.int64) << 32) | inv_id[c]
        o = np.argsort(r, kind="stable")
        r, keys = r[o] + a, keys[o]
        rows, first, counts = np.unique(r, return_index=True, return_counts=True)
        pos = np.arange(len(r)) - np.repeat(first, counts)
        w = k + int(counts.max())
        with locks[a]:
            d = np.zeros((len(rows), w), dtype=np.int64)
            d[:, :k] = top[rows]
            d[np.repeat(np.arange(len(rows)), counts), k + pos] = keys
            best = np.partition(d, w - k, axis=1)[:, w - k:]
            top[rows] = best
            thr[rows] = (best.min(axis=1) >> 32).astype(np.int32).view(np.float32)

    def candidates(s: np.ndarray, t: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(row, column, score) of the entries of s at or above their row's threshold t, with the rows
        along `axis` of s. One pass flags them; only the 8-byte words holding a flag are read again."""
        tt = t[:, None] if axis == 0 else t[None, :]
        flags = (s >= tt).ravel()
        hot = np.flatnonzero(flags.view(np.uint64) != 0)  # the 8-byte words holding a flag: few
        word, bit = np.nonzero(flags.view(np.uint8).reshape(-1, 8)[hot])
        idx = hot[word] * 8 + bit
        i, j = np.divmod(idx, s.shape[1])
        r, c = (i, j) if axis == 0 else (j, i)
        return r, c, s.ravel()[idx]

    def pair(ab: tuple[int, int]) -> None:
        a, b = ab
        ea, eb = min(m, a + block), min(m, b + block)
        s = ys[a:ea] @ ys[b:eb].T
        if a == b:
            np.fill_diagonal(s, -np.inf)
        wide = -(-s.shape[1] // 8) * 8  # whole 8-byte words of flags per row
        if wide != s.shape[1]:
            s = np.pad(s, ((0, 0), (0, wide - s.shape[1])), constant_values=-np.inf)
        r, c, v = candidates(s, thr[a:ea], 0)
        merge(a, r, b + c, v)
        if a != b:
            tb = np.concatenate([thr[b:eb], np.full(wide - (eb - b), np.inf, np.float32)])
            r, c, v = candidates(s, tb, 1)
            merge(b, r, a + c, v)

    # a first threshold per row: the k-th best of a sample of 512 others (about the top 4% of a block)
    w = min(512, m)
    for a in starts:
        ea = min(m, a + block)
        sample = ys[a:ea] @ ys[:w].T
        own = np.arange(a, ea)
        mine = own < w
        sample[np.flatnonzero(mine), own[mine]] = -np.inf
        if w - 1 >= k:  # less a margin: the block product may round the same dot product an ulp lower
            thr[a:ea] = np.maximum(np.partition(sample, w - k, axis=1)[:, w - k] - SAMPLE_MARGIN, 0.0)
    work = [(a, a) for a in starts] + [(a, b) for i, a in enumerate(starts) for b in starts[i + 1:]]
    if threads > 1 and len(work) > 1:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(pair, work))
    else:
        for ab in work:
            pair(ab)
    found = top > 0
    ids = np.full((m, k), -1, dtype=np.int64)
    scores = np.full((m, k), -np.inf, dtype=np.float32)
    ids[perm] = np.where(found, low - (top & low), -1)
    scores[perm] = np.where(found, (top >> 32).astype(np.int32).view(np.float32), -np.inf)
    return ids, scores


def compact_neighbours(nb: np.ndarray, sc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Order each row best first (ties by item row), padding (-1, 0) last."""
    pad = nb < 0
    order = (
        np.lexsort((np.where(pad, np.iinfo(np.int32).max, nb), np.where(pad, np.inf, -sc), pad), axis=1)
        if nb.size
        else np.zeros_like(nb)
    )
    nb = np.take_along_axis(nb, order, axis=1).astype(np.int32)
    sc = np.take_along_axis(sc, order, axis=1).astype(np.float32)
    return np.ascontiguousarray(nb), np.ascontiguousarray(sc)


def with_neighbours(
    f: Factors, k: int = DEFAULT_NEIGHBOURS, num_threads: int = 0, bias_column: bool = False
) -> Factors:
    """Add item-factor cosine neighbours to a kind "factors" model (serving's similar items).

    bias_column: the last factor column is an item bias (implicit BPR) and is left out of the cosine.
    """
    y = f.item_factors[:, :-1] if bias_column else f.item_factors
    nb, sc = factor_neighbours(y, k, num_threads)
    return f.replace(neighbours=nb, neighbour_scores=sc)


def merge_params(name: str, defaults: dict, params: dict | None) -> dict:
    """defaults updated by params; an unknown key is an error that lists the known ones."""
    params = dict(params or {})
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise LearnerConfigError(
            f"learner {name!r}: unknown parameter(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(defaults))}"
        )
    return {**defaults, **params}


_LEARNERS = {
    "als": ("training.learners.als", "ALSLearner"),
    "bpr": ("training.learners.bpr", "BPRLearner"),
    "lightfm": ("training.learners.lightfm", "LightFMLearner"),
    "itemknn": ("training.learners.itemknn", "ItemKNNLearner"),
    "popularity": ("training.learners.popularity", "PopularityLearner"),
    "ease": ("training.learners.ease", "EASELearner"),
}
LEARNER_NAMES = tuple(_LEARNERS)


def get_learner(name: str, params: dict | None = None) -> Learner:
    """The learner `name` with `params` over its defaults (imported lazily: lightfm is slow to load)."""
    import importlib

    if name not in _LEARNERS:
        raise LearnerConfigError(f"unknown learner {name!r}; choose one of {', '.join(LEARNER_NAMES)}")
    module, cls = _LEARNERS[name]
    return getattr(importlib.import_module(module), cls)(params)

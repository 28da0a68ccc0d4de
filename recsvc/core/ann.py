"""Approximate candidates for large catalogues: an HNSW index (faiss) over the item factors.

Above `min_items` items (manifest `scoring.ann.min_items`, or the service's RECSVC_ANN_MIN_ITEMS) a
model that ships `ann_index.npy` is not scored in full for each request: the index proposes
candidates for the customer vector, the eligibility mask (filters, exclusions, locale, validity,
stock) keeps some of them, and `rank` rescores the survivors exactly (`scoring.refine`), so every
returned score is the exact one and the order is the exact order of the candidates. Below the
threshold, or when the mask keeps too few candidates (a narrow filter), scoring is exact.

Parity: the candidate set depends on the customer vector and the channel-agnostic mask only. It
grows until every channel keeps enough candidates, so the channel a request comes from never
changes which items were considered, only which of them it may show.

The index is built by training (`build_index`, deterministic: one thread, fixed level seed) and
shipped as a uint8 array (`faiss.serialize_index`), read zero-copy over the memory-mapped file, so
gunicorn workers share its pages like the factors'. faiss is imported here only, inside functions:
the rest of the core stays numpy + stdlib (tests/test_boundaries.py holds that exception).
"""

from __future__ import annotations

import numpy as np

DEFAULT_MIN_ITEMS = 200_000
DEFAULT_M = 32  # HNSW graph degree
DEFAULT_EF_CONSTRUCTION = 80
DEFAULT_EF_SEARCH = 128  # raised to k when more candidates are asked for
GROWTH = 4  # candidate window growth when the mask keeps too few
MAX_CANDIDATES = 4096  # candidates at most (and n_items / CANDIDATE_SHARE, or GROWTH x the window)
CANDIDATE_SHARE = 16
FRONT_MAX_SHARE = 16  # context rows (browsed category) scored exactly up to n_items / this
LEVEL_SEED = 12345


def settings(model) -> dict:
    return model.manifest.scoring.get("ann") or {}


def min_items(model) -> int:
    """The catalogue size from which the index is used: the service's override, else the manifest's."""
    override = getattr(model, "ann_min_items", None)
    if override is not None:
        return int(override)
    return int(settings(model).get("min_items", DEFAULT_MIN_ITEMS))


def counts(model) -> dict[str, int]:
    """How this model's personalised requests were scored: `ann` (index candidates, exact rescoring),
    `exact` (catalogue too small or no index), `fallback` (index on, but the mask kept too few)."""
    c = model.cache.get("ann_counts")
    if c is None:
        c = model.cache["ann_counts"] = {"ann": 0, "exact": 0, "fallback": 0}
    return c


def index_of(model):
    """The model's index when approximate search applies to it, else None. Read once per model."""
    if model.kind != "factors" or model.arrays.get("ann_index") is None or model.n_items < min_items(model):
        return None
    got = model.cache.get("ann_index")
    if got is None:
        index, buf = load_index(model.arrays["ann_index"])
        f = model.item_factors.shape[1]
        if index.ntotal != model.n_items or index.d not in (f, f + 1):
            # a ValueError: loading the model (warm-up) refuses it instead of serving it
            raise ValueError(f"ann_index holds {index.ntotal} vectors of {index.d} dimensions, "
                             f"the model {model.n_items} items of {f} factors")
        got = model.cache["ann_index"] = (index, buf)
    return got[0]


def load_index(blob: np.ndarray):
    """(index, buffer) from a serialized index, without copying it: the buffer must outlive the index."""
    import faiss

    buf = np.asarray(blob)
    if buf.dtype != np.uint8 or buf.ndim != 1 or not buf.flags.c_contiguous:
        buf = np.ascontiguousarray(buf, dtype=np.uint8).reshape(-1)
    reader = faiss.ZeroCopyIOReader(faiss.swig_ptr(buf), buf.size)
    return faiss.read_index(reader), buf


def item_vectors(item_factors: np.ndarray, item_bias: np.ndarray | None) -> np.ndarray:
    """What the index holds: the item factors, with the item bias as one more column."""
    y = np.asarray(item_factors, dtype=np.float32)
    if item_bias is None:
        return np.ascontiguousarray(y)
    return np.ascontiguousarray(np.hstack([y, np.asarray(item_bias, np.float32)[:, None]]))


def query_vector(u: np.ndarray, with_bias: bool) -> np.ndarray:
    q = np.asarray(u, dtype=np.float32).reshape(1, -1)
    return np.hstack([q, np.ones((1, 1), np.float32)]) if with_bias else np.ascontiguousarray(q)


def build_index(item_factors: np.ndarray, item_bias: np.ndarray | None = None, *, m: int = DEFAULT_M,
                ef_construction: int = DEFAULT_EF_CONSTRUCTION) -> np.ndarray:
    """HNSW (inner product) over the item vectors, serialized to a uint8 array. Deterministic: built
    on one thread with a fixed level seed, so the same factors give the same bytes."""
    import faiss

    y = item_vectors(item_factors, item_bias)
    index = faiss.IndexHNSWFlat(y.shape[1], int(m), faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = int(ef_construction)
    index.hnsw.rng = faiss.RandomGenerator(LEVEL_SEED)
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        index.add(y)
    finally:
        faiss.omp_set_num_threads(threads)
    return np.asarray(faiss.serialize_index(index), dtype=np.uint8)


def search(index, u: np.ndarray, k: int, ef_search: int = DEFAULT_EF_SEARCH) -> np.ndarray:
    """Rows of (about) the k best items for `u`, best first. An index one dimension wider than the
    factors holds the item bias as its last column: the query's is 1."""
    import faiss

    params = faiss.SearchParametersHNSW(efSearch=max(int(ef_search), int(k)))
    with_bias = index.d == np.asarray(u).shape[-1] + 1
    _, rows = index.search(query_vector(u, with_bias), int(k), params=params)
    rows = rows[0]
    return rows[rows >= 0].astype(np.int64)


def candidates(model, index, u: np.ndarray, base: np.ndarray, front: np.ndarray | None, need: int,
               per_channel: bool) -> np.ndarray | None:
    """Sorted candidate rows to rescore exactly, or None when the exact path must run.

    `base`: the eligibility mask without the channel restriction. `per_channel`: the channel is
    applied after (no diversity cap), so every channel must keep `need` eligible candidates; the set
    is the same whichever channel asks. Rows in `front` (the viewed item's neighbours, the browsed
    category) that are eligible are always candidates, so the context boost works on exact scores.
    """
    ef = int(settings(model).get("ef_search", DEFAULT_EF_SEARCH))
    n = model.n_items
    front_rows = None
    if front is not None:
        front_rows = np.flatnonzero(front & base)
        if len(front_rows) > max(need, n // FRONT_MAX_SHARE):
            return None
    masks = None
    if per_channel and not model.channel_unrestricted:
        masks = np.asarray(model.item_channels)
    limit = min(n, max(GROWTH * need, min(MAX_CANDIDATES, n // CANDIDATE_SHARE)))
    k = min(need + need // 2 + 16, limit)
    while True:
        rows = search(index, u, k, ef)
        exhausted = len(rows) < k
        rows = rows[base[rows]]
        if front_rows is not None and len(front_rows):
            rows = np.union1d(rows, front_rows)
        else:
            rows = np.sort(rows)
        enough = (masks[rows].sum(axis=0).min() if len(rows) else 0) >= need if masks is not None \
            else len(rows) >= need
        if enough:
            return rows
        if exhausted or k >= limit:
            return None
        k = min(k * GROWTH, limit)

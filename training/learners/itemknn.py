"""Item-to-item neighbours: the K most similar items per item on the confidence matrix's columns.

Serving scores a customer by Σ weight × similarity over their history
(`recsvc.core.scoring.neighbour_scores`), the same as `implicit`'s ItemItemRecommender.
The all-pairs top-K is implicit's multi-threaded sparse kernel (no dense items x items product).
"""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp

from training.learners.base import (
    Factors,
    LearnerConfigError,
    check_confidence,
    check_finite,
    compact_neighbours,
    merge_params,
)

DEFAULTS = {
    "neighbours": 32,
    "similarity": "cosine",  # cosine | bm25 | tfidf
    "bm25_k1": 1.2,
    "bm25_b": 0.75,
    "num_threads": 0,
}


class ItemKNNLearner:
    name = "itemknn"
    warm_start = False

    def __init__(self, params: dict | None = None):
        self.params = merge_params(self.name, DEFAULTS, params)
        if self.params["similarity"] not in ("cosine", "bm25", "tfidf"):
            raise LearnerConfigError(
                f"itemknn: similarity must be cosine, bm25 or tfidf, not {self.params['similarity']!r}"
            )

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
    ) -> Factors:
        from implicit.nearest_neighbours import ItemItemRecommender, bm25_weight, normalize, tfidf_weight

        x = check_confidence(confidence, self.name)
        p = self.params
        k = int(p["neighbours"])
        n_items = x.shape[1]
        t = time.perf_counter()
        # the weightings implicit's Cosine/TFIDF/BM25 recommenders apply, kept in CSR (they hand COO on)
        if p["similarity"] == "bm25":
            weighted = bm25_weight(x.T, float(p["bm25_k1"]), float(p["bm25_b"])).T
        elif p["similarity"] == "tfidf":
            weighted = normalize(tfidf_weight(x.T)).T
        else:
            weighted = normalize(x.T).T
        model = ItemItemRecommender(K=k + 1, num_threads=int(p["num_threads"]))
        model.fit(sp.csr_matrix(weighted, dtype=np.float64), show_progress=progress)
        nb, sc = top_k_rows(model.similarity, k, n_items)
        used = {
            "neighbours": k,
            "similarity": p["similarity"],
            "fit_seconds": round(time.perf_counter() - t, 3),
        }
        if p["similarity"] == "bm25":
            used.update(bm25_k1=p["bm25_k1"], bm25_b=p["bm25_b"])
        f = Factors(kind="neighbours", neighbours=nb, neighbour_scores=sc, params=used)
        return check_finite(f, self.name, "check the confidence matrix for extreme values")


def top_k_rows(sim: sp.spmatrix, k: int, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row of a sparse similarity matrix: the k largest positive off-diagonal entries, -1 padded."""
    coo = sp.coo_matrix(sim)
    keep = (coo.row != coo.col) & (coo.data > 0)
    r, c, v = coo.row[keep].astype(np.int64), coo.col[keep].astype(np.int64), coo.data[keep]
    order = np.lexsort((c, -v, r))
    r, c, v = r[order], c[order], v[order]
    rank = np.arange(len(r)) - np.searchsorted(r, np.arange(n_items))[r] if len(r) else r
    ok = rank < k
    nb = np.full((n_items, k), -1, dtype=np.int32)
    sc = np.zeros((n_items, k), dtype=np.float32)
    nb[r[ok], rank[ok]] = c[ok]
    sc[r[ok], rank[ok]] = v[ok]
    return compact_neighbours(nb, sc)

"""EASE (Steck 2019): closed-form item-item weights B = -P / diag(P), P = (XᵀX + λI)⁻¹, zero diagonal.

Strong on small catalogues, but XᵀX is dense (n_items²) and the inverse costs n_items³, so it
refuses catalogues above `max_items`. Exported as kind "neighbours": row j keeps item j's K largest
positive weights, so serving's Σ weight × B[j, i] over the history reproduces EASE's x·B (exactly
when K covers every positive weight; the top-K is what matters for a top-k list). λ is tuned on a
held-out part of each customer's entries when the catalogue is small enough for a few inversions.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp

from training.learners.base import (
    Factors,
    ModelFitError,
    check_confidence,
    check_finite,
    compact_neighbours,
    merge_params,
)
from training.learners.tuning import coordinate_search, holdout_entries, should_tune

DEFAULTS = {
    "l2": 500.0,
    "max_items": 10_000,
    "neighbours": 256,
    "tune": "auto",  # auto: tune l2 when n_items <= tune_max_items
    "tune_max_items": 3_000,
    "tune_grid": [50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0],
    "tune_holdout": 0.2,
    "tune_k": 10,
}


class EASELearner:
    name = "ease"
    warm_start = False

    def __init__(self, params: dict | None = None):
        self.params = merge_params(self.name, DEFAULTS, params)
        self.explicit = set(params or {})

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
        x = check_confidence(confidence, self.name)
        p = dict(self.params)
        n_items = x.shape[1]
        if n_items > int(p["max_items"]):
            raise ModelFitError(
                f"ease: {n_items} items is above max_items {p['max_items']} (dense "
                f"{n_items}² inverse); use als, or raise max_items if memory allows "
                f"(~{8 * n_items * n_items / 2**30:.1f} GiB per copy)"
            )
        t = time.perf_counter()
        tuning = None
        if init is not None:
            p["l2"] = init.params.get("l2", p["l2"])
        elif should_tune(
            self.name, p["tune"], n_items if x.nnz else 0, int(p["tune_max_items"]), self.explicit, {"l2"}
        ):
            train, test = holdout_entries(x, float(p["tune_holdout"]), seed)
            gram = _gram(train)

            def score(cand: dict) -> float:
                return _holdout_ndcg(train, test, ease_weights(gram, cand["l2"]), int(p["tune_k"]), seed)

            best, history = coordinate_search(
                score,
                {"l2": float(p["l2"])},
                {"l2": [float(v) for v in p["tune_grid"]]},
                rounds=1,
                max_fits=len(p["tune_grid"]) + 1,
            )
            p["l2"] = best["l2"]
            tuning = {
                "holdout": p["tune_holdout"],
                "metric": f"ndcg@{p['tune_k']}",
                "best": best,
                "grid": history,
            }
        b = ease_weights(_gram(x), float(p["l2"]))
        nb, sc = top_k_dense(b, int(p["neighbours"]))
        used = {"l2": float(p["l2"]), "neighbours": int(nb.shape[1])}
        if tuning is not None:
            used["tuning"] = tuning
        used["fit_seconds"] = round(time.perf_counter() - t, 3)
        f = Factors(kind="neighbours", neighbours=nb, neighbour_scores=sc, params=used)
        return check_finite(f, self.name, "raise l2")


def _gram(x: sp.csr_matrix) -> np.ndarray:
    return np.asarray((x.T @ x).todense(), dtype=np.float64)


def ease_weights(gram: np.ndarray, l2: float) -> np.ndarray:
    """B = I - P·diagMat(1/diag(P)) with P = (G + λI)⁻¹, i.e. B_ij = -P_ij / P_jj, B_jj = 0."""
    g = gram.copy()
    g[np.diag_indices_from(g)] += l2
    pinv = np.linalg.inv(g)
    b = pinv / (-np.diag(pinv))[None, :]
    np.fill_diagonal(b, 0.0)
    return b


def top_k_dense(b: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Row j: the k largest positive B[j, :] (item j's contribution to others), -1 padded."""
    n = b.shape[0]
    k = max(0, min(k, n - 1))
    if k == 0:
        return np.full((n, 0), -1, np.int32), np.zeros((n, 0), np.float32)
    part = np.argpartition(-b, k - 1, axis=1)[:, :k] if k < n else np.tile(np.arange(n), (n, 1))
    vals = np.take_along_axis(b, part, axis=1)
    ok = vals > 0
    nb = np.where(ok, part, -1).astype(np.int32)
    sc = np.where(ok, vals, 0.0).astype(np.float32)
    return compact_neighbours(nb, sc)


def _holdout_ndcg(train: sp.csr_matrix, test: sp.csr_matrix, b: np.ndarray, k: int, seed: int) -> float:
    from recsvc.core.scoring import batch_top_k
    from training.evaluate import evaluate

    test = test.tocoo()
    eye = np.eye(b.shape[0], dtype=np.float32)

    def recommend(rows: np.ndarray) -> np.ndarray:
        sub = train[rows]
        scores = np.asarray((sub @ b), dtype=np.float32)
        recs, _ = batch_top_k(eye, scores, k, exclude_indptr=sub.indptr, exclude_items=sub.indices, block=512)
        return recs

    res = evaluate(
        recommend,
        test.row,
        test.col,
        np.zeros(test.nnz, np.int8),
        k=k,
        n_items=train.shape[1],
        bootstrap=0,
        seed=seed,
        max_customers=5000,
    )
    return float(res["overall"].get(f"ndcg@{k}", 0.0))

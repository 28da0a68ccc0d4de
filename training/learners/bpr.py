"""Bayesian Personalised Ranking (Rendle et al. 2009) through `implicit`, CPU, float32 out.

implicit keeps the item bias as the last column of the item factors and a constant 1 in the last
column of every customer's factors; the export keeps that layout, so `item_factors @ u` is exactly
implicit's score and a customer without a row of their own (all zeros but the 1) ranks by item bias.
BPR reads the matrix as binary. Its SGD is deterministic for a seed with `num_threads: 1`
(the default); more threads are faster but Hogwild-racy.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp

from training.learners.base import (
    Factors,
    ModelFitError,
    as_f32,
    check_confidence,
    check_finite,
    merge_params,
    with_neighbours,
)
from training.learners.tuning import coordinate_search, holdout_entries, holdout_ndcg, should_tune

DEFAULTS = {
    "factors": 64,
    "learning_rate": 0.01,
    "regularization": 0.01,
    "iterations": 100,
    "num_threads": 1,
    "verify_negative_samples": True,
    "neighbours": 20,
    "tune": "auto",
    "tune_max_nnz": 300_000,
    "tune_holdout": 0.2,
    "tune_k": 10,
    "tune_max_fits": 10,
    "tune_start": {"learning_rate": 0.01, "regularization": 0.01, "iterations": 100},
    "tune_grid": {
        "learning_rate": [0.005, 0.01, 0.02],
        "regularization": [0.001, 0.01],
        "iterations": [50, 100, 200],
    },
}
FIX = "lower learning_rate or raise regularization"


class BPRLearner:
    name = "bpr"
    warm_start = True

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
        tuning = None
        if init is not None:
            for name in ("factors", "learning_rate", "regularization", "iterations"):
                p[name] = init.params.get(name, p[name])
            tuning = init.params.get("tuning")
        elif should_tune(
            self.name, p["tune"], x.nnz, int(p["tune_max_nnz"]), self.explicit, set(p["tune_grid"])
        ):
            train, test = holdout_entries(x, float(p["tune_holdout"]), seed)

            def score(cand: dict) -> float:
                q = {**p, **cand}
                m = self._run(q, train, seed, int(q["iterations"]), None, False)
                if not (np.isfinite(m.item_factors).all() and np.isfinite(m.user_factors).all()):
                    return -1.0
                return holdout_ndcg(
                    train, test, as_f32(m.item_factors), as_f32(m.user_factors), k=int(p["tune_k"]), seed=seed
                )

            grid = {k: list(v) for k, v in p["tune_grid"].items()}
            best, history = coordinate_search(
                score, {k: p["tune_start"][k] for k in grid}, grid, max_fits=int(p["tune_max_fits"])
            )
            p.update(best)
            tuning = {
                "holdout": p["tune_holdout"],
                "metric": f"ndcg@{p['tune_k']}",
                "best": best,
                "grid": history,
            }
        n_iter = int(iterations if iterations is not None else p["iterations"])
        t = time.perf_counter()
        model = self._run(p, x, seed, n_iter, init, progress)
        used = {k: p[k] for k in ("factors", "learning_rate", "regularization", "verify_negative_samples")}
        used["iterations"] = n_iter
        used["bias_column"] = True  # last item-factor column is the item bias, customers hold a 1 there
        if tuning is not None:
            used["tuning"] = tuning
        used["fit_seconds"] = round(time.perf_counter() - t, 3)
        f = Factors(
            kind="factors",
            item_factors=as_f32(model.item_factors),
            customer_factors=as_f32(model.user_factors),
            params=used,
        )
        check_finite(f, self.name, FIX)
        return self.neighbours_of(f) if neighbours else f

    def neighbours_of(self, f: Factors) -> Factors:
        """f with its items' cosine neighbours (similar items): what `fit` adds unless told
        `neighbours=False`, so the pipeline can compute them alongside the evaluation."""
        p = self.params
        return with_neighbours(f, int(p["neighbours"]), 0, bias_column=True) if p["neighbours"] else f

    @staticmethod
    def _run(p: dict, x: sp.csr_matrix, seed: int, iterations: int, init: Factors | None, progress: bool):
        from implicit.cpu.bpr import BayesianPersonalizedRanking
        from implicit.recommender_base import ModelFitError as ImplicitFitError

        model = BayesianPersonalizedRanking(
            factors=int(p["factors"]),
            learning_rate=float(p["learning_rate"]),
            regularization=float(p["regularization"]),
            dtype=np.float32,
            iterations=iterations,
            num_threads=int(p["num_threads"]),
            verify_negative_samples=bool(p["verify_negative_samples"]),
            random_state=seed,
        )
        if init is not None:
            want = (x.shape[1], int(p["factors"]) + 1), (x.shape[0], int(p["factors"]) + 1)
            got = (
                None if init.item_factors is None else init.item_factors.shape,
                None if init.customer_factors is None else init.customer_factors.shape,
            )
            if got != want:
                raise ModelFitError(
                    f"bpr: warm start needs item/customer factors of shapes {want}, got {got}; "
                    "warm starts need the same id maps and factors as the model they continue"
                )
            model.item_factors = np.array(init.item_factors, dtype=np.float32, copy=True)
            model.user_factors = np.array(init.customer_factors, dtype=np.float32, copy=True)
        try:
            model.fit(x, show_progress=progress)
        except ImplicitFitError as e:
            raise ModelFitError(f"bpr: {e}; {FIX}") from e
        return model

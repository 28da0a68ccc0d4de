"""Implicit-feedback ALS (Hu, Koren & Volinsky 2008) through `implicit`, CPU, float32 out.

Serving folds customers in with the same closed form (`recsvc.core.foldin`), so the artifact carries
the regularization and alpha actually used. Warm start: `fit(init=f, iterations=n)` runs n more
sweeps from f's factors, so the pipeline can evaluate on the training split and then continue on the
full matrix without starting over (id maps are shared, so shapes agree).
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
    cpu_threads,
    merge_params,
    with_neighbours,
)
from training.learners.tuning import coordinate_search, holdout_entries, holdout_ndcg, should_tune

DEFAULTS = {
    "factors": 64,
    "regularization": 0.01,
    "alpha": 1.0,
    "iterations": 15,
    "use_cg": True,
    # finish with an exact (Cholesky) solve of every customer against the final item factors, so a
    # customer row equals what serving's fold-in computes from the same history
    "exact_customer_solve": True,
    "num_threads": 0,  # 0: every core, but one below 100k entries (OpenMP start-up dominates there)
    "neighbours": 20,  # cosine neighbours of item factors for "similar items"; 0 = none
    # auto: tune when nnz <= tune_max_nnz unless the config fixes factors/regularization/alpha; on; off
    "tune": "auto",
    "tune_max_nnz": 1_000_000,
    "tune_holdout": 0.2,
    "tune_k": 10,
    "tune_max_fits": 15,
    "tune_start": {"factors": 32, "regularization": 1.0, "alpha": 2.0},
    "tune_grid": {"factors": [16, 32, 64, 128], "regularization": [0.1, 1.0, 5.0], "alpha": [1.0, 2.0, 4.0]},
}
SMALL_NNZ = 100_000
FIX = "lower alpha or the event weights (huge confidences), or raise regularization"


class ALSLearner:
    name = "als"
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
            # continue the same model: its hyper-parameters, its factors
            for name in ("factors", "regularization", "alpha"):
                p[name] = init.params.get(name, p[name])
            tuning = init.params.get("tuning")
        elif self._should_tune(x):
            best, history = self._tune(x, p, seed)
            p.update(best)
            tuning = {
                "holdout": p["tune_holdout"],
                "k": p["tune_k"],
                "metric": f"ndcg@{p['tune_k']}",
                "best": best,
                "grid": history,
            }
        n_iter = int(iterations if iterations is not None else p["iterations"])
        t = time.perf_counter()
        model = self._model(p, seed, n_iter, x.nnz)
        if init is not None:
            self._set_init(model, init, x.shape, p["factors"])
        self._run(model, x, progress)
        if p["exact_customer_solve"] and x.shape[0]:
            model.user_factors = solve_customers(
                x, model.item_factors, float(p["regularization"]), float(p["alpha"]),
                cpu_threads(int(p["num_threads"])), fallback=model.recalculate_user)
        seconds = time.perf_counter() - t
        used = {k: p[k] for k in ("factors", "regularization", "alpha", "use_cg", "exact_customer_solve")}
        used["iterations"] = n_iter
        if init is not None:  # sweeps the starting factors had already had
            used["warm_start_after"] = int(init.params.get("iterations", 0)) + int(
                init.params.get("warm_start_after", 0)
            )
        if tuning is not None:
            used["tuning"] = tuning
        used["fit_seconds"] = round(seconds, 3)
        f = Factors(
            kind="factors",
            item_factors=as_f32(model.item_factors),
            customer_factors=as_f32(model.user_factors),
            foldin={"regularization": float(p["regularization"]), "alpha": float(p["alpha"])},
            params=used,
        )
        check_finite(f, self.name, FIX)
        return self.neighbours_of(f) if neighbours else f

    def neighbours_of(self, f: Factors) -> Factors:
        """f with its items' cosine neighbours (similar items): what `fit` adds unless told
        `neighbours=False`, so the pipeline can compute them alongside the evaluation."""
        p = self.params
        return with_neighbours(f, int(p["neighbours"]), int(p["num_threads"])) if p["neighbours"] else f

    # -- internals -------------------------------------------------------------------------------
    def _should_tune(self, x: sp.csr_matrix) -> bool:
        p = self.params
        return should_tune(
            self.name, p["tune"], x.nnz, int(p["tune_max_nnz"]), self.explicit, set(p["tune_grid"])
        )

    def _tune(self, x: sp.csr_matrix, p: dict, seed: int) -> tuple[dict, list[dict]]:
        train, test = holdout_entries(x, float(p["tune_holdout"]), seed)

        def score(cand: dict) -> float:
            m = self._model({**p, **cand}, seed, int(p["iterations"]), train.nnz)
            self._run(m, train, False)
            if not (np.isfinite(m.item_factors).all() and np.isfinite(m.user_factors).all()):
                return -1.0
            return holdout_ndcg(
                train, test, as_f32(m.item_factors), as_f32(m.user_factors), k=int(p["tune_k"]), seed=seed
            )

        grid = {k: list(v) for k, v in p["tune_grid"].items()}
        start = {k: p["tune_start"].get(k, grid[k][0]) for k in grid}
        return coordinate_search(score, start, grid, max_fits=int(p["tune_max_fits"]))

    @staticmethod
    def _model(p: dict, seed: int, iterations: int, nnz: int):
        from implicit.cpu.als import AlternatingLeastSquares

        threads = cpu_threads(int(p["num_threads"]) or (1 if nnz < SMALL_NNZ else 0))
        return AlternatingLeastSquares(
            factors=int(p["factors"]),
            regularization=float(p["regularization"]),
            alpha=float(p["alpha"]),
            iterations=iterations,
            use_cg=bool(p["use_cg"]),
            num_threads=threads,
            random_state=seed,
            dtype=np.float32,
        )

    @staticmethod
    def _set_init(model, init: Factors, shape: tuple[int, int], factors: int) -> None:
        want = {"customer_factors": (shape[0], factors), "item_factors": (shape[1], factors)}
        for name, s in want.items():
            a = getattr(init, name)
            if a is None or a.shape != s:
                raise ModelFitError(
                    f"als: warm start needs {name} of shape {s}, got "
                    f"{None if a is None else a.shape}; warm starts need the same id maps "
                    "and factors as the model they continue"
                )
        model.user_factors = np.array(init.customer_factors, dtype=np.float32, copy=True)
        model.item_factors = np.array(init.item_factors, dtype=np.float32, copy=True)

    def _run(self, model, x: sp.csr_matrix, progress: bool) -> None:
        from implicit.recommender_base import ModelFitError as ImplicitFitError

        try:
            model.fit(x, show_progress=progress)
        except ImplicitFitError as e:
            raise ModelFitError(f"als: {e}; {FIX}") from e


WOODBURY_MAX = 48  # customers with more entries are solved by implicit's Cholesky


def solve_customers(x: sp.csr_matrix, item_factors: np.ndarray, regularization: float, alpha: float,
                    threads: int = 1, fallback=None, chunk: int = 4096) -> np.ndarray:
    """Every customer's exact ALS solution against fixed item factors (what serving's fold-in computes).

    x_u = (M + Y_uᵀ D_u Y_u)⁻¹ b_u with M = YᵀY + reg·I, D_u = C_u − 1 over the customer's n items,
    b_u = Y_uᵀ c_u. With M = L Lᵀ (one Cholesky for all items) and W = Y L⁻ᵀ, Woodbury gives

        x_u = L⁻ᵀ (v_u − W_uᵀ w_u),   v_u = W_uᵀ c_u,   (I + D_u W_u W_uᵀ) w_u = D_u W_u v_u

    an n x n system instead of a 64 x 64 one: most customers have a handful of entries, so this is
    several times fewer operations than a Cholesky per customer, and it runs batched in numpy (one
    gather of the customer's rows of W). Customers with more than WOODBURY_MAX entries go to
    `fallback(rows, x[rows])` (implicit's Cholesky); customers with none get zeros.
    """
    n, f = x.shape[0], item_factors.shape[1]
    out = np.zeros((n, f), dtype=np.float32)
    if n == 0 or x.nnz == 0:
        return out
    y64 = np.asarray(item_factors, dtype=np.float64)
    l_inv = np.linalg.inv(np.linalg.cholesky(y64.T @ y64 + regularization * np.eye(f)))
    w_all = np.ascontiguousarray(y64 @ l_inv.T, dtype=np.float32)  # rows L⁻¹ y_i
    l_inv = l_inv.astype(np.float32)  # x_uᵀ = (v_u − W_uᵀ w_u)ᵀ L⁻¹
    count = np.diff(x.indptr)
    big = np.flatnonzero(count > WOODBURY_MAX)
    work = []
    lo = 1
    for hi in (1, 2, 4, 8, 16, 32, WOODBURY_MAX):
        users = np.flatnonzero((count >= lo) & (count <= hi))
        work += [(users[a:a + chunk], hi) for a in range(0, len(users), chunk)]
        lo = hi + 1

    def one(job: tuple[np.ndarray, int]) -> None:
        users, width = job
        j = np.arange(width)
        valid = j[None, :] < count[users, None]
        at = np.where(valid, x.indptr[users, None] + j[None, :], 0)
        items = np.where(valid, x.indices[at], 0)
        c = np.where(valid, np.float32(alpha) * x.data[at], np.float32(0.0))
        d = np.where(valid, c - np.float32(1.0), np.float32(0.0))  # padding: c = d = 0, adds nothing
        wu = w_all[items]  # (customers, width, f)
        v = np.matmul(c[:, None, :], wu)[:, 0, :]
        k = np.matmul(wu, wu.transpose(0, 2, 1))
        k *= d[:, :, None]
        k[:, j, j] += np.float32(1.0)
        rhs = np.matmul(wu, v[:, :, None]) * d[:, :, None]
        w = np.linalg.solve(k, rhs)
        out[users] = (v - np.matmul(w.transpose(0, 2, 1), wu)[:, 0, :]) @ l_inv

    if threads > 1 and len(work) > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(one, work))
    else:
        for job in work:
            one(job)
    if len(big):
        if fallback is None:
            raise ValueError("solve_customers: customers with many entries need a fallback solver")
        out[big] = fallback(big, x[big])
    return out

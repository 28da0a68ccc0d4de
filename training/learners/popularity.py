"""Popularity as a learner: one score per item, the same list for every customer.

The confidence matrix already carries the event weights and the recency decay, so its column sums
are recent, weighted popularity; `by: customers` counts distinct customers instead. Group
popularity (per store, locale, segment) for every model's fallbacks lives in `training.popularity`.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp

from training.learners.base import (
    Factors,
    LearnerConfigError,
    as_f32,
    check_confidence,
    check_finite,
    merge_params,
)

DEFAULTS = {"by": "confidence"}  # confidence | customers


class PopularityLearner:
    name = "popularity"
    warm_start = False

    def __init__(self, params: dict | None = None):
        self.params = merge_params(self.name, DEFAULTS, params)
        if self.params["by"] not in ("confidence", "customers"):
            raise LearnerConfigError(
                f"popularity: by must be confidence or customers, not {self.params['by']!r}"
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
        x = check_confidence(confidence, self.name)
        t = time.perf_counter()
        if self.params["by"] == "customers":
            scores = np.bincount(x.indices[x.data > 0], minlength=x.shape[1]).astype(np.float64)
        else:
            scores = np.asarray(x.sum(axis=0), dtype=np.float64).ravel()
        f = Factors(
            kind="popularity",
            item_scores=as_f32(scores),
            params={"by": self.params["by"], "fit_seconds": round(time.perf_counter() - t, 3)},
        )
        return check_finite(f, self.name, "check the confidence matrix for extreme values")

"""What every learner hands to export: numpy arrays only. Library objects never leave a wrapper.

A learner's ranking for a customer is exactly what serving computes from these arrays
(`recsvc.core.scoring`): `item_factors @ customer_factors[c] + item_bias` for kind "factors",
Σ weight × similarity over the customer's history for kind "neighbours", `item_scores` for kind
"popularity".
"""

from __future__ import annotations

import dataclasses
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


def factor_neighbours(
    item_factors: np.ndarray, k: int = DEFAULT_NEIGHBOURS, num_threads: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k cosine neighbours of each item's factor vector (self excluded, only positive similarity).

    Exact, blocked and multi-threaded (implicit's top-k kernel: ~20 s for 100k items x 64 factors
    on 2 cores). Items with a zero vector get no neighbours and are nobody's neighbour.
    """
    from implicit.cpu.topk import topk

    n = item_factors.shape[0]
    k = max(0, min(k, n - 1))
    nb = np.full((n, k), -1, dtype=np.int32)
    sc = np.zeros((n, k), dtype=np.float32)
    if k == 0:
        return nb, sc
    y = np.asarray(item_factors, dtype=np.float32)
    norms = np.linalg.norm(y, axis=1)
    live = norms > 0
    yn = np.zeros_like(y)
    yn[live] = y[live] / norms[live, None]
    yn = np.ascontiguousarray(yn)
    rows = np.flatnonzero(live)
    num_threads = num_threads or (1 if n < 5000 else 0)  # thread start-up dominates small catalogues
    block = 8192
    for a in range(0, len(rows), block):
        q = rows[a : a + block]
        ids, scores = topk(yn, yn[q], k + 1, num_threads=num_threads)
        ids = np.asarray(ids, dtype=np.int64)
        scores = np.asarray(scores, dtype=np.float32)
        # drop the item itself (or, if ties pushed it out of the list, the last entry)
        is_self = ids == q[:, None]
        drop = np.where(is_self.any(axis=1), is_self.argmax(axis=1), k)
        keep = np.ones_like(is_self)
        keep[np.arange(len(q)), drop] = False
        ids = ids[keep].reshape(len(q), k)
        scores = scores[keep].reshape(len(q), k)
        ok = (scores > 0) & (ids >= 0) & live[np.clip(ids, 0, n - 1)]
        nb[q] = np.where(ok, ids, -1)
        sc[q] = np.where(ok, scores, 0.0)
    return compact_neighbours(nb, sc)


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

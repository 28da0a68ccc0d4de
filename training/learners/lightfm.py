"""LightFM WARP (Kula 2015) with catalogue and customer features, so new items and customers with
known attributes get vectors without interactions.

Item features: identity + category + brand + tags + price band; customer features: identity +
segment + locale + home_store; each row normalised to sum 1. Export is LightFM's own prediction
formula without the customer bias (a constant per customer, so no change to any ranking):
item_factors = F_items @ item_embeddings, item_bias = F_items @ item_biases,
customer_factors = F_customers @ user_embeddings. Deterministic for a seed with `num_threads: 1`;
more threads are faster but Hogwild-racy. No warm start: `init` only supplies hyper-parameters.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
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

DEFAULTS = {
    "no_components": 64,
    "epochs": 30,
    "learning_rate": 0.05,
    "item_alpha": 0.0,
    "user_alpha": 0.0,
    "max_sampled": 10,
    "num_threads": 2,
    "loss": "warp",
    "sample_weights": True,  # confidence as WARP sample weights (scaled to mean 1)
    "max_weight": 10.0,  # cap on a scaled sample weight: a few huge confidences must not dominate SGD
    "item_features": ["category", "brand", "tags", "price_band"],
    "customer_features": ["segment", "locale", "home_store"],
    "price_bands": 5,
    "neighbours": 20,
}
FIX = "lower learning_rate, or set sample_weights false / a lower max_weight"


class LightFMLearner:
    name = "lightfm"
    warm_start = False

    def __init__(self, params: dict | None = None):
        self.params = merge_params(self.name, DEFAULTS, params)

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
        from lightfm import LightFM

        x = check_confidence(confidence, self.name)
        p = dict(self.params)
        if init is not None:  # no warm start: refit from scratch with the same hyper-parameters
            p.update({k: v for k, v in init.params.items() if k in DEFAULTS})
            iterations = None
        n_cust, n_items = x.shape
        f_items, item_names = item_feature_matrix(
            catalog, item_ids, n_items, p["item_features"], int(p["price_bands"])
        )
        f_cust, cust_names = customer_feature_matrix(customers, customer_ids, n_cust, p["customer_features"])
        coo = x.tocoo()
        interactions = sp.coo_matrix((np.ones(coo.nnz, np.float32), (coo.row, coo.col)), shape=x.shape)
        weights = None
        if p["sample_weights"] and coo.nnz:
            w = coo.data / coo.data.mean()
            w = np.minimum(w, float(p["max_weight"])).astype(np.float32)
            weights = sp.coo_matrix((w, (coo.row, coo.col)), shape=x.shape)
        epochs = int(iterations if iterations is not None else p["epochs"])
        model = LightFM(
            no_components=int(p["no_components"]),
            loss=p["loss"],
            learning_rate=float(p["learning_rate"]),
            item_alpha=float(p["item_alpha"]),
            user_alpha=float(p["user_alpha"]),
            max_sampled=int(p["max_sampled"]),
            random_state=seed,
        )
        t = time.perf_counter()
        try:
            with np.errstate(
                over="ignore", invalid="ignore"
            ):  # divergence is reported below, not as a warning
                model.fit(
                    interactions,
                    user_features=f_cust,
                    item_features=f_items,
                    sample_weight=weights,
                    epochs=epochs,
                    num_threads=int(p["num_threads"]),
                    verbose=progress,
                )
        except ValueError as e:
            if "finite" in str(e):
                raise ModelFitError(f"lightfm: {e}; {FIX}") from e
            raise
        seconds = time.perf_counter() - t
        item_bias, item_emb = model.get_item_representations(f_items)
        _, cust_emb = model.get_user_representations(f_cust)
        used = {
            k: p[k]
            for k in (
                "no_components",
                "learning_rate",
                "item_alpha",
                "user_alpha",
                "max_sampled",
                "loss",
                "sample_weights",
                "max_weight",
                "item_features",
                "customer_features",
                "price_bands",
            )
        }
        used["epochs"] = epochs
        used["n_item_features"] = len(item_names)
        used["n_customer_features"] = len(cust_names)
        used["fit_seconds"] = round(seconds, 3)
        f = Factors(
            kind="factors",
            item_factors=as_f32(item_emb),
            customer_factors=as_f32(cust_emb),
            item_bias=as_f32(item_bias),
            params=used,
        )
        check_finite(f, self.name, FIX)
        if neighbours and p["neighbours"]:
            f = with_neighbours(f, int(p["neighbours"]), 0)
        return f


# ---------------------------------------------------------------- feature matrices
def _align(frame: pd.DataFrame | None, id_col: str, ids, n: int) -> tuple[pd.DataFrame | None, np.ndarray]:
    """frame's rows in the order of `ids` (row per id, -1 where the id is missing from frame)."""
    if frame is None or ids is None or len(frame) == 0:
        return None, np.full(n, -1, dtype=np.int64)
    if len(ids) != n:
        raise ModelFitError(
            f"lightfm: {len(ids)} ids for a matrix dimension of {n}; pass the id arrays the "
            "matrix was built with"
        )
    f = frame.drop_duplicates(id_col, keep="last").reset_index(drop=True)
    pos = pd.Index(f[id_col].astype(str)).get_indexer(np.asarray(ids).astype(str))
    return f, pos


def _one_hot(values: pd.Series, rows: np.ndarray, prefix: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(row, col) pairs of a categorical column (missing / empty values skipped) and the feature names."""
    v = values.astype("string")
    ok = (v.notna() & (v.str.len() > 0)).to_numpy(dtype=bool)
    codes, uniq = pd.factorize(v[ok], sort=True)
    return rows[ok], codes.astype(np.int64), [f"{prefix}={u}" for u in uniq]


def _features(
    blocks: list[tuple[np.ndarray, np.ndarray, list[str]]], n: int
) -> tuple[sp.csr_matrix, list[str]]:
    """Identity + the blocks, side by side, each row normalised to sum 1 (LightFM's advice)."""
    rows, cols, names = [np.arange(n)], [np.arange(n)], [f"id={i}" for i in range(n)]
    offset = n
    for r, c, nm in blocks:
        rows.append(r)
        cols.append(c + offset)
        names += nm
        offset += len(nm)
    r, c = np.concatenate(rows), np.concatenate(cols)
    m = sp.csr_matrix((np.ones(len(r), np.float32), (r, c)), shape=(n, offset))
    m.data[:] = 1.0  # duplicates (a tag listed twice) count once
    inv = 1.0 / np.asarray(m.sum(axis=1)).ravel()
    return sp.csr_matrix(sp.diags(inv.astype(np.float32)) @ m, dtype=np.float32), names


def item_feature_matrix(
    catalog: pd.DataFrame | None, item_ids, n_items: int, wanted: list[str], price_bands: int = 5
) -> tuple[sp.csr_matrix, list[str]]:
    cat, pos = _align(catalog, "item_id", item_ids, n_items)
    blocks = []
    if cat is not None:
        rows = np.flatnonzero(pos >= 0)
        sub = cat.iloc[pos[rows]].reset_index(drop=True)
        for col in ("category", "brand"):
            if col in wanted and col in sub.columns:
                blocks.append(_one_hot(sub[col], rows, col))
        if "tags" in wanted and "tags" in sub.columns:
            tags = sub["tags"].astype("string").str.split(";").explode().str.strip()
            blocks.append(_one_hot(tags.reset_index(drop=True), rows[tags.index.to_numpy()], "tag"))
        if "price_band" in wanted and "price" in sub.columns and price_bands > 1:
            price = pd.to_numeric(sub["price"], errors="coerce")
            if price.notna().sum() > 0 and price.nunique() > 1:
                band = pd.qcut(
                    price.rank(method="first"), q=min(price_bands, int(price.notna().sum())), labels=False
                )
                blocks.append(_one_hot(band.astype("Int64").astype("string"), rows, "price_band"))
    return _features(blocks, n_items)


def customer_feature_matrix(
    customers: pd.DataFrame | None, customer_ids, n_customers: int, wanted: list[str]
) -> tuple[sp.csr_matrix, list[str]]:
    cus, pos = _align(customers, "customer_id", customer_ids, n_customers)
    blocks = []
    if cus is not None:
        rows = np.flatnonzero(pos >= 0)
        sub = cus.iloc[pos[rows]].reset_index(drop=True)
        for col in ("segment", "locale", "home_store"):
            if col in wanted and col in sub.columns:
                blocks.append(_one_hot(sub[col], rows, col))
    return _features(blocks, n_customers)

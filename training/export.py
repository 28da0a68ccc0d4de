"""Dataset + interaction matrix + learner output -> the model artifact's arrays and manifest."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsvc.artifact.manifest import CHANNELS, Manifest, new_model_id, utcnow
from recsvc.core import ann as ann_
from training.io import Dataset
from training.learners.base import Factors
from training.matrix import InteractionMatrix, index_of
from training.popularity import global_popularity, group_popularity, interaction_weights


def _str(col: pd.Series) -> np.ndarray:
    return col.astype(str).fillna("").to_numpy(dtype=str)


def _names_and_codes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct non-empty names and the code of each value (-1 for empty)."""
    names = np.unique(values[values != ""]) if len(values) else np.empty(0, str)
    codes = np.full(len(values), -1, np.int64)
    if len(names):
        pos = np.minimum(np.searchsorted(names, values), len(names) - 1)
        hit = names[pos] == values
        codes[hit] = pos[hit]
    return names.astype(str) if len(names) else np.array([], dtype="<U1"), codes


def _membership(lists: np.ndarray, names: np.ndarray) -> np.ndarray:
    """bool (len(lists), len(names)): `;`-separated lists; an empty list means every name."""
    index = {n: k for k, n in enumerate(names)}
    distinct, inverse = np.unique(np.asarray(lists, dtype=str), return_inverse=True)  # a handful of lists
    m = np.zeros((len(distinct), len(names)), dtype=bool)
    for r, s in enumerate(distinct):
        if not s:
            m[r] = True
            continue
        for part in s.split(";"):
            k = index.get(part.strip())
            if k is not None:
                m[r, k] = True
    return m[inverse.ravel()] if len(lists) else np.zeros((0, len(names)), dtype=bool)


def _aligned(ids: np.ndarray, key: np.ndarray) -> np.ndarray:
    """Position in `key` (sorted) of each of `ids`, -1 where absent."""
    if len(key) == 0:
        return np.full(len(ids), -1, np.int64)
    pos = np.minimum(np.searchsorted(key, ids), len(key) - 1)
    return np.where(key[pos] == ids, pos, -1)


def catalog_arrays(ds: Dataset, item_ids: np.ndarray) -> dict[str, np.ndarray]:
    cat = ds.catalog.copy()
    cat["item_id"] = cat["item_id"].astype(str)
    cat = cat.set_index("item_id").loc[item_ids]
    categories, cat_codes = _names_and_codes(_str(cat["category"]))
    locale_lists = _str(cat["locales"])
    locales = set()
    for s in np.unique(locale_lists):
        locales |= {p.strip() for p in s.split(";") if p.strip()}
    if ds.customers is not None:
        locales |= set(_str(ds.customers["locale"])) - {""}
    if ds.stores is not None:
        locales |= set(_str(ds.stores["locale"])) - {""}
    locale_names = np.array(sorted(locales), dtype=str) if locales else np.array([], dtype="<U1")
    channel_lists = _str(cat["channels"])
    return {
        "item_ids": item_ids,
        "item_title": _str(cat["title"]),
        "item_category": cat_codes.astype(np.int32),
        "category_names": categories,
        "item_price": cat["price"].to_numpy(dtype=np.float32, na_value=np.nan),
        "item_valid_from": cat["valid_from"].to_numpy(dtype=np.int64),
        "item_valid_to": cat["valid_to"].to_numpy(dtype=np.int64),
        "locale_names": locale_names,
        "item_locales": _membership(locale_lists, locale_names),
        "item_channels": _membership(channel_lists, np.array(CHANNELS)),
    }


def history_arrays(m: InteractionMatrix) -> dict[str, np.ndarray]:
    """Per-customer history (flags) with the training confidence of each entry (for fold-in)."""
    flags = sp.csr_matrix(m.flags)
    flags.sort_indices()
    conf = sp.csr_matrix(m.confidence)
    conf.sort_indices()
    n_items = m.confidence.shape[1]
    rows_f = np.repeat(np.arange(flags.shape[0], dtype=np.int64), np.diff(flags.indptr))
    rows_c = np.repeat(np.arange(conf.shape[0], dtype=np.int64), np.diff(conf.indptr))
    key_f = rows_f * n_items + flags.indices
    key_c = rows_c * n_items + conf.indices
    pos = np.minimum(np.searchsorted(key_c, key_f), max(len(key_c) - 1, 0))
    w = np.where((len(key_c) > 0) & (key_c[pos] == key_f) if len(key_c) else np.zeros(len(key_f), bool),
                 conf.data[pos] if len(key_c) else 0.0, 0.0)
    return {"hist_indptr": flags.indptr.astype(np.int64), "hist_items": flags.indices.astype(np.int32),
            "hist_flags": flags.data.astype(np.uint8), "hist_weights": np.asarray(w, np.float32)}


def _distinct(col: pd.Series) -> set[str]:
    """Distinct non-empty values of an id column; a categorical is read once per category, not per row."""
    if isinstance(col.dtype, pd.CategoricalDtype):
        codes = np.unique(col.cat.codes.to_numpy())
        vals = np.asarray(col.cat.categories, dtype=object)[codes[codes >= 0]]
    else:
        vals = pd.unique(col.dropna())
    return {str(v) for v in vals} - {""}


def store_ids_of(ds: Dataset) -> np.ndarray:
    ids = _distinct(ds.interactions["store_id"])
    if ds.stores is not None:
        ids |= _distinct(ds.stores["store_id"])
    if ds.stock is not None:
        ids |= _distinct(ds.stock["store_id"])
    return np.array(sorted(ids), dtype=str) if ids else np.array([], dtype="<U1")


def stock_arrays(ds: Dataset, store_ids: np.ndarray, item_ids: np.ndarray) -> dict[str, np.ndarray]:
    indptr = np.zeros(len(store_ids) + 1, np.int64)
    if ds.stock is None or len(ds.stock) == 0:
        return {"stock_indptr": indptr, "stock_items": np.empty(0, np.int32), "stock_qty": np.empty(0, np.int32)}
    s = _aligned(_str(ds.stock["store_id"]), store_ids)
    i = _aligned(_str(ds.stock["item_id"]), item_ids)
    q = ds.stock["quantity"].to_numpy(dtype=np.int64)
    ok = (s >= 0) & (i >= 0)
    m = sp.csr_matrix((np.clip(q[ok], 0, 2**31 - 1) + 1, (s[ok], i[ok])), shape=(len(store_ids), len(item_ids)))
    m.sum_duplicates()  # +1 keeps explicit zero quantities (known, out of stock) as entries
    m.sort_indices()
    return {"stock_indptr": m.indptr.astype(np.int64), "stock_items": m.indices.astype(np.int32),
            "stock_qty": (m.data - 1).astype(np.int32)}


def popularity_arrays(ds: Dataset, m: InteractionMatrix, weights: np.ndarray, store_ids: np.ndarray,
                      locale_names: np.ndarray, now: float, half_life: float, top: int) -> dict[str, np.ndarray]:
    """Recent popularity overall, per store, per locale, per segment: never per channel."""
    inter = ds.interactions
    ok = (m.cust_row >= 0) & (m.item_col >= 0)
    items, w, ts = m.item_col[ok], np.asarray(weights)[ok], inter["ts"].to_numpy()[ok]
    # each row's decayed weight once, for the global and the three group popularities
    kw = {"weights": interaction_weights(len(items), w, ts, now, half_life), "ts": None}
    out = {"pop_global": global_popularity(items, m.confidence.shape[1], **kw)}
    n_items = m.confidence.shape[1]
    store_of_row = index_of(store_ids, inter["store_id"])[ok]  # per category, not per row
    out["pop_store_items"], out["pop_store_scores"] = group_popularity(
        items, store_of_row, len(store_ids), n_items, top=top, **kw)
    # a row's locale: the customer's, else the store's
    cust_locale = np.full(len(m.customer_ids), -1, dtype=np.int64)
    seg_names, cust_seg = np.array([], dtype="<U1"), np.full(len(m.customer_ids), -1, np.int64)
    if ds.customers is not None:
        pos = _aligned(_str(ds.customers["customer_id"]), m.customer_ids)
        cust_locale[pos[pos >= 0]] = _aligned(_str(ds.customers["locale"]), locale_names)[pos >= 0]
        seg_names, codes = _names_and_codes(_str(ds.customers["segment"]))
        cust_seg[pos[pos >= 0]] = codes[pos >= 0]
    row_locale = cust_locale[m.cust_row[ok]]
    if ds.stores is not None and len(store_ids):
        store_locale = np.full(len(store_ids), -1, dtype=np.int64)
        at = _aligned(_str(ds.stores["store_id"]), store_ids)
        store_locale[at[at >= 0]] = _aligned(_str(ds.stores["locale"]), locale_names)[at >= 0]
        missing = (row_locale < 0) & (store_of_row >= 0)
        row_locale[missing] = store_locale[store_of_row[missing]]
    out["pop_locale_items"], out["pop_locale_scores"] = group_popularity(
        items, row_locale, len(locale_names), n_items, top=top, **kw)
    out["pop_segment_items"], out["pop_segment_scores"] = group_popularity(
        items, cust_seg[m.cust_row[ok]], len(seg_names), n_items, top=top, **kw)
    out["customer_segment"] = cust_seg.astype(np.int16)
    out["segment_names"] = seg_names
    return out


def factor_arrays(f: Factors) -> dict[str, np.ndarray]:
    out = {}
    for name in ("item_factors", "customer_factors", "item_bias", "neighbours", "neighbour_scores"):
        a = getattr(f, name)
        if a is not None:
            out[name] = np.ascontiguousarray(a)
    return out


def data_arrays(ds: Dataset, m: InteractionMatrix, weights: np.ndarray, *, now: float,
                popularity_half_life: float, popularity_top: int) -> dict[str, np.ndarray]:
    """The arrays of a model that depend on the data only: catalogue, ids, history, stock, popularity."""
    arrays = catalog_arrays(ds, m.item_ids)
    arrays["customer_ids"] = m.customer_ids
    arrays.update(history_arrays(m))
    store_ids = store_ids_of(ds)
    arrays["store_ids"] = store_ids
    arrays.update(stock_arrays(ds, store_ids, m.item_ids))
    arrays.update(popularity_arrays(ds, m, weights, store_ids, arrays["locale_names"], now,
                                    popularity_half_life, popularity_top))
    return arrays


def build_artifact(ds: Dataset, m: InteractionMatrix, weights: np.ndarray, f: Factors, *, learner: str,
                   params: dict, seed: int, event_weights: dict, metrics: dict, now: float,
                   popularity_half_life: float, popularity_top: int, extra: dict | None = None,
                   taken: Callable[[str], bool] | None = None,
                   data: dict[str, np.ndarray] | None = None,
                   ann: dict | None = None) -> tuple[Manifest, dict[str, np.ndarray]]:
    """The manifest and arrays of one model. `taken(model_id)`: whether an id is already used; the same
    learner, data and parameters fitted twice within a second would get the same id, so the next free
    second is used (ids stay unique, immutable and sortable by creation time). `data`: the
    `data_arrays` of (ds, m, weights), when already built (they do not depend on the learner).
    `ann`: {min_items, m, ef_construction, ef_search}; a factor model of at least min_items items
    ships an HNSW index over its item factors (`ann_index`) and these settings as `scoring.ann`."""
    if data is None:
        data = data_arrays(ds, m, weights, now=now, popularity_half_life=popularity_half_life,
                           popularity_top=popularity_top)
    arrays = dict(data)
    store_ids = arrays["store_ids"]
    arrays.update(factor_arrays(f))
    if f.kind == "popularity" and f.item_scores is not None:
        arrays["pop_global"] = np.asarray(f.item_scores, np.float32)
    counts = {"customers": len(m.customer_ids), "items": len(m.item_ids),
              "interactions": len(ds.interactions), "stores": len(store_ids),
              "nnz": int(m.confidence.nnz), "rejects": int(ds.n_rejects)}
    when = utcnow()
    # the id hashes what was trained (data, parameters, seed), not how long it took
    ident = {"params": {k: v for k, v in params.items() if k != "fit_seconds"}, "seed": seed}
    while taken is not None and taken(new_model_id(learner, ds.fingerprint, ident, when)):
        when += dt.timedelta(seconds=1)
    scoring = {"kind": f.kind, "foldin": f.foldin, "event_weights": dict(event_weights)}
    if ann is not None:
        index = ann_index_arrays(arrays, f.kind, ann)
        if index is not None:
            arrays["ann_index"], scoring["ann"] = index
    man = Manifest(
        model_id=new_model_id(learner, ds.fingerprint, ident, when),
        learner=learner, created_at=when.isoformat().replace("+00:00", "Z"), params=params, seed=seed,
        scoring=scoring,
        data={"fingerprint": ds.fingerprint, "counts": counts, "trained_until": now},
        metrics=metrics, extra=extra or {})
    return man, arrays


def ann_index_arrays(arrays: dict[str, np.ndarray], kind: str, ann: dict) -> tuple[np.ndarray, dict] | None:
    """(serialized HNSW index, manifest `scoring.ann`) for a factor model of at least
    `ann["min_items"]` items, else None. Deterministic: the same factors give the same bytes."""
    y = arrays.get("item_factors")
    if kind != "factors" or y is None or len(y) < int(ann["min_items"]) or len(y) == 0:
        return None
    bias = arrays.get("item_bias")
    if bias is not None and not np.any(bias != 0):
        bias = None
    t = time.perf_counter()
    blob = ann_.build_index(y, bias, m=int(ann["m"]), ef_construction=int(ann["ef_construction"]))
    return blob, {"kind": "hnsw", "metric": "inner_product", "library": "faiss",
                  "min_items": int(ann["min_items"]), "m": int(ann["m"]),
                  "ef_construction": int(ann["ef_construction"]), "ef_search": int(ann["ef_search"]),
                  "bias_column": bias is not None, "build_seconds": round(time.perf_counter() - t, 3)}

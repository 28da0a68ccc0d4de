"""Id maps and the customers x items matrices the learners and the artifact are built from.

Rows are customers (those with interactions and those in customers.*, so a cold customer with
features has a row), columns are catalog items (an item nobody touched yet has an empty column);
both id arrays are sorted, so `np.searchsorted` maps an id to its row.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsvc.artifact.manifest import DECLINED, PURCHASED, RETURNED, SEEN
from training.io import Dataset

FLAG_OF_EVENT = {"purchase": PURCHASED, "return": RETURNED, "offer_declined": DECLINED}


@dataclass
class InteractionMatrix:
    customer_ids: np.ndarray  # sorted unique str ('<U..'), one per row
    item_ids: np.ndarray  # sorted unique str, all catalog items, one per column
    confidence: sp.csr_matrix  # customers x items float32, Σ weight per pair, only totals > 0
    flags: sp.csr_matrix  # customers x items uint8: SEEN | PURCHASED | RETURNED | DECLINED bits
    cust_row: np.ndarray  # int64 row of each interaction row of the dataset (-1: not in customer_ids)
    item_col: np.ndarray  # int64 column of each interaction row (-1: not in item_ids)
    # the dataset rows with both ids known, sorted by (customer, item) (stable): reused by build_matrix
    _order: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.customer_ids), len(self.item_ids)


def sorted_ids(*columns) -> np.ndarray:
    """Sorted unique ids of several columns as a '<U..' array."""
    parts = []
    for c in columns:
        if c is None:
            continue
        c = c if isinstance(c, pd.Series) else pd.Series(np.asarray(c, dtype=object))
        if isinstance(c.dtype, pd.CategoricalDtype):
            codes = c.cat.codes.to_numpy()
            used = np.zeros(len(c.cat.categories), dtype=bool)
            used[codes[codes >= 0]] = True
            parts.append(np.asarray(c.cat.categories[used], dtype=str))
        else:
            parts.append(np.asarray(pd.unique(c.dropna()), dtype=str))
    if not parts:
        return np.array([], dtype="<U1")
    # pandas' hash table, then one sort of the distinct ids: several times faster than np.unique on str
    return np.sort(np.asarray(pd.unique(np.concatenate(parts)), dtype=str))


def index_of(ids: np.ndarray, col: pd.Series) -> np.ndarray:
    """Row of each value of `col` in the sorted `ids` (int64, -1 when absent). Categoricals map once per category."""
    if isinstance(col.dtype, pd.CategoricalDtype):
        cats = np.asarray(col.cat.categories, dtype=str)
        per_cat = _lookup(ids, cats)
        codes = col.cat.codes.to_numpy()
        return np.where(codes >= 0, per_cat[codes], -1)
    codes, uniques = pd.factorize(col)
    return np.where(codes >= 0, _lookup(ids, np.asarray(uniques, dtype=str))[codes], -1)


def _lookup(ids: np.ndarray, values: np.ndarray) -> np.ndarray:
    if len(ids) == 0:
        return np.full(len(values), -1, dtype=np.int64)
    at = np.minimum(np.searchsorted(ids, values), len(ids) - 1)
    return np.where(ids[at] == values, at, -1).astype(np.int64)


def row_flags(inter: pd.DataFrame, weights: np.ndarray) -> np.ndarray:
    """uint8 flag bits of each interaction row: SEEN for a positive weight, plus the event's own bit."""
    ev = inter["event"]
    flags = np.where(np.asarray(weights) > 0, SEEN, 0).astype(np.uint8)
    for name, bit in FLAG_OF_EVENT.items():
        flags[(ev == name).to_numpy()] |= np.uint8(bit)
    return flags


def flag_matrix(rows: np.ndarray, cols: np.ndarray, flags: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    """OR of the flags per (row, col): one sort, one reduceat; pairs whose OR is 0 are dropped."""
    ok = (rows >= 0) & (cols >= 0) & (flags > 0)
    rows, cols, flags = rows[ok], cols[ok], flags[ok]
    if rows.size == 0:
        return sp.csr_matrix(shape, dtype=np.uint8)
    key = rows.astype(np.int64) * shape[1] + cols
    order = np.argsort(key, kind="stable")
    k = key[order]
    starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
    f = np.bitwise_or.reduceat(flags[order], starts).astype(np.uint8)
    uk = k[starts]
    m = sp.csr_matrix((f, (uk // shape[1], uk % shape[1])), shape=shape, dtype=np.uint8)
    m.sort_indices()
    return m


def _csr(keys: np.ndarray, values: np.ndarray, shape: tuple[int, int], dtype) -> sp.csr_matrix:
    """CSR from sorted unique keys row·n_cols + col (so its indices come out sorted)."""
    rows = keys // shape[1]
    indptr = np.zeros(shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=shape[0]), out=indptr[1:])
    idx_type = np.int32 if max(shape[1], len(keys)) < 2**31 else np.int64
    m = sp.csr_matrix((values.astype(dtype), (keys % shape[1]).astype(idx_type), indptr.astype(idx_type)),
                      shape=shape)
    m.has_sorted_indices = True
    return m


@dataclass
class RowIndex:
    """Where each interaction row goes, before any weight is known: the id maps, every row's customer
    row and item column, and the rows in (customer, item) order. `build_matrix(..., base=)` takes it."""

    customer_ids: np.ndarray
    item_ids: np.ndarray
    cust_row: np.ndarray
    item_col: np.ndarray
    _order: np.ndarray


def index_rows(ds: Dataset) -> RowIndex:
    """The `RowIndex` of a dataset (ids sorted; customers of interactions and of customers.*)."""
    inter = ds.interactions
    customer_ids = sorted_ids(inter["customer_id"], None if ds.customers is None else ds.customers["customer_id"])
    item_ids = sorted_ids(ds.catalog["item_id"])
    cust_row = index_of(customer_ids, inter["customer_id"])
    item_col = index_of(item_ids, inter["item_id"])
    valid = np.flatnonzero((cust_row >= 0) & (item_col >= 0))
    order = valid[np.argsort(cust_row[valid] * len(item_ids) + item_col[valid], kind="stable")]
    return RowIndex(customer_ids, item_ids, cust_row, item_col, order)


def build_matrix(ds: Dataset, weights: np.ndarray, rows: np.ndarray | None = None,
                 customer_ids: np.ndarray | None = None, item_ids: np.ndarray | None = None,
                 base: InteractionMatrix | RowIndex | None = None) -> InteractionMatrix:
    """Confidence and flag matrices from the dataset's interactions and their weights.

    rows: bool mask of the interaction rows to use (e.g. the training part of a split); cust_row and
    item_col still cover every row. Pass customer_ids / item_ids of a full matrix to keep its id maps,
    or the full matrix itself (or `index_rows(ds)`) as `base` to reuse its id maps, row lookups and
    pair order as well.

    One stable sort of the (customer, item) pair keys serves both matrices: confidence is Σ weight
    per pair (in float64; pairs whose total is <= 0 dropped, as `aggregate`), flags the OR of the
    row flags per pair (pairs whose OR is 0 dropped, as `flag_matrix`).
    """
    inter = ds.interactions
    weights = np.asarray(weights)
    if len(weights) != len(inter):
        raise ValueError(f"weights has {len(weights)} entries for {len(inter)} interaction rows")
    if base is not None:
        customer_ids, item_ids = base.customer_ids, base.item_ids
        cust_row, item_col = base.cust_row, base.item_col
    else:
        if customer_ids is None:
            customer_ids = sorted_ids(inter["customer_id"],
                                      None if ds.customers is None else ds.customers["customer_id"])
        if item_ids is None:
            item_ids = sorted_ids(ds.catalog["item_id"])
        cust_row = index_of(customer_ids, inter["customer_id"])
        item_col = index_of(item_ids, inter["item_id"])
    use = np.ones(len(inter), dtype=bool) if rows is None else np.asarray(rows, dtype=bool)
    if len(use) != len(inter):
        raise ValueError(f"rows has {len(use)} entries for {len(inter)} interaction rows")
    shape = (len(customer_ids), len(item_ids))
    order = base._order if base is not None and base._order is not None else None
    if order is None:
        valid = np.flatnonzero((cust_row >= 0) & (item_col >= 0))
        order = valid[np.argsort(cust_row[valid] * shape[1] + item_col[valid], kind="stable")]
    sel = order[use[order]]  # the rows in use, in pair order
    flags_rows = row_flags(inter, weights)
    if len(sel):
        k = cust_row[sel] * shape[1] + item_col[sel]
        starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
        pair = k[starts]
        total = np.add.reduceat(weights[sel].astype(np.float64), starts)
        ored = np.bitwise_or.reduceat(flags_rows[sel], starts)
    else:
        pair = np.zeros(0, np.int64)
        total, ored = np.zeros(0), np.zeros(0, np.uint8)
    pos = total > 0
    confidence = _csr(pair[pos], total[pos], shape, np.float32)
    seen = ored > 0
    flags = _csr(pair[seen], ored[seen], shape, np.uint8)
    return InteractionMatrix(customer_ids=customer_ids, item_ids=item_ids, confidence=confidence, flags=flags,
                             cust_row=cust_row, item_col=item_col, _order=order)

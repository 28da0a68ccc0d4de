"""Which items may be offered in a context: masks over item rows.

The channel enters here and only here, as the items' own channel restriction (an online-only item is
not offered in store); it never changes a score, so the order of items eligible on two channels is
the same on both (the parity rule).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from recsvc.artifact.manifest import DECLINED, PURCHASED, RETURNED, SEEN
from recsvc.core.errors import UnknownItem
from recsvc.core.stock import StockView
from recsvc.core.types import CHANNELS, Context, Filters


def item_rows(model, item_ids: Iterable[str], field: str) -> np.ndarray:
    """Rows of known item ids; UnknownItem names the first unknown one and its field."""
    ids = list(item_ids)
    if not ids:
        return np.empty(0, dtype=np.int64)
    rows = np.fromiter((model.item_index(i) for i in ids), dtype=np.int64, count=len(ids))
    if (rows < 0).any():
        k = int(np.flatnonzero(rows < 0)[0])
        raise UnknownItem(ids[k], f"{field}[{k}]" if field.endswith("s") or field == "cart" else field)
    return rows


def rows_if_known(model, item_ids: list[str]) -> np.ndarray:
    """Rows of the item ids the model knows (live events may name items newer than the model)."""
    if not item_ids or model.n_items == 0:
        return np.empty(0, dtype=np.int64)
    keys = np.array(item_ids)
    pos = np.minimum(np.searchsorted(model.item_ids, keys), model.n_items - 1)
    return np.where(model.item_ids[pos] == keys, pos, -1).astype(np.int64)


def _validity(model, now: float) -> np.ndarray | None:
    """Items within their validity dates at `now` (None: no item has dates)."""
    if model.validity_unrestricted:
        return None
    t = int(now)
    return (np.asarray(model.item_valid_from) <= t) & (t < np.asarray(model.item_valid_to))


def _validity_slot(model, now: float) -> int | None:
    """Which interval between two validity boundaries `now` falls in: validity is constant inside one."""
    if model.validity_unrestricted:
        return None
    bounds = model.cache.get("validity_bounds")
    if bounds is None:
        bounds = np.unique(np.concatenate([model.item_valid_from, model.item_valid_to]))
        model.cache["validity_bounds"] = bounds
    return int(np.searchsorted(bounds, now, side="right"))


def channel_mask(model, channel: str) -> np.ndarray | None:
    """Items sold on `channel` (None: the catalogue restricts no item to some channels)."""
    if channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel!r}")
    if model.channel_unrestricted:
        return None
    return np.asarray(model.item_channels[:, model.channel_index[channel]])


def _base(model, channel: str | None, li: int) -> np.ndarray:
    """Channel (None: any) and locale (row `li` of locale_names, -1: none) restrictions."""
    m = np.ones(model.n_items, dtype=bool)
    if channel is not None:
        on = channel_mask(model, channel)
        if on is not None:
            m &= on
    if li >= 0:
        m &= np.asarray(model.item_locales[:, li])
    return m


MASKS_KEPT = 64  # (channel, locale, validity interval) masks cached per model before the cache restarts


def _context_mask(model, channel: str | None, locale: str | None, now: float) -> np.ndarray:
    """Channel, locale and validity at `now` in one mask, cached per model (read-only: copy it).
    Keyed by the locale's row, not its text: a locale the model does not know restricts nothing."""
    masks = model.cache.get("context_masks")
    if masks is None:
        masks = model.cache["context_masks"] = {}
    li = model.locale_index(locale) if locale else -1
    key = (channel, li, _validity_slot(model, now))
    m = masks.get(key)
    if m is None:
        m = _base(model, channel, li)
        v = _validity(model, now)
        if v is not None:
            m &= v
        if len(masks) >= MASKS_KEPT:  # requests dated all over the calendar: start again, stay bounded
            masks.clear()
        masks[key] = m
    return m


def catalog_mask(model, context: Context, filters: Filters, now: float,
                 stock: StockView | None, by_channel: bool = True) -> np.ndarray:
    """A fresh bool mask (the caller may clear more rows in it). `by_channel=False` leaves the
    channel restriction out (the diversity cap counts on the order every channel shares)."""
    channel_mask(model, context.channel)  # an unknown channel is an error either way
    m = _context_mask(model, context.channel if by_channel else None, context.locale, now).copy()
    if filters.category is not None:
        ci = model.category_index(filters.category)
        if ci < 0:
            m[:] = False
        else:
            m &= np.asarray(model.item_category) == ci
    if filters.max_price is not None:
        m &= np.asarray(model.item_price) <= filters.max_price
    if filters.min_price is not None:
        m &= np.asarray(model.item_price) >= filters.min_price
    if filters.in_stock_only:
        m &= in_stock_mask(model, context.store_id, stock)
    return m


def in_stock_mask(model, store_id: str | None, stock: StockView | None) -> np.ndarray:
    if stock is not None:
        return stock.in_stock_mask(model)
    if store_id is None:
        return model.in_stock_anywhere
    idx = model.store_index(store_id)
    key = ("stock", idx)  # by row: ids the model does not know share one empty mask
    m = model.cache.get(key)
    if m is None:
        m = np.zeros(model.n_items, dtype=bool)
        items, qty = model.stock_of(idx)
        m[items[qty > 0]] = True
        model.cache[key] = m
    return m


def history_exclusions(hist_items: np.ndarray, hist_flags: np.ndarray, mode: str) -> np.ndarray:
    """Training-history rows to exclude: purchased (and returned) ones, or everything seen."""
    if mode == "none" or len(hist_items) == 0:
        return np.empty(0, dtype=np.int64)
    bits = (SEEN | PURCHASED | RETURNED) if mode == "seen" else (PURCHASED | RETURNED)
    return np.asarray(hist_items)[(np.asarray(hist_flags) & bits) != 0]


def declined_counts(hist_items: np.ndarray, hist_flags: np.ndarray) -> dict[int, int]:
    """A decline in the training history counts once toward the cross-channel decline cap."""
    d = np.asarray(hist_items)[(np.asarray(hist_flags) & DECLINED) != 0]
    return {int(r): 1 for r in d}

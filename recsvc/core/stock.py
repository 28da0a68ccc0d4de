"""Live stock of one store as the core sees it: quantities by item id plus a cached item-row mask."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


class StockView:
    """Wraps a store's {item_id: quantity}. Build one per stock version and reuse it: the row
    mask for `in_stock_only` is computed once per model, not once per request."""

    __slots__ = ("_masks", "quantities")

    def __init__(self, quantities: Mapping[str, int]):
        self.quantities = quantities
        self._masks: dict[str, np.ndarray] = {}

    def qty(self, item_id: str) -> int:
        return int(self.quantities.get(item_id, 0))

    def in_stock_mask(self, model) -> np.ndarray:
        m = self._masks.get(model.model_id)
        if m is None:
            m = np.zeros(model.n_items, dtype=bool)
            ids = [k for k, q in self.quantities.items() if q and q > 0]
            if ids and model.n_items:
                keys = np.array(ids)
                pos = np.searchsorted(model.item_ids, keys)
                pos = np.minimum(pos, model.n_items - 1)
                hit = model.item_ids[pos] == keys
                m[pos[hit]] = True
            self._masks = {model.model_id: m}  # one model at a time; a reload replaces it
        return m


def as_stock_view(stock) -> StockView | None:
    if stock is None or isinstance(stock, StockView):
        return stock
    return StockView(stock)

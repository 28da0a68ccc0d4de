"""From events to confidence: event weights, channel balancing, recency decay, then one sum per pair.

Per interaction row, in this order:

1. **Event weight** `event_weights[event]`, times the quantity (clipped to `quantity_cap`: three units
   bought is stronger than one, a bulk order of 50 is not 50 times stronger). A rating with a value
   is scaled by `value / rating_scale` when `rating_scale` is set (a 5-star rating weighs the full
   `rating` weight, a 1-star one a fifth). Returns and declined offers have negative weights: they
   count against the item.

2. **Channel balancing** (`channel_balance` = b in 0..1). Channels record behaviour at very different
   densities: the web logs every view, a till logs a receipt line. Per customer c and channel h, let
   P(c,h) be the total positive weight of that block. Every row of the block is multiplied by

       s(c,h) = (ref / P(c,h)) ** b         so the block's positive total becomes P ** (1-b) * ref ** b

   with `ref` the median P over all blocks (or `balance_ref`). b = 0 leaves the weights alone; b = 1
   gives every (customer, channel) block the same total: three store receipts and three hundred web
   views then carry the same confidence, within one customer (the receipts are not drowned) and
   across customers (a store-only customer's vector is fitted as firmly as a heavy browser's). Inside a
   block the relative weights are kept (a purchase still outweighs a view).
   A negative row takes the scale of the positive rows it cancels: the weight-averaged scale of the
   customer's positive rows on the same item, so a return exactly cancels its purchase even when
   bought online and returned in store; with no positive row on the item (a declined offer of an
   item never seen), the customer's average block scale. Balancing uses undecayed weights, so that
   step 3 still makes old blocks count less than recent ones.

3. **Recency decay** `0.5 ** (age_days / half_life_days)`, age measured back from `now` (rows after
   `now` count fully). A later return therefore outweighs its earlier purchase and the pair drops out.

`aggregate` then sums per (customer, item) and drops pairs whose total is <= 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsvc.core.types import CHANNELS, EVENTS
from training.errors import ConfigError

DAY = 86400.0
DEFAULT_EVENT_WEIGHTS = {
    "view": 1.0, "click": 2.0, "add_to_cart": 4.0, "purchase": 8.0, "rating": 4.0,
    "offer_shown": 0.0, "offer_accepted": 6.0, "return": -8.0, "offer_declined": -3.0,
}


@dataclass(frozen=True)
class WeightConfig:
    """How much each event says about a customer's taste (see the module docstring)."""

    event_weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_EVENT_WEIGHTS))
    half_life_days: float | None = 90.0  # recency decay; None = off
    channel_balance: float = 1.0  # 0 = off ... 1 = every (customer, channel) block gets the same total
    balance_ref: float | None = None  # the common block total; None = median block total of the data
    quantity_cap: float = 5.0  # quantity multiplies the weight up to this
    rating_scale: float | None = 5.0  # rating weight x value / rating_scale; None = ignore the value

    def __post_init__(self) -> None:
        unknown = sorted(set(self.event_weights) - set(EVENTS))
        if unknown:
            raise ConfigError(f"event_weights: unknown event {', '.join(unknown)} (known: {', '.join(EVENTS)})")
        if not 0.0 <= self.channel_balance <= 1.0:
            raise ConfigError(f"channel_balance must be within 0..1, got {self.channel_balance}")
        if self.half_life_days is not None and not self.half_life_days > 0:
            raise ConfigError(f"half_life_days must be > 0 (or None for no decay), got {self.half_life_days}")
        if self.balance_ref is not None and not self.balance_ref > 0:
            raise ConfigError(f"balance_ref must be > 0, got {self.balance_ref}")
        if not self.quantity_cap > 0:
            raise ConfigError(f"quantity_cap must be > 0, got {self.quantity_cap}")
        if self.rating_scale is not None and not self.rating_scale > 0:
            raise ConfigError(f"rating_scale must be > 0 (or None), got {self.rating_scale}")

    def weight_of(self, event: str) -> float:
        return float(self.event_weights.get(event, DEFAULT_EVENT_WEIGHTS[event]))


def codes_of(col: pd.Series, categories: tuple[str, ...] | None = None) -> tuple[np.ndarray, int]:
    """(int64 code per row, number of codes): Categorical codes when possible, else factorized."""
    if categories is not None:
        if isinstance(col.dtype, pd.CategoricalDtype) and tuple(col.cat.categories) == categories:
            codes = col.cat.codes.to_numpy()
        else:
            codes = pd.Categorical(col, categories=list(categories)).codes
        if (codes < 0).any():
            raise ConfigError(f"column {col.name!r} has values outside {categories}")
        return codes.astype(np.int64), len(categories)
    if isinstance(col.dtype, pd.CategoricalDtype):
        return col.cat.codes.to_numpy().astype(np.int64), len(col.cat.categories)
    codes, uniques = pd.factorize(col)
    return codes.astype(np.int64), len(uniques)


def base_weights(inter: pd.DataFrame, cfg: WeightConfig) -> np.ndarray:
    """Step 1: event weight x clipped quantity (x rating value scale), float64 per row."""
    ev, _ = codes_of(inter["event"], EVENTS)
    table = np.array([cfg.weight_of(e) for e in EVENTS], dtype=np.float64)
    w = table[ev]
    if "quantity" in inter:
        q = inter["quantity"].to_numpy(dtype=np.float64, na_value=1.0)
        w = w * np.clip(q, 0.0, cfg.quantity_cap)
    if cfg.rating_scale is not None and "value" in inter:
        v = inter["value"].to_numpy(dtype=np.float64, na_value=np.nan)
        rated = (ev == EVENTS.index("rating")) & np.isfinite(v)
        w[rated] *= np.clip(v[rated], 0.0, None) / cfg.rating_scale
    return w


def _block_totals(cust: np.ndarray, chan: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(block of each row, positive weight total per (customer, channel) block)."""
    block = cust * len(CHANNELS) + chan
    total = np.bincount(block, weights=np.clip(w, 0.0, None), minlength=int(block.max()) + 1 if len(w) else 0)
    return block, total


def reference_total(inter: pd.DataFrame, cfg: WeightConfig) -> float | None:
    """The common block total `ref` that balancing uses for this data (cfg.balance_ref if set).

    Store it with the model: weighting live events the same way later needs the same reference.
    """
    if cfg.balance_ref is not None:
        return float(cfg.balance_ref)
    if len(inter) == 0:
        return None
    _, total = _block_totals(codes_of(inter["customer_id"])[0], codes_of(inter["channel"], CHANNELS)[0],
                             base_weights(inter, cfg))
    live = total > 0
    return float(np.median(total[live])) if live.any() else None


def balance_scales(cust: np.ndarray, chan: np.ndarray, item: np.ndarray, w: np.ndarray,
                   b: float, ref: float | None = None) -> np.ndarray:
    """Step 2: the channel-balancing multiplier of each row (see the module docstring)."""
    n = len(w)
    if b == 0.0 or n == 0:
        return np.ones(n)
    n_ch = len(CHANNELS)
    block, total = _block_totals(cust, chan, w)
    n_blocks = len(total)
    pos = np.clip(w, 0.0, None)
    live = total > 0
    if not live.any():
        return np.ones(n)
    ref = float(np.median(total[live])) if ref is None else float(ref)
    s_block = np.ones(n_blocks)
    s_block[live] = (ref / total[live]) ** b
    scale = s_block[block]
    neg = np.flatnonzero(w < 0)
    if neg.size:
        # customer average: Σ s·P / Σ P over the customer's positive blocks
        n_cust = int(cust.max()) + 1
        cust_of_block = np.arange(n_blocks) // n_ch
        sp_sum = np.bincount(cust_of_block, weights=s_block * total, minlength=n_cust)
        p_sum = np.bincount(cust_of_block, weights=total, minlength=n_cust)
        cust_scale = np.divide(sp_sum, p_sum, out=np.ones(n_cust), where=p_sum > 0)
        n_items = int(item.max()) + 1
        key = cust * n_items + item
        neg_keys = np.unique(key[neg])
        has_neg = np.zeros(n_cust, dtype=bool)
        has_neg[cust[neg]] = True
        posr = np.flatnonzero((w > 0) & has_neg[cust])  # only these customers can match a negative row
        at = np.searchsorted(neg_keys, key[posr])
        at_c = np.minimum(at, len(neg_keys) - 1)
        hit = neg_keys[at_c] == key[posr]
        ws = np.bincount(at_c[hit], weights=pos[posr[hit]] * scale[posr[hit]], minlength=len(neg_keys))
        wsum = np.bincount(at_c[hit], weights=pos[posr[hit]], minlength=len(neg_keys))
        pair_scale = np.divide(ws, wsum, out=np.full(len(neg_keys), np.nan), where=wsum > 0)
        ps = pair_scale[np.searchsorted(neg_keys, key[neg])]
        scale[neg] = np.where(np.isfinite(ps), ps, cust_scale[cust[neg]])
    return scale


def decay(ts: np.ndarray, now: float, half_life_days: float | None) -> np.ndarray:
    """Step 3: 0.5 ** (age_days / half_life); rows after `now` count fully."""
    if half_life_days is None:
        return np.ones(len(ts))
    age = np.clip(now - np.asarray(ts, dtype=np.float64), 0.0, None) / DAY
    return np.exp2(-age / half_life_days)


def event_weights(inter: pd.DataFrame, cfg: WeightConfig, now: float) -> np.ndarray:
    """Signed confidence contribution of every interaction row (float32), steps 1-3."""
    w = base_weights(inter, cfg)
    if cfg.channel_balance > 0 and len(w):
        cust, _ = codes_of(inter["customer_id"])
        item, _ = codes_of(inter["item_id"])
        chan, _ = codes_of(inter["channel"], CHANNELS)
        w = w * balance_scales(cust, chan, item, w, cfg.channel_balance, cfg.balance_ref)
    w = w * decay(inter["ts"].to_numpy(), now, cfg.half_life_days)
    return w.astype(np.float32)


def aggregate(cust_idx: np.ndarray, item_idx: np.ndarray, w: np.ndarray, n_customers: int,
              n_items: int) -> sp.csr_matrix:
    """customers x items float32 CSR: Σ w per pair (summed in float64), pairs with total <= 0 dropped.

    Rows with a negative index (unknown customer or item) are left out.
    """
    cust_idx = np.asarray(cust_idx, dtype=np.int64)
    item_idx = np.asarray(item_idx, dtype=np.int64)
    w = np.asarray(w, dtype=np.float64)
    ok = (cust_idx >= 0) & (item_idx >= 0) & (w != 0)
    m = sp.coo_matrix((w[ok], (cust_idx[ok], item_idx[ok])), shape=(n_customers, n_items)).tocsr()
    m.sum_duplicates()
    m.data[m.data <= 0] = 0.0
    m.eliminate_zeros()
    out = m.astype(np.float32)
    out.sort_indices()
    return out

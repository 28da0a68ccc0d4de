"""Train/test splits for evaluation: by time (a cut-off) or per customer at random.

Each returns a bool mask over interaction rows, True = held out for testing.
"""

from __future__ import annotations

import math

import numpy as np

from training.errors import ConfigError

DAY = 86400


def temporal_split(ts: np.ndarray, cutoff: float) -> np.ndarray:
    """True for the rows at or after the cut-off (epoch seconds): the model is fitted on the past only."""
    return np.asarray(ts) >= cutoff


def default_cutoff(ts: np.ndarray, fraction: float = 0.1) -> float:
    """Start of the last `fraction` of the time span, rounded down to a UTC day boundary."""
    ts = np.asarray(ts)
    if ts.size == 0:
        raise ConfigError("no interactions to split")
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"the test fraction must be within 0..1 (exclusive), got {fraction}")
    lo, hi = float(ts.min()), float(ts.max())
    cut = hi - fraction * (hi - lo)
    return float(math.floor(cut / DAY) * DAY)


def per_customer_random_split(cust_row: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Each customer with >= 2 rows holds out ceil(fraction x n) of them at random (keeping at least one
    for training); customers with one row (or row -1) stay in training. Deterministic for a seed.

    Vectorised: one random key per row, one lexsort by (customer, key), rank within the customer.
    """
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"holdout fraction must be within 0..1 (exclusive), got {fraction}")
    cust_row = np.asarray(cust_row, dtype=np.int64)
    n = len(cust_row)
    test = np.zeros(n, dtype=bool)
    if n == 0:
        return test
    key = np.random.default_rng(seed).random(n)
    order = np.lexsort((key, cust_row))
    c = cust_row[order]
    valid = c >= 0
    counts = np.bincount(c[valid], minlength=int(c.max()) + 1 if valid.any() else 0)
    starts = np.flatnonzero(np.r_[True, c[1:] != c[:-1]])
    group_start = np.repeat(starts, np.diff(np.r_[starts, n]))
    rank = np.arange(n) - group_start
    k = np.minimum(np.ceil(fraction * counts - 1e-9).astype(np.int64), counts - 1)  # 0.3 x 10 is 3, not 4
    k[counts < 2] = 0
    held = np.zeros(n, dtype=bool)
    held[valid] = rank[valid] < k[c[valid]]
    test[order] = held
    return test

"""Real-time customer vectors: the ALS closed form against the model's fixed item factors.

x_u = (YᵀY + reg·I + Yᵀ(C_u − I)Y)⁻¹ · Σ_{c_i>0} c_i·y_i, with c_i = alpha·w_i: the same solve
`implicit` does for one user, so a live event counts at once, with no retraining and no implicit
import at serving time. YᵀY is cached per model (LoadedModel.gramian).
"""

from __future__ import annotations

import numpy as np

DEFAULT_REG = 0.1
DEFAULT_ALPHA = 1.0


def fold_in(item_factors: np.ndarray, gramian: np.ndarray, items: np.ndarray, weights: np.ndarray,
            regularization: float = DEFAULT_REG, alpha: float = DEFAULT_ALPHA) -> np.ndarray | None:
    """Customer vector from (item rows, confidence weights); None when nothing positive is left."""
    if len(items) == 0:
        return None
    items = np.asarray(items, dtype=np.int64)
    c = alpha * np.asarray(weights, dtype=np.float64)
    if not np.any(c > 0):
        return None
    y = np.asarray(item_factors[items], dtype=np.float64)
    k = y.shape[1]
    a = gramian + regularization * np.eye(k) + (y.T * (np.abs(c) - 1.0)) @ y
    b = (c.clip(min=0.0)[:, None] * y).sum(axis=0)
    try:
        x = np.linalg.solve(a, b)
    except np.linalg.LinAlgError:
        x = np.linalg.lstsq(a, b, rcond=None)[0]
    if not np.all(np.isfinite(x)):
        return None
    return x.astype(np.float32)


def merge_weights(hist_items: np.ndarray, hist_weights: np.ndarray | None,
                  live_items: np.ndarray, live_weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sum training confidences and live event weights per item; keep the positive totals
    (returns and declines can cancel an item out, as they do in training)."""
    if hist_weights is None:
        hist_weights = np.zeros(len(hist_items), dtype=np.float32)
    items = np.concatenate([np.asarray(hist_items, np.int64), np.asarray(live_items, np.int64)])
    w = np.concatenate([np.asarray(hist_weights, np.float64), np.asarray(live_weights, np.float64)])
    if len(items) == 0:
        return items, w
    uniq, inv = np.unique(items, return_inverse=True)
    tot = np.bincount(inv, weights=w, minlength=len(uniq))
    keep = tot > 0
    return uniq[keep], tot[keep]

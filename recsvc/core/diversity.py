"""At most `cap` items per category in a list, without giving up `n` when the catalogue allows."""

from __future__ import annotations

import numpy as np


def needs_full_order(rows: np.ndarray, categories: np.ndarray, n: int, cap: int | None,
                     on: np.ndarray | None = None) -> bool:
    """True when the cap had to fill from held-back items: items beyond a truncated candidate
    window might then belong in the list, so the caller must rank the full order."""
    if cap is None or cap <= 0:
        return False
    counts: dict[int, int] = {}
    taken = 0
    for r in rows:
        c = int(categories[r])
        if counts.get(c, 0) < cap:
            counts[c] = counts.get(c, 0) + 1
            if on is None or on[r]:
                taken += 1
                if taken == n:
                    return False
    return True


def cap_per_category(rows: np.ndarray, categories: np.ndarray, n: int, cap: int | None,
                     on: np.ndarray | None = None) -> np.ndarray:
    """First n rows of `rows` (best first) honouring the cap; items held back by the cap fill the
    list at the end (in their order) only when there are not enough other items.

    `on`: the rows the request's channel may show. The cap counts over `rows` ordered for every
    channel alike and the channel only removes rows afterwards, so the channel never reorders the
    items two channels share (the parity rule), held-back ones included."""
    if cap is None or cap <= 0:
        return rows[:n] if on is None else rows[on[rows]][:n]
    taken, held = [], []
    counts: dict[int, int] = {}
    for r in rows:
        c = int(categories[r])
        if counts.get(c, 0) < cap:
            counts[c] = counts.get(c, 0) + 1
            if on is None or on[r]:
                taken.append(r)
                if len(taken) == n:
                    break
        elif on is None or on[r]:
            held.append(r)
    if len(taken) < n:
        taken += held[: n - len(taken)]
    return np.asarray(taken, dtype=np.int64)

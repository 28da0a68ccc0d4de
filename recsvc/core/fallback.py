"""Non-personal candidates, in the order the contract names: the context (similar to the viewed item
or the cart), then popular in the store in context, in the locale, overall. Never per channel:
an anonymous store visitor and a web visitor in the same context get the same list."""

from __future__ import annotations

import numpy as np

from recsvc.core.scoring import neighbour_scores, top_k


def context_scores(model, anchors: np.ndarray) -> np.ndarray | None:
    """Similarity to the viewed item / cart items, from the model's neighbour lists."""
    if model.neighbours is None or len(anchors) == 0:
        return None
    s = neighbour_scores(model.n_items, anchors, np.ones(len(anchors), np.float32),
                         model.neighbours, model.neighbour_scores)
    return s if np.any(s > 0) else None


def popular_order(model) -> np.ndarray:
    """All item rows by global popularity (cached per model)."""
    o = model.cache.get("pop_order")
    if o is None:
        o = top_k(np.asarray(model.pop_global, dtype=np.float32), model.n_items)
        model.cache["pop_order"] = o
    return o


def sources(model, anchors: np.ndarray, store_id: str | None, locale: str | None,
            segment: str | None) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """[(strategy, rows best first, scores)] to draw from in turn."""
    out = []
    cs = context_scores(model, anchors)
    if cs is not None:
        rows = np.flatnonzero(cs > 0)
        rows = rows[np.lexsort((rows, -cs[rows]))]
        out.append(("context", rows, cs[rows]))
    for name, idx, items, scores in (
        ("store_popular", model.store_index(store_id) if store_id else -1,
         model.pop_store_items, model.pop_store_scores),
        ("locale_popular", model.locale_index(locale) if locale else -1,
         model.pop_locale_items, model.pop_locale_scores),
        ("segment_popular", model.segment_index(segment) if segment else -1,
         model.pop_segment_items, model.pop_segment_scores),
    ):
        if idx >= 0 and idx < items.shape[0]:
            r = np.asarray(items[idx])
            ok = r >= 0
            out.append((name, r[ok].astype(np.int64), np.asarray(scores[idx])[ok]))
    order = popular_order(model)
    out.append(("popular", order, np.asarray(model.pop_global)[order]))
    return out


def draw(srcs, eligible: np.ndarray, want: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Take eligible, not yet taken rows from each source in turn until `want` are found.
    Returns (rows, scores, source name per row)."""
    taken = np.zeros(eligible.shape[0], dtype=bool)
    rows, scores, names = [], [], []
    for name, r, s in srcs:
        if len(rows) >= want:
            break
        ok = eligible[r] & ~taken[r]
        r, s = r[ok][: want - len(rows)], s[ok][: want - len(rows)]
        taken[r] = True
        rows.append(r)
        scores.append(s)
        names += [name] * len(r)
    if not rows:
        return np.empty(0, np.int64), np.empty(0, np.float32), []
    return np.concatenate(rows).astype(np.int64), np.concatenate(scores).astype(np.float32), names

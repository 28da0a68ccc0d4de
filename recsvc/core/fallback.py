"""Non-personal candidates, in the order the contract names: the context (similar to the viewed item
or the cart), then popular in the store in context, in the locale, overall. Never per channel:
an anonymous store visitor and a web visitor in the same context get the same list."""

from __future__ import annotations

import numpy as np

from recsvc.core.scoring import neighbour_scores, top_k

Source = tuple[str, np.ndarray, np.ndarray]  # (strategy, rows best first, their scores)


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


def _popular(model) -> Source:
    src = model.cache.get("pop_source")
    if src is None:
        order = popular_order(model)
        src = ("popular", order, np.asarray(model.pop_global)[order])
        model.cache["pop_source"] = src
    return src


def _group_source(model, name: str, idx: int, items: np.ndarray, scores: np.ndarray) -> Source:
    """One group's popular list (a store's, a locale's, a segment's) without its padding; cached per model."""
    key = ("pop_source", name, idx)
    src = model.cache.get(key)
    if src is None:
        r = np.asarray(items[idx])
        ok = r >= 0
        src = (name, r[ok].astype(np.int64), np.asarray(scores[idx])[ok])
        model.cache[key] = src
    return src


def sources(model, anchors: np.ndarray, store_id: str | None, locale: str | None,
            segment: str | None) -> list[Source]:
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
            out.append(_group_source(model, name, idx, items, scores))
    out.append(_popular(model))
    return out


def _first_eligible(r: np.ndarray, s: np.ndarray, eligible: np.ndarray, taken: np.ndarray,
                    need: int) -> tuple[np.ndarray, np.ndarray]:
    """The first `need` rows of `r` that are eligible and not taken, read in growing windows (the
    global list holds the whole catalogue, and a handful of its head is usually enough)."""
    picked_r, picked_s = [], []
    start, window = 0, max(64, 4 * need)
    while need > 0 and start < len(r):
        rr, ss = r[start:start + window], s[start:start + window]
        ok = eligible[rr] & ~taken[rr]
        rr, ss = rr[ok][:need], ss[ok][:need]
        picked_r.append(rr)
        picked_s.append(ss)
        need -= len(rr)
        start += window
        window *= 4
    if len(picked_r) == 1:
        return picked_r[0], picked_s[0]
    if not picked_r:
        return r[:0], s[:0]
    return np.concatenate(picked_r), np.concatenate(picked_s)


def draw(srcs, eligible: np.ndarray, want: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Take eligible, not yet taken rows from each source in turn until `want` are found.
    Returns (rows, scores, source name per row)."""
    taken = np.zeros(eligible.shape[0], dtype=bool)
    rows, scores, names = [], [], []
    got = 0
    for name, r, s in srcs:
        if got >= want:
            break
        r, s = _first_eligible(r, s, eligible, taken, want - got)
        taken[r] = True
        rows.append(r)
        scores.append(s)
        names += [name] * len(r)
        got += len(r)
    if not rows:
        return np.empty(0, np.int64), np.empty(0, np.float32), []
    return np.concatenate(rows).astype(np.int64), np.concatenate(scores).astype(np.float32), names

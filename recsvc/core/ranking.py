"""rank(): the one entry point the API and batch recommendations share.

Order of work: items the request names (viewed, cart, exclude) -> eligibility (channel restriction,
locale, validity, filters, stock) -> who may be personalised (consent, erasure) -> the customer's
vector (model row, or fold-in of live events) -> scores -> context boosts -> fallback when there is
no vector -> diversity cap -> reasons and availability.

Everything after the scores works on the n rows that are returned (never a Python loop over the
catalogue or over every neighbour of every anchor): this runs once per request.
"""

from __future__ import annotations

import math
import time

import numpy as np

from recsvc.artifact.manifest import PURCHASED
from recsvc.core import ann as ann_
from recsvc.core import eligibility as el
from recsvc.core.diversity import cap_per_category, needs_full_order
from recsvc.core.fallback import context_scores, draw, sources
from recsvc.core.foldin import DEFAULT_ALPHA, DEFAULT_REG, fold_in, merge_weights
from recsvc.core.reasons import language, reason
from recsvc.core.scoring import MARGIN, factor_scores, neighbour_scores, refine, top_k
from recsvc.core.stock import StockView, as_stock_view
from recsvc.core.types import Availability, Context, CustomerState, RankedOffer, Ranking, RankOptions, Reason

POSITIVE_LIVE = ("view", "click", "add_to_cart", "purchase", "rating", "offer_accepted")
NO_ROWS = np.empty(0, dtype=np.int64)
NO_WEIGHTS = np.empty(0, dtype=np.float32)
NO_STORE = Availability(None, None, None, "order_for_delivery")
FALLBACK_CODES = {"store_popular": "popular_in_store", "locale_popular": "popular_in_locale",
                  "segment_popular": "popular_in_segment", "context": "popular"}


def _now(context: Context, now: float | None) -> float:
    if context.at is not None:
        return float(context.at)
    return float(now) if now is not None else time.time()


def not_personalised_because(state: CustomerState, options: RankOptions) -> str | None:
    if state.customer_id is None:
        return "anonymous"
    if state.erased:
        return "erased"
    consent = state.consent if state.consent is not None else options.consent_default
    if not consent:
        return "no_consent"
    return None


def _first_occurrences(rows: np.ndarray) -> np.ndarray:
    """Mask of the first occurrence of each value."""
    keep = np.zeros(len(rows), dtype=bool)
    keep[np.unique(rows, return_index=True)[1]] = True
    return keep


def _history_is_unique(model) -> bool:
    """True when every customer's history rows are strictly increasing (so without repeats), as
    training writes them; checked once per model."""
    u = model.cache.get("history_unique")
    if u is None:
        h = model.hist_items
        rising = h[1:] > h[:-1]
        starts = np.asarray(model.hist_indptr[1:-1], np.int64)
        starts = starts[(starts > 0) & (starts < len(h))]
        rising[starts - 1] = True  # a new customer's row may start lower
        u = model.cache["history_unique"] = bool(np.all(rising))
    return u


class _Customer:
    """The customer's history as the model and live state know it (rows, weights, flags)."""

    __slots__ = (
        "hist_flags",
        "hist_items",
        "hist_unique",
        "hist_weights",
        "idx",
        "live_events",
        "live_rows",
        "live_weights",
    )

    def __init__(self, model, state: CustomerState):
        idx = model.customer_index(state.customer_id) if state.customer_id else -1
        self.idx = idx
        self.hist_unique = _history_is_unique(model)
        self.hist_items, self.hist_flags = model.history(idx)
        if model.hist_weights is not None and idx >= 0:
            a, b = int(model.hist_indptr[idx]), int(model.hist_indptr[idx + 1])
            self.hist_weights = model.hist_weights[a:b]
        else:
            self.hist_weights = np.ones(len(self.hist_items), np.float32)
        events = state.events
        if not events:
            self.live_rows, self.live_events, self.live_weights = NO_ROWS, [], NO_WEIGHTS
            return
        rows = el.rows_if_known(model, [e.item_id for e in events])
        known = rows >= 0
        self.live_rows = rows[known]
        self.live_events = [e for e, k in zip(events, known) if k]
        weights = (model.manifest.scoring.get("event_weights") or {})
        self.live_weights = np.array([weights.get(e.event, 0.0) * max(e.quantity, 1.0) if e.event == "purchase"
                                      else weights.get(e.event, 0.0) for e in self.live_events], np.float32)

    def live_rows_of(self, *events: str) -> np.ndarray:
        if not self.live_events:
            return NO_ROWS
        return np.array([r for r, e in zip(self.live_rows, self.live_events) if e.event in events], np.int64)

    def exclusions(self, mode: str) -> np.ndarray:
        out = el.history_exclusions(self.hist_items, self.hist_flags, mode)
        if not self.live_events or mode not in ("purchased", "seen"):
            return out
        live = self.live_rows_of("purchase", "return") if mode == "purchased" else \
            self.live_rows_of(*POSITIVE_LIVE, "return")
        return np.concatenate([out, live]).astype(np.int64)

    def over_decline_cap(self, cap: int) -> np.ndarray:
        counts = el.declined_counts(self.hist_items, self.hist_flags)
        for r in self.live_rows_of("offer_declined"):
            counts[int(r)] = counts.get(int(r), 0) + 1
        if not counts:
            return NO_ROWS
        return np.array([r for r, c in counts.items() if c >= cap], np.int64)

    def has_live_signal(self) -> bool:
        return bool(np.any(self.live_weights > 0))

    def anchors(self, limit: int = 20) -> tuple[np.ndarray, np.ndarray]:
        """Items the customer's reasons can point at, newest live first, then the history by weight:
        (rows, is_purchase)."""
        rows: list[int] = []
        bought: list[bool] = []
        seen: set[int] = set()
        for r, e in zip(reversed(self.live_rows.tolist()), reversed(self.live_events)):
            if e.event in POSITIVE_LIVE and r not in seen:
                seen.add(r)
                rows.append(r)
                bought.append(e.event == "purchase")
        live = np.array(rows[:limit], np.int64), np.array(bought[:limit], bool)
        room = limit - len(live[0])
        if room <= 0 or len(self.hist_items) == 0:
            return live
        order = np.argsort(-self.hist_weights, kind="stable")
        if self.hist_unique and not seen:
            order = order[:room]
            return self.hist_items[order].astype(np.int64), (self.hist_flags[order] & PURCHASED) != 0
        h_rows = self.hist_items[order].astype(np.int64)
        keep = _first_occurrences(h_rows)
        if seen:
            keep &= ~np.isin(h_rows, live[0])
        h_rows = h_rows[keep][:room]
        h_bought = (self.hist_flags[order][keep][:room] & PURCHASED) != 0
        return np.concatenate([live[0], h_rows]), np.concatenate([live[1], h_bought])

    def purchased_rows(self) -> np.ndarray:
        hist = self.hist_items[(self.hist_flags & PURCHASED) != 0]
        live = self.live_rows_of("purchase")
        return np.concatenate([hist.astype(np.int64), live]) if len(live) else hist


class Prepared:
    """The part of a request that live state cannot change: a known customer's scores from their model
    row. Computed while the state is on its way (`prepare`), used by `rank` unless live events fold a
    new vector in or the customer may not be personalised."""

    __slots__ = ("idx", "model_id", "scores", "vector")

    def __init__(self, model_id: str, idx: int, vector: np.ndarray, scores: np.ndarray | None):
        self.model_id, self.idx, self.vector, self.scores = model_id, idx, vector, scores


def prepare(model, customer_id: str | None) -> Prepared | None:
    """Score the catalogue for the model row of `customer_id` (factor models; None when there is no
    row or it is empty). `rank(..., prepared=)` gives exactly what it gives without it. With an
    approximate index in use only the vector is kept: scores are then computed for candidates."""
    if model.kind != "factors" or not customer_id:
        return None
    idx = model.customer_index(customer_id)
    if idx < 0:
        return None
    u = model.customer_factors[idx]
    if not u.any():
        return None
    if ann_.index_of(model) is not None:
        return Prepared(model.model_id, idx, u, None)
    return Prepared(model.model_id, idx, u,
                    factor_scores(model.item_factors, u, model.item_bias if model.has_item_bias else None))


def _customer_vector(model, cust: _Customer) -> np.ndarray | None:
    """The model's row for a known customer, or a fresh fold-in when live events add to it."""
    if cust.live_events and cust.has_live_signal():
        items, w = merge_weights(cust.hist_items, cust.hist_weights, cust.live_rows, cust.live_weights)
        f = model.manifest.scoring.get("foldin") or {}
        return fold_in(model.item_factors, model.gramian, items, w,
                       float(f.get("regularization", DEFAULT_REG)), float(f.get("alpha", DEFAULT_ALPHA)))
    if cust.idx >= 0:
        u = model.customer_factors[cust.idx]
        return u if u.any() else None
    return None


def _personal_scores(model, cust: _Customer, prepared: Prepared | None = None, full: bool = True
                     ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(scores over all items, customer vector for factor models) or (None, None). `full=False`
    (factor models scored through the approximate index): the scores are None, the vector is not."""
    if model.kind == "factors":
        if (prepared is not None and prepared.idx == cust.idx >= 0 and prepared.model_id == model.model_id
                and not (cust.live_events and cust.has_live_signal())):
            u = prepared.vector
            if prepared.scores is not None or not full:
                return prepared.scores, u
        else:
            u = _customer_vector(model, cust)
        if u is None:
            return None, None
        if not full:
            return None, u
        return factor_scores(model.item_factors, u, model.item_bias if model.has_item_bias else None), u
    if model.kind == "neighbours":
        items, w = merge_weights(cust.hist_items, cust.hist_weights, cust.live_rows, cust.live_weights)
        if len(items) == 0:
            return None, None
        s = neighbour_scores(model.n_items, items, w.astype(np.float32), model.neighbours, model.neighbour_scores)
        return (s, None) if np.any(s > 0) else (None, None)
    return None, None


def _ordered(scores: np.ndarray, eligible: np.ndarray, front: np.ndarray | None, want: int) -> np.ndarray:
    """Best eligible rows; rows in `front` (the viewed item's neighbours, the browsed category) first."""
    if front is None or not np.any(front & eligible):
        return top_k(scores, want, eligible)
    first = top_k(scores, want, eligible & front)
    rest = top_k(scores, want - len(first), eligible & ~front) if len(first) < want else NO_ROWS
    return np.concatenate([first, rest])


def _category_mask(model, ci: int) -> np.ndarray:
    key = ("category", ci)
    m = model.cache.get(key)
    if m is None:
        m = model.item_category == ci
        model.cache[key] = m
    return m


def _front_mask(model, context: Context, viewed: np.ndarray) -> np.ndarray | None:
    front = None
    if len(viewed) and model.neighbours is not None:
        nb = model.neighbours[viewed[0]]
        front = np.zeros(model.n_items, dtype=bool)
        front[nb[nb >= 0]] = True
    if context.category:
        ci = model.category_index(context.category)
        if ci >= 0:
            cat = _category_mask(model, ci)
            front = cat.copy() if front is None else (front | cat)
    return front


def _category_names(model) -> list[str]:
    """Category name by code as Python strings, with "" for the codes -1 (no category) and beyond."""
    names = model.cache.get("category_list")
    if names is None:
        names = [str(c) for c in model.category_names]
        model.cache["category_list"] = names
    return names


def _category_name(names: list[str], cat: int) -> str:
    return names[cat] if 0 <= cat < len(names) else ""


def _availability(model, store_id: str | None, stock: StockView | None, rows: np.ndarray,
                  ids: list[str]) -> list[Availability]:
    if store_id is None:
        return [NO_STORE] * len(rows)
    if stock is not None:
        qty = [stock.qty(i) for i in ids]
    else:
        items, q = model.stock_of(model.store_index(store_id))
        if len(items):
            pos = np.searchsorted(items, rows)
            at = np.minimum(pos, len(items) - 1)
            qty = np.where((pos < len(items)) & (items[at] == rows), q[at], 0).tolist()
        else:
            qty = [0] * len(rows)
    anywhere = model.in_stock_anywhere[rows].tolist()
    elsewhere = Availability(store_id, False, 0, "pick_up_elsewhere")
    nowhere = Availability(store_id, False, 0, "order_for_delivery")
    return [Availability(store_id, True, q, "take_home") if q > 0 else (elsewhere if a else nowhere)
            for q, a in zip(qty, anywhere)]


def _anchor_hits(model, rows: np.ndarray, groups: list[tuple[str, np.ndarray]]) -> list[tuple[str, int] | None]:
    """For each row: (reason code, anchor row) of the first anchor, in group order, whose neighbour
    list holds the row; None when no anchor's does."""
    nbs = model.neighbours
    hits: list[tuple[str, int] | None] = [None] * len(rows)
    if nbs is None or len(rows) == 0:
        return hits
    anchors = np.concatenate([a for _, a in groups]).astype(np.int64)
    if len(anchors) == 0:
        return hits
    member = (nbs[anchors][:, :, None] == rows).any(axis=1)  # anchors x rows
    first = member.argmax(axis=0)
    found = member[first, np.arange(len(rows))]
    if not found.any():
        return hits
    codes = [code for code, a in groups for _ in range(len(a))]
    anchors_l = anchors.tolist()
    for j, a in zip(np.flatnonzero(found).tolist(), first[found].tolist()):
        hits[j] = (codes[a], anchors_l[a])
    return hits


def _taste(model, cust: _Customer) -> set[int]:
    """The customer's three most frequent categories in the training history."""
    if len(cust.hist_items) == 0:
        return set()
    counts = np.bincount(model.item_category[cust.hist_items] + 1)  # code -1 (no category) counts too
    top = np.argsort(-counts, kind="stable")[:3]  # most frequent first, ties by lower code
    return {c - 1 for c, k in zip(top.tolist(), counts[top].tolist()) if k > 0}


def _reasons(model, lang: str, viewed: np.ndarray, cart: np.ndarray, cust: _Customer | None,
             rows: np.ndarray, sources_: list[str], cats: list[int]) -> list[tuple[Reason, ...]]:
    """Why each returned row is offered: the anchor it is similar to, the customer's taste, a past
    purchase, or the popularity source that filled it."""
    groups = [("similar_to_viewed", viewed), ("goes_with_cart", cart)]
    if cust is not None:
        a_rows, a_bought = cust.anchors()
        groups += [("similar_to_purchase", a_rows[a_bought]), ("similar_to_interest", a_rows[~a_bought])]
    hits = _anchor_hits(model, rows, groups)
    names = _category_names(model)
    personal = [s == "personalised" for s in sources_]
    bought = np.zeros(len(rows), dtype=bool)
    if cust is not None and any(personal):
        bought = (rows[:, None] == cust.purchased_rows()).any(axis=1)
    taste = None
    out = []
    for j, (hit, source, cat) in enumerate(zip(hits, sources_, cats)):
        reasons = []
        if hit is not None and (source in ("personalised", "context")):
            reasons.append(reason(hit[0], lang, title=str(model.item_title[hit[1]])))
        if personal[j]:
            if not reasons:
                if taste is None:
                    taste = _taste(model, cust) if cust is not None else set()
                if cat in taste:
                    reasons.append(reason("in_your_taste", lang, category=_category_name(names, cat)))
            if bought[j]:
                reasons.append(reason("bought_before", lang))
            if not reasons:
                reasons.append(reason("picked_for_you", lang))
        elif not reasons:
            reasons.append(reason(FALLBACK_CODES.get(source, "popular"), lang,
                                  category=_category_name(names, cat)))
        out.append(tuple(reasons))
    return out


def _offers(model, rows: np.ndarray, scores: np.ndarray, reasons: list[tuple[Reason, ...]],
            cats: list[int], availability: list[Availability], ids: list[str]) -> tuple[RankedOffer, ...]:
    names = _category_names(model)
    titles = model.item_title[rows].tolist()
    prices = model.item_price[rows].tolist()
    return tuple(
        RankedOffer(i, k + 1, round(s, 6), t, _category_name(names, c), None if math.isnan(p) else round(p, 2), why, a)
        for k, (i, s, t, c, p, why, a) in enumerate(zip(ids, scores.tolist(), titles, cats, prices, reasons,
                                                       availability)))


def rank(model, state: CustomerState, context: Context, options: RankOptions,
         stock=None, now: float | None = None, prepared: Prepared | None = None) -> Ranking:
    """Ranked offers for one customer in one context. Pure: the same inputs give the same output.
    `prepared`: `prepare(model, state.customer_id)`, done earlier (while live state was read)."""
    t = _now(context, now)
    stock = as_stock_view(stock)
    n = options.n
    viewed = el.item_rows(model, [context.item_id], "context.item_id") if context.item_id else NO_ROWS
    cart = el.item_rows(model, context.cart, "context.cart")
    excluded = el.item_rows(model, options.exclude, "exclude")
    cap = options.max_per_category
    # With a diversity cap, the cap counts on the order every channel shares and the channel only
    # filters afterwards (`on`); without one, the channel restriction is simply part of eligibility.
    on = el.channel_mask(model, context.channel) if cap is not None else None
    index = ann_.index_of(model)
    # approximate candidates are drawn on the channel-agnostic mask, the channel applies after
    after = el.channel_mask(model, context.channel) if index is not None and on is None else None
    eligible = el.catalog_mask(model, context, options.filters, t, stock,
                               by_channel=on is None and after is None)
    for rows in (viewed, cart, excluded):
        if len(rows):
            eligible[rows] = False

    why = not_personalised_because(state, options)
    cust = _Customer(model, state) if why is None else None
    scores, u = None, None
    if cust is not None:
        ex = cust.exclusions(options.exclude_history)
        if len(ex):
            eligible[ex] = False
        ex = cust.over_decline_cap(options.decline_cap)
        if len(ex):
            eligible[ex] = False
        scores, u = _personal_scores(model, cust, prepared, full=index is None)
        if scores is None and u is None:
            why = "unknown_customer" if cust.idx < 0 else ("model_not_personalised" if model.kind == "popularity"
                                                          else "no_history")
    want = n if cap is None else n * 4 + 32
    attempts = (want, None)  # None: every eligible row (counted only when the first window is not enough)
    personal = scores is not None or u is not None
    if index is not None:
        base = eligible
        eligible = eligible & after if after is not None else eligible
    if personal:
        front = _front_mask(model, context, viewed)
        bias = model.item_bias if model.has_item_bias else None
        for attempt in attempts:
            cand = None
            if index is not None and attempt is not None:
                cand = ann_.candidates(model, index, u, base, front, attempt + MARGIN, per_channel=after is not None)
                ann_.counts(model)["ann" if cand is not None else "fallback"] += 1
            elif index is None and attempt is not None and u is not None:
                ann_.counts(model)["exact"] += 1
            attempt = int(eligible.sum()) if attempt is None else attempt
            if cand is not None:
                rows, row_scores = refine(model.item_factors, u, cand[eligible[cand]], attempt, bias, front)
            else:
                if scores is None:
                    scores = factor_scores(model.item_factors, u, bias)
                rows = _ordered(scores, eligible, front, attempt + (MARGIN if u is not None else 0))
                if u is not None:
                    rows, row_scores = refine(model.item_factors, u, rows, attempt, bias, front)
                else:
                    row_scores = scores[rows]
            if len(rows) < attempt or not needs_full_order(rows, model.item_category, n, cap, on):
                break
        names = ["personalised"] * len(rows)
        strategy = "personalised"
    else:
        anchors = np.concatenate([viewed, cart])
        srcs = sources(model, anchors, context.store_id, context.locale,
                       state.segment if why not in ("anonymous", "erased", "no_consent") else None)
        for attempt in attempts:
            attempt = int(eligible.sum()) if attempt is None else attempt
            rows, row_scores, names = draw(srcs, eligible, attempt)
            if len(rows) < attempt or not needs_full_order(rows, model.item_category, n, cap, on):
                break
        strategy = names[0] if names else "popular"
    if cap is None:
        keep = rows[:n]
        at = np.arange(len(keep))
    else:
        keep = cap_per_category(rows, model.item_category, n, cap, on)
        pos = {r: k for k, r in enumerate(rows.tolist())}
        at = np.array([pos[r] for r in keep.tolist()], np.int64)
    keep = np.asarray(keep, np.int64)
    kept_sources = [names[j] for j in at.tolist()]
    ids = model.item_ids[keep].tolist()
    cats = model.item_category[keep].tolist()
    lang = language(options.reason_locale or context.locale)
    reasons = _reasons(model, lang, viewed, cart, cust, keep, kept_sources, cats)
    avail = _availability(model, context.store_id, stock, keep, ids)
    offers = _offers(model, keep, np.asarray(row_scores)[at], reasons, cats, avail, ids)
    return Ranking(customer_id=state.customer_id, personalised=personal, strategy=strategy,
                   fallback_reason=None if personal else why, offers=offers)


def similar(model, item_id: str, context: Context, options: RankOptions, stock=None,
            now: float | None = None) -> Ranking:
    """Items like `item_id` (for a product page or a clerk holding the item), same eligibility rules."""
    t = _now(context, now)
    stock = as_stock_view(stock)
    row = el.item_rows(model, [item_id], "item_id")
    eligible = el.catalog_mask(model, context, options.filters, t, stock)
    eligible[row] = False
    eligible[el.item_rows(model, options.exclude, "exclude")] = False
    n = options.n
    if model.kind == "factors":
        norms = model.cache.get("item_norms")
        if norms is None:
            norms = np.linalg.norm(np.asarray(model.item_factors, dtype=np.float32), axis=1) + 1e-9
            model.cache["item_norms"] = norms
        y = np.asarray(model.item_factors[row[0]], dtype=np.float32)
        s = (model.item_factors @ y) / (norms * norms[row[0]])
        rows = top_k(s.astype(np.float32), n, eligible)
        row_scores = s[rows]
        names = ["context"] * len(rows)
    else:
        srcs = sources(model, row, context.store_id, context.locale, None)
        rows, row_scores, names = draw(srcs, eligible, n)
    rows = np.asarray(rows, np.int64)
    cs = context_scores(model, row)
    lang = language(options.reason_locale or context.locale)
    title = str(model.item_title[row[0]])
    near = cs[rows] > 0 if cs is not None else np.zeros(len(rows), dtype=bool)
    reasons = [(reason("similar_to_viewed" if (name == "context" or c) else "popular", lang, title=title),)
               for name, c in zip(names, near.tolist())]
    ids = model.item_ids[rows].tolist()
    cats = model.item_category[rows].tolist()
    avail = _availability(model, context.store_id, stock, rows, ids)
    offers = _offers(model, rows, np.asarray(row_scores), reasons, cats, avail, ids)
    return Ranking(customer_id=None, personalised=False, strategy="similar", fallback_reason=None,
                   offers=offers)

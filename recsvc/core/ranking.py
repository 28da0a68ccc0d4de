"""rank(): the one entry point the API and batch recommendations share.

Order of work: items the request names (viewed, cart, exclude) -> eligibility (channel restriction,
locale, validity, filters, stock) -> who may be personalised (consent, erasure) -> the customer's
vector (model row, or fold-in of live events) -> scores -> context boosts -> fallback when there is
no vector -> diversity cap -> reasons and availability.
"""

from __future__ import annotations

import time

import numpy as np

from recsvc.artifact.manifest import PURCHASED
from recsvc.core import eligibility as el
from recsvc.core.diversity import cap_per_category, needs_full_order
from recsvc.core.fallback import context_scores, draw, sources
from recsvc.core.foldin import DEFAULT_ALPHA, DEFAULT_REG, fold_in, merge_weights
from recsvc.core.reasons import language, reason
from recsvc.core.scoring import MARGIN, factor_scores, neighbour_scores, refine, top_k
from recsvc.core.stock import StockView, as_stock_view
from recsvc.core.types import (Availability, Context, CustomerState, RankedOffer, Ranking, RankOptions,
                               Reason)

POSITIVE_LIVE = ("view", "click", "add_to_cart", "purchase", "rating", "offer_accepted")
NO_ROWS = np.empty(0, dtype=np.int64)


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


class _Customer:
    """The customer's history as the model and live state know it (rows, weights, flags)."""

    def __init__(self, model, state: CustomerState):
        self.idx = model.customer_index(state.customer_id) if state.customer_id else -1
        self.hist_items, self.hist_flags = model.history(self.idx)
        if model.hist_weights is not None and self.idx >= 0:
            a, b = int(model.hist_indptr[self.idx]), int(model.hist_indptr[self.idx + 1])
            self.hist_weights = np.asarray(model.hist_weights[a:b])
        else:
            self.hist_weights = np.ones(len(self.hist_items), np.float32)
        events = state.events
        rows = el.rows_if_known(model, [e.item_id for e in events])
        known = rows >= 0
        self.live_rows = rows[known]
        self.live_events = [e for e, k in zip(events, known) if k]
        weights = (model.manifest.scoring.get("event_weights") or {})
        self.live_weights = np.array([weights.get(e.event, 0.0) * max(e.quantity, 1.0) if e.event == "purchase"
                                      else weights.get(e.event, 0.0) for e in self.live_events], np.float32)

    def live_rows_of(self, *events: str) -> np.ndarray:
        return np.array([r for r, e in zip(self.live_rows, self.live_events) if e.event in events], np.int64)

    def exclusions(self, mode: str) -> np.ndarray:
        out = [el.history_exclusions(self.hist_items, self.hist_flags, mode)]
        if mode == "purchased":
            out.append(self.live_rows_of("purchase", "return"))
        elif mode == "seen":
            out.append(self.live_rows_of(*POSITIVE_LIVE, "return"))
        return np.concatenate(out).astype(np.int64)

    def over_decline_cap(self, cap: int) -> np.ndarray:
        counts = el.declined_counts(self.hist_items, self.hist_flags)
        for r in self.live_rows_of("offer_declined"):
            counts[int(r)] = counts.get(int(r), 0) + 1
        return np.array([r for r, c in counts.items() if c >= cap], np.int64)

    def has_live_signal(self) -> bool:
        return bool(np.any(self.live_weights > 0))

    def anchors(self, limit: int = 20) -> list[tuple[int, str]]:
        """Items the customer's reasons can point at, newest live first: (row, 'purchase'|'interest')."""
        out, seen = [], set()
        for r, e in zip(reversed(self.live_rows), reversed(self.live_events)):
            if e.event in POSITIVE_LIVE and int(r) not in seen:
                seen.add(int(r))
                out.append((int(r), "purchase" if e.event == "purchase" else "interest"))
        order = np.argsort(-self.hist_weights, kind="stable")
        for j in order:
            r = int(self.hist_items[j])
            if r not in seen:
                seen.add(r)
                out.append((r, "purchase" if self.hist_flags[j] & PURCHASED else "interest"))
            if len(out) >= limit:
                break
        return out[:limit]


def _customer_vector(model, cust: _Customer) -> np.ndarray | None:
    """The model's row for a known customer, or a fresh fold-in when live events add to it."""
    if cust.has_live_signal():
        items, w = merge_weights(cust.hist_items, cust.hist_weights, cust.live_rows, cust.live_weights)
        f = model.manifest.scoring.get("foldin") or {}
        return fold_in(model.item_factors, model.gramian, items, w,
                       float(f.get("regularization", DEFAULT_REG)), float(f.get("alpha", DEFAULT_ALPHA)))
    if cust.idx >= 0:
        u = np.asarray(model.customer_factors[cust.idx])
        return u if np.any(u) else None
    return None


def _personal_scores(model, cust: _Customer) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(scores over all items, customer vector for factor models) or (None, None)."""
    if model.kind == "factors":
        u = _customer_vector(model, cust)
        if u is None:
            return None, None
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


def _front_mask(model, context: Context, viewed: np.ndarray) -> np.ndarray | None:
    front = None
    if len(viewed) and model.neighbours is not None:
        nb = np.asarray(model.neighbours[viewed[0]])
        front = np.zeros(model.n_items, dtype=bool)
        front[nb[nb >= 0]] = True
    if context.category:
        ci = model.category_index(context.category)
        if ci >= 0:
            cat = np.asarray(model.item_category) == ci
            front = cat if front is None else (front | cat)
    return front


def _availability(model, store_id: str | None, stock: StockView | None, rows: np.ndarray) -> list[Availability]:
    anywhere = model.in_stock_anywhere
    if store_id is None:
        return [Availability(None, None, None, "order_for_delivery") for _ in rows]
    if stock is not None:
        qty = [stock.qty(str(model.item_ids[r])) for r in rows]
    else:
        items, q = model.stock_of(model.store_index(store_id))
        pos = np.searchsorted(items, rows) if len(items) else np.zeros(len(rows), np.int64)
        qty = [int(q[p]) if p < len(items) and items[p] == r else 0 for p, r in zip(pos, rows)]
    out = []
    for r, q in zip(rows, qty):
        if q > 0:
            out.append(Availability(store_id, True, q, "take_home"))
        else:
            out.append(Availability(store_id, False, 0, "pick_up_elsewhere" if anywhere[r] else "order_for_delivery"))
    return out


class _Explainer:
    def __init__(self, model, lang: str, viewed: np.ndarray, cart: np.ndarray, cust: _Customer | None):
        self.model, self.lang = model, lang
        self.by_anchor: dict[int, tuple[str, int]] = {}
        nbs = model.neighbours
        if nbs is not None:
            groups = [("similar_to_viewed", viewed), ("goes_with_cart", cart)]
            if cust is not None:
                anchors = cust.anchors()
                groups += [("similar_to_purchase", np.array([r for r, k in anchors if k == "purchase"], np.int64)),
                           ("similar_to_interest", np.array([r for r, k in anchors if k == "interest"], np.int64))]
            for code, rows in groups:
                for a in rows:
                    for nb in np.asarray(nbs[int(a)]):
                        if nb >= 0 and int(nb) not in self.by_anchor:
                            self.by_anchor[int(nb)] = (code, int(a))
        self.taste: set[int] = set()
        self.bought: set[int] = set()
        if cust is not None and len(cust.hist_items):
            cats = np.asarray(model.item_category)[np.asarray(cust.hist_items)]
            if len(cats):
                vals, cnt = np.unique(cats, return_counts=True)
                self.taste = {int(v) for v in vals[np.argsort(-cnt, kind="stable")[:3]]}
            self.bought = {int(r) for r, f in zip(cust.hist_items, cust.hist_flags) if f & PURCHASED}
        if cust is not None:
            self.bought |= {int(r) for r in cust.live_rows_of("purchase")}

    def __call__(self, row: int, source: str) -> tuple[Reason, ...]:
        m, lang = self.model, self.lang
        out = []
        hit = self.by_anchor.get(row)
        if hit and (source in ("personalised", "context")):
            out.append(reason(hit[0], lang, title=str(m.item_title[hit[1]])))
        cat = int(m.item_category[row])
        catname = str(m.category_names[cat]) if 0 <= cat < len(m.category_names) else ""
        if source == "personalised":
            if not out and cat in self.taste:
                out.append(reason("in_your_taste", lang, category=catname))
            if row in self.bought:
                out.append(reason("bought_before", lang))
            if not out:
                out.append(reason("picked_for_you", lang))
        elif not out:
            code = {"store_popular": "popular_in_store", "locale_popular": "popular_in_locale",
                    "segment_popular": "popular_in_segment", "context": "popular"}.get(source, "popular")
            out.append(reason(code, lang, category=catname))
        return tuple(out)


def rank(model, state: CustomerState, context: Context, options: RankOptions,
         stock=None, now: float | None = None) -> Ranking:
    """Ranked offers for one customer in one context. Pure: the same inputs give the same output."""
    t = _now(context, now)
    stock = as_stock_view(stock)
    n = options.n
    viewed = el.item_rows(model, [context.item_id], "context.item_id") if context.item_id else NO_ROWS
    cart = el.item_rows(model, context.cart, "context.cart")
    excluded = el.item_rows(model, options.exclude, "exclude")
    eligible = el.catalog_mask(model, context, options.filters, t, stock)
    for rows in (viewed, cart, excluded):
        eligible[rows] = False

    why = not_personalised_because(state, options)
    cust = _Customer(model, state) if why is None else None
    scores, u = None, None
    if cust is not None:
        eligible[cust.exclusions(options.exclude_history)] = False
        eligible[cust.over_decline_cap(options.decline_cap)] = False
        scores, u = _personal_scores(model, cust)
        if scores is None:
            why = "unknown_customer" if cust.idx < 0 else ("model_not_personalised" if model.kind == "popularity"
                                                          else "no_history")
    cap = options.max_per_category
    want = n if cap is None else n * 4 + 32
    if scores is not None:
        front = _front_mask(model, context, viewed)
        bias = model.item_bias if model.has_item_bias else None
        for attempt in (want, int(eligible.sum())):
            rows = _ordered(scores, eligible, front, attempt + (MARGIN if u is not None else 0))
            if u is not None:
                rows, row_scores = refine(model.item_factors, u, rows, attempt, bias, front)
            else:
                row_scores = scores[rows]
            if len(rows) < attempt or not needs_full_order(rows, model.item_category, n, cap):
                break
        names = ["personalised"] * len(rows)
        strategy = "personalised"
    else:
        anchors = np.concatenate([viewed, cart])
        srcs = sources(model, anchors, context.store_id, context.locale,
                       state.segment if why not in ("anonymous", "erased", "no_consent") else None)
        for attempt in (want, int(eligible.sum())):
            rows, row_scores, names = draw(srcs, eligible, attempt)
            if len(rows) < attempt or not needs_full_order(rows, model.item_category, n, cap):
                break
        strategy = names[0] if names else "popular"
    keep = cap_per_category(rows, model.item_category, n, options.max_per_category)
    pos = {int(r): k for k, r in enumerate(rows)}
    explain = _Explainer(model, language(options.reason_locale or context.locale), viewed, cart, cust)
    avail = _availability(model, context.store_id, stock, keep)
    offers = []
    for k, r in enumerate(keep):
        r = int(r)
        j = pos[r]
        price = float(model.item_price[r])
        cat = int(model.item_category[r])
        offers.append(RankedOffer(
            item_id=str(model.item_ids[r]), rank=k + 1, score=round(float(row_scores[j]), 6),
            title=str(model.item_title[r]),
            category=str(model.category_names[cat]) if 0 <= cat < len(model.category_names) else "",
            price=None if np.isnan(price) else round(price, 2),
            reasons=explain(r, names[j]), availability=avail[k]))
    return Ranking(customer_id=state.customer_id, personalised=scores is not None, strategy=strategy,
                   fallback_reason=None if scores is not None else why, offers=tuple(offers))


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
    cs = context_scores(model, row)
    lang = language(options.reason_locale or context.locale)
    title = str(model.item_title[row[0]])
    avail = _availability(model, context.store_id, stock, rows)
    offers = []
    for k, r in enumerate(rows):
        r = int(r)
        price = float(model.item_price[r])
        cat = int(model.item_category[r])
        code = "similar_to_viewed" if (names[k] == "context" or (cs is not None and cs[r] > 0)) else "popular"
        offers.append(RankedOffer(
            item_id=str(model.item_ids[r]), rank=k + 1, score=round(float(row_scores[k]), 6),
            title=str(model.item_title[r]),
            category=str(model.category_names[cat]) if 0 <= cat < len(model.category_names) else "",
            price=None if np.isnan(price) else round(price, 2),
            reasons=(reason(code, lang, title=title),), availability=avail[k]))
    return Ranking(customer_id=None, personalised=False, strategy="similar", fallback_reason=None,
                   offers=tuple(offers))

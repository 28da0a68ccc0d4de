"""Top-N for many customers with the API's ranking: vectorised where that is provably the same
computation (factor models, no context boosts, no approximate index), `rank()` one by one otherwise.

A model ranked through its approximate index (large catalogues, recsvc.core.ann) goes through
`rank()` customer by customer: the batch list stays the API's list, and an index search per
customer costs far less than scoring the whole catalogue for every one of them."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from recsvc.core import ann
from recsvc.core import eligibility as el
from recsvc.core.diversity import cap_per_category, needs_full_order
from recsvc.core.ranking import rank
from recsvc.core.scoring import MARGIN, batch_top_k, refine
from recsvc.core.types import Context, CustomerState, RankOptions

Row = tuple[str, int, str, float]  # customer_id, rank, item_id, score


def _exclusion_csr(model, rows: np.ndarray, options: RankOptions) -> tuple[np.ndarray, np.ndarray]:
    """Per customer: history exclusions (mode) + items over the decline cap, as a CSR."""
    indptr = [0]
    items = []
    for c in rows:
        h_items, h_flags = model.history(int(c))
        ex = el.history_exclusions(h_items, h_flags, options.exclude_history)
        over = [r for r, k in el.declined_counts(h_items, h_flags).items() if k >= options.decline_cap]
        ex = np.concatenate([ex, np.asarray(over, np.int64)]) if over else ex
        items.append(np.asarray(ex, np.int64))
        indptr.append(indptr[-1] + len(ex))
    return np.asarray(indptr, np.int64), (np.concatenate(items) if items else np.empty(0, np.int64))


def recommend_many(model, customer_ids: Sequence[str], context: Context, options: RankOptions,
                   block: int = 4096) -> Iterator[Row]:
    """Yields (customer_id, rank, item_id, score) rows, customers in the given order."""
    vectorised = (model.kind == "factors" and not context.item_id and not context.cart
                  and not context.category and not options.consent_default is False
                  and ann.index_of(model) is None)
    fallback_cache: dict[tuple, list] = {}

    def one(cid: str) -> list[Row]:
        r = rank(model, CustomerState(customer_id=cid), context, options)
        if not r.personalised:
            key = (r.fallback_reason, tuple(o.item_id for o in r.offers))
            fallback_cache.setdefault(key, [])
        return [(cid, o.rank, o.item_id, o.score) for o in r.offers]

    if not vectorised:
        for cid in customer_ids:
            yield from one(cid)
        return
    excluded = el.item_rows(model, options.exclude, "exclude")
    cap = options.max_per_category
    on = el.channel_mask(model, context.channel) if cap is not None else None  # as rank() does
    eligible = el.catalog_mask(model, context, options.filters, context.at or _time(), None,
                               by_channel=on is None)
    eligible[excluded] = False
    bias = model.item_bias if model.has_item_bias else None
    want = options.n if options.max_per_category is None else options.n * 4 + 32
    for a in range(0, len(customer_ids), block):
        ids = list(customer_ids[a:a + block])
        idx = np.array([model.customer_index(c) for c in ids], np.int64)
        vec_ok = idx >= 0
        if vec_ok.any():
            vecs = np.asarray(model.customer_factors)[idx[vec_ok]]
            vec_ok[vec_ok] = np.any(vecs != 0, axis=1)
        rows_ok = idx[vec_ok]
        tops = {}
        if len(rows_ok):
            indptr, ex_items = _exclusion_csr(model, rows_ok, options)
            margin = want + MARGIN
            top, _ = batch_top_k(model.item_factors, np.asarray(model.customer_factors)[rows_ok], margin,
                                 indptr, ex_items, item_bias=bias, eligible=eligible)
            for j, c in enumerate(rows_ok):
                tops[int(c)] = refine(model.item_factors, np.asarray(model.customer_factors[c]),
                                      top[j][top[j] >= 0], want, bias)
        for c, ci, good in zip(ids, idx, vec_ok):
            if not good:
                yield from one(c)
                continue
            rows, vals = tops[int(ci)]
            if len(rows) == want and needs_full_order(rows, model.item_category, options.n, cap, on):
                yield from one(c)  # the cap needs the full order: take the exact path
                continue
            keep = cap_per_category(rows, model.item_category, options.n, cap, on)
            pos = {int(r): k for k, r in enumerate(rows)}
            for k, r in enumerate(keep):
                yield (c, k + 1, str(model.item_ids[r]), round(float(vals[pos[int(r)]]), 6))


def _time() -> float:
    import time

    return time.time()

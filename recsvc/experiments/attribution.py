"""Impressions in, attributed results out.

The service records one impression per list served in an experiment, keyed by its recommendation_id,
with the experiment, variant, channel, store, items and time (`impression_record`, written by `Experiments.shown`). Events are not
touched on the way in: `POST /v1/events` already keeps every accepted event in live state (the Redis
stream), so the report joins impressions with the events of the period when it is asked for
(`collect`), with the crediting rules of `recsvc.core.experiment_attribution`, which the CLI shares:

- an event carrying a recommendation_id is credited to that list's variant and channel shown;
- a purchase within the attribution window after one of its items was offered to the same customer, on
  any channel, is credited to the variant, the channel where it was shown and the one where it was bought.

Recomputing from the records makes the report exact and repeatable (a retried event is one event, an
erased customer's events are gone from it), at the price of reading the period's events per report.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from recsvc.core.experiment_attribution import Design, design_from_definition, tables_from_records
from recsvc.core.types import Context, Ranking
from recsvc.experiments.backend import ExperimentBackend
from recsvc.experiments.definition import Experiment


def impression_record(rid: str, pseudonyms: Sequence[str], variant: str, context: Context, ranking: Ranking,
                      at: float, customer_id: str | None = None) -> dict:
    """What is kept of one list served: never a customer id, except for the in-process backend
    (`customer_id`), whose events can only be read per customer."""
    rec = {"rid": rid, "u": pseudonyms[0], "a": " ".join(pseudonyms[1:]), "v": variant, "ch": context.channel,
           "st": context.store_id or "", "ts": round(at, 3), "it": [o.item_id for o in ranking.offers]}
    if customer_id is not None:
        rec["cid"] = customer_id
    return rec


def collect(backend: ExperimentBackend, exp: Experiment, price_of: Callable[[str], float | None] | None = None):
    """(Design, Impressions, Events) of an experiment, read from the backend."""
    design: Design = design_from_definition(exp.as_dict())
    impressions = list(backend.impressions(exp.experiment_id))
    customers = None
    if getattr(backend, "keeps_customer_ids", False):
        customers = {r["cid"] for r in impressions if r.get("cid")}
    closes = design.closes_at()
    until = None if closes is None else closes + design.window_s
    events = backend.events(design.start, until, customers)
    imp, ev, _ = tables_from_records(design, impressions, events, price_of)
    return design, imp, ev

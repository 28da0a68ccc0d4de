"""A/B experiments across channels: assignment by customer, variants ranked with their own model and
options, impressions recorded for attribution, reports with intervals, tests and channel flags.

The service uses one `Experiments` per app (`app.extensions["recsvc"].experiments`):

- `enrol(...)` in `POST /v1/recommendations` after the customer is resolved: the first running
  experiment the request is eligible for, the customer's variant (persisted at first sight), and the
  model and options to rank with; None (the champion, `variant: null`) otherwise;
- `shown(...)` once the list is ranked: the impression, keyed by the recommendation_id;
- `create / update / stop / get / list / report` for `/v1/experiments`.

Who is never enrolled: requests without any customer or identifier, erased customers, customers
without consent (their non-personalised list is the champion's), and requests whose live state could
not be read. Stopping an experiment puts everyone back on the champion; its report stays.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from recsvc.core.experiment_attribution import HOUR, attribute
from recsvc.core.experiment_stats import analyse
from recsvc.core.types import Context, CustomerState, Ranking, RankOptions
from recsvc.errors import StoreUnavailable
from recsvc.experiments.assignment import Assigner, Unit, unit_of
from recsvc.experiments.attribution import collect, impression_record
from recsvc.experiments.backend import RETAIN_AFTER_STOP_S, ExperimentBackend, backend_for
from recsvc.experiments.definition import (
    Experiment,
    ExperimentConflict,
    ExperimentError,
    InvalidExperiment,
    UnknownExperiment,
    Variant,
    parse_experiment,
)
from recsvc.experiments.registry import ExperimentRegistry

log = logging.getLogger("recsvc.experiments")

__all__ = ["Experiment", "ExperimentConflict", "ExperimentError", "Experiments", "Exposure", "InvalidExperiment",
           "UnknownExperiment", "Variant"]


@dataclass(frozen=True, slots=True)
class Exposure:
    """A request inside an experiment: the variant, the model it ranks with, who was assigned."""

    experiment: Experiment
    variant: Variant
    model: object  # LoadedModel
    unit: Unit
    pseudonyms: tuple[str, ...]

    def options(self, base: RankOptions) -> RankOptions:
        return self.variant.options.apply(base)


def segment_of(model, customer_id: str | None) -> str | None:
    """The customer's segment as the served model knows it (eligibility by segment)."""
    if customer_id is None or getattr(model, "customer_segment", None) is None:
        return None
    idx = model.customer_index(customer_id)
    if idx < 0:
        return None
    code = int(model.customer_segment[idx])
    names = model.segment_names
    return str(names[code]) if names is not None and 0 <= code < len(names) else None


class Experiments:
    def __init__(self, backend: ExperimentBackend, holder, state_store=None, poll_s: float = 1.0,
                 on_store_error: Callable[[str, StoreUnavailable], None] | None = None,
                 clock: Callable[[], float] = time.time):
        self.backend = backend
        self.holder = holder
        self.clock = clock
        self._on_store_error = on_store_error
        self.registry = ExperimentRegistry(backend, poll_s=poll_s, clock=clock, on_change=self._models_changed)
        self.assigner = Assigner(backend, state_store)
        self._last_model_log = 0.0

    @classmethod
    def open(cls, state_store, holder, file: str | None = None, poll_s: float = 1.0,
             on_store_error: Callable[[str, StoreUnavailable], None] | None = None) -> Experiments:
        """On the live-state store's backend (Redis or this process); `file` declares experiments."""
        exps = cls(backend_for(state_store), holder, state_store, poll_s=poll_s, on_store_error=on_store_error)
        try:
            if file:
                exps.registry.load_file(file)
            else:
                exps.registry.refresh(force=True)
        except StoreUnavailable as e:
            log.error("experiments not loaded at start (%s); retried on the next requests", e.message)
        return exps

    def _models_changed(self, experiments: tuple[Experiment, ...]) -> None:
        now = self.clock()
        refs = {r for e in experiments if e.state(now) in ("running", "scheduled") for r in e.model_refs()}
        self.holder.keep(refs)

    def _failed(self, what: str, e: StoreUnavailable) -> None:
        if self._on_store_error is not None:
            self._on_store_error(what, e)
        else:
            log.warning("%s failed: %s", what, e.message)

    # -- the request path
    def enrol(self, customer_ref, customer_id: str | None, state: CustomerState, context: Context, model,
              consent_default: bool = True) -> Exposure | None:
        """The exposure of this request, or None (champion, no variant)."""
        running = self.registry.running(self.clock())
        if not running or state.erased:
            return None
        consent = state.consent if state.consent is not None else consent_default
        if not consent:
            return None
        unit = unit_of(customer_id, getattr(customer_ref, "identifier_type", None),
                       getattr(customer_ref, "identifier_value", None))
        if unit is None:
            return None
        segment = state.segment or segment_of(model, customer_id)
        exp = next((e for e in running
                    if e.eligibility.admits(context.channel, context.store_id, context.locale, segment)), None)
        if exp is None:
            return None
        pseudos = self.assigner.pseudonyms(exp, unit)
        try:
            name = self.assigner.assign(exp, unit, pseudos)
        except StoreUnavailable as e:
            self._failed("experiment_assignment", e)
            return None
        variant = exp.variant(name)
        served = self.holder.model_for(variant.model) if variant is not None else None
        if served is None:
            now = time.monotonic()
            if now - self._last_model_log > 1.0:
                self._last_model_log = now
                log.error("experiment %s variant %s: model %r is not loaded in this worker; the request gets "
                          "the champion outside the experiment", exp.experiment_id, name,
                          variant.model if variant else None)
            return None
        return Exposure(exp, variant, served, unit, pseudos)

    def shown(self, exposure: Exposure, recommendation_id: str, context: Context, ranking: Ranking) -> None:
        """Record the impression (a failure loses it, never the answer)."""
        at = context.at if context.at is not None else self.clock()
        cid = exposure.unit.customer_id if getattr(self.backend, "keeps_customer_ids", False) else None
        rec = impression_record(recommendation_id, exposure.pseudonyms, exposure.variant.name, context,
                                ranking, at, customer_id=cid)
        try:
            self.backend.record(exposure.experiment.experiment_id, rec)
        except StoreUnavailable as e:
            self._failed("record_impression", e)

    # -- administration
    def create(self, raw) -> Experiment:
        exp = parse_experiment(raw, now=self.clock())
        if exp.status == "stopped":
            raise InvalidExperiment("status: a new experiment cannot be stopped already",
                                    [{"field": "status", "reason": "leave it out (running)"}])
        self._check_models(exp)
        return self.registry.create(exp)

    def _check_models(self, exp: Experiment) -> None:
        refs = exp.model_refs()
        if not refs:
            return
        now = self.clock()
        kept = {r for e in self.registry.current() if e.state(now) in ("running", "scheduled")
                for r in e.model_refs()}
        errors = self.holder.keep(kept | refs)
        bad = [(k, v) for k, v in enumerate(exp.variants) if v.model in errors]
        if bad:
            self.holder.keep(kept)
            raise InvalidExperiment(
                f"variants[{bad[0][0]}].model: {errors[bad[0][1].model]}",
                [{"field": f"variants[{k}].model", "reason": errors[v.model]} for k, v in bad])

    def update(self, experiment_id: str, changes: dict) -> Experiment:
        return self.registry.update(experiment_id, changes)

    def stop(self, experiment_id: str) -> Experiment:
        exp = self.registry.stop(experiment_id)
        try:
            self.report(experiment_id)
            self.backend.retire(experiment_id, exp.attribution_window_hours * HOUR + RETAIN_AFTER_STOP_S)
        except StoreUnavailable as e:
            log.warning("experiment %s stopped; its report snapshot was not saved (%s)", experiment_id, e.message)
        return exp

    def get(self, experiment_id: str) -> Experiment:
        return self.registry.get(experiment_id)

    def list(self) -> list[Experiment]:
        return self.registry.list()

    def report(self, experiment_id: str, price_of: Callable[[str], float | None] | None = None) -> dict:
        """Recomputed from the impressions and the period's events; once the attribution window after
        the end has passed the report is final and kept; after the records expired, the last one kept."""
        exp = self.registry.get(experiment_id)
        now = self.clock()
        saved = self.backend.saved_report(experiment_id)
        if saved is not None and saved.get("final"):
            return saved
        if price_of is None:
            price_of = _prices(self.holder.model)
        design, imp, ev = collect(self.backend, exp, price_of)
        if len(imp) == 0 and saved is not None and exp.status == "stopped":
            return saved  # the records expired after the stop; the snapshot stays
        report = analyse(design, attribute(design, imp, ev), status=exp.state(now), now=now)
        closes = design.closes_at()
        report["final"] = closes is not None and now > closes + design.window_s
        report["definition"] = exp.as_dict()
        self.backend.save_report(experiment_id, report)
        return report


def _prices(model) -> Callable[[str], float | None] | None:
    """Revenue of a purchase sent without `value`: quantity x the catalogue price of the served model."""
    if model is None or getattr(model, "item_price", None) is None:
        return None

    def price_of(item_id: str) -> float | None:
        idx = model.item_index(item_id)
        if idx < 0:
            return None
        p = float(model.item_price[idx])
        return p if math.isfinite(p) else None

    return price_of

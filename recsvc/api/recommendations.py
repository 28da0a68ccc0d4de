"""POST /v1/recommendations: resolve the customer, one store round trip, rank, dump.

The store read is sent first and collected after the customer's model row has scored the catalogue
(`core.ranking.prepare`): the worker computes while Redis answers instead of blocking on it.

Redis down or slow never fails the request: the list comes from the model alone, anonymous (consent
cannot be checked), with `fallback_reason: state_unavailable`.
"""

from __future__ import annotations

import os

from flask import Blueprint, g

from recsvc.api import doc, json_response, read_json, services
from recsvc.core import CustomerState
from recsvc.core.ranking import prepare, rank
from recsvc.core.types import Ranking
from recsvc.http_errors import ModelNotReady, UnknownItemInRequest
from recsvc.schemas.common import ErrorBodySchema
from recsvc.schemas.recommendations import (
    RecommendationRequest,
    RecommendationRequestSchema,
    RecommendationResponseSchema,
)
from recsvc.security import CLERK, STOREFRONT, Principal, allow, principal, require_scope
from recsvc.security import audit as audit_trail
from recsvc.state.base import StoreUnavailable
from recsvc.state.memory import ReadyState

bp = Blueprint("recommendations", __name__)

STATE_UNAVAILABLE = "state_unavailable"
UNKNOWN_IDENTIFIER = "unknown_identifier"


def check_items(model, req) -> None:
    """422 naming the first item of the request the model does not know."""
    ctx, opts = req.context, req.options
    bad = []
    if ctx.item_id is not None and model.item_index(ctx.item_id) < 0:
        bad.append(("context.item_id", ctx.item_id))
    for k, i in enumerate(ctx.cart):
        if model.item_index(i) < 0:
            bad.append((f"context.cart[{k}]", i))
    for k, i in enumerate(opts.exclude):
        if model.item_index(i) < 0:
            bad.append((f"exclude[{k}]", i))
    if bad:
        field, item = bad[0]
        raise UnknownItemInRequest(
            f"{field}: unknown item {item!r} (not in the served model {model.model_id})",
            [{"field": f, "reason": "unknown item"} for f, _ in bad[:20]],
        )


def begin_state(store, customer_id: str | None, store_id: str | None):
    """The store's two-step read when it has one (RedisStore, InMemoryStore), else get_state at once."""
    begin = getattr(store, "begin_state", None)
    if begin is not None:
        return begin(customer_id, store_id)
    return ReadyState(store.get_state(customer_id, store_id))


def render_offers(ranking: Ranking, explain: bool = True) -> list[dict]:
    out = []
    for o in ranking.offers:
        a = o.availability
        out.append(
            {
                "item_id": o.item_id,
                "rank": o.rank,
                "score": o.score,
                "title": o.title,
                "category": o.category,
                "price": o.price,
                "reasons": [{"code": r.code, "text": r.text} for r in o.reasons] if explain else [],
                "availability": None
                if a is None
                else {
                    "store_id": a.store_id,
                    "in_stock": a.in_stock,
                    "quantity": a.quantity,
                    "fulfilment": a.fulfilment,
                },
            }
        )
    return out


@bp.post("/v1/recommendations")
@doc(
    "Ranked offers for a customer in a context",
    tag="recommendations",
    body=RecommendationRequestSchema,
    responses={200: RecommendationResponseSchema, 422: ErrorBodySchema, 503: ErrorBodySchema},
    description="The same selection on every channel: the channel only filters items not sold there. "
    "Unknown or anonymous customers get a non-personalised list with `fallback_reason`. A clerk key "
    "answers only for its own store (`context.store_id`); a clerk's request by identifier is audited.",
)
@allow(STOREFRONT, CLERK)
def recommend():
    svc = services()
    model = svc.holder.model
    if model is None:
        raise ModelNotReady("no model loaded yet; see /readyz")
    req = svc.schemas.recommendation.load_request(read_json())
    g.log_fields = {"channel": req.context.channel}
    require_scope(req.context.store_id, req.context.channel, prefix="context.")
    check_items(model, req)
    payload, g.log_fields = answer(svc, model, req, principal(), g.get("request_id"))
    return json_response(payload)


def answer(svc, model, req: RecommendationRequest, who: Principal | None = None,
           request_id: str | None = None) -> tuple[dict, dict]:
    """The response body for a validated request whose items the model knows, and the request's log
    fields. Shared by the view above and the express lane (recsvc.api.express). A clerk key's request
    by identifier is a customer lookup: it goes to the audit trail before the answer leaves."""
    ctx = req.context
    store = svc.store
    ref = req.customer
    customer_id = None
    override = None
    prepared = None
    try:
        if ref is not None:
            if ref.customer_id is not None:
                customer_id = ref.customer_id
            else:
                customer_id = store.resolve_identifier(ref.identifier_type, ref.identifier_value)
                if customer_id is None:
                    override = UNKNOWN_IDENTIFIER
        pending = begin_state(store, customer_id, ctx.store_id)
        try:
            prepared = prepare(model, customer_id)
        except BaseException:
            pending.cancel()
            raise
        state, stock = pending.result()
    except StoreUnavailable as e:
        svc.store_failed("get_state", e)
        state, stock, override = CustomerState(), None, STATE_UNAVAILABLE
    if who is not None and who.role == CLERK and ref is not None and ref.customer_id is None \
            and override != STATE_UNAVAILABLE:
        audit_trail.record(store, "recommendations.by_identifier", who, customer_id, request_id,
                           "POST /v1/recommendations", identifier_type=ref.identifier_type,
                           found=customer_id is not None, store_id=ctx.store_id)
    exposure = None  # an experiment's variant: its model and options (recsvc.experiments)
    if override != STATE_UNAVAILABLE and svc.experiments is not None:
        exposure = svc.experiments.enrol(ref, customer_id, state, ctx, model, req.options.consent_default)
    ranked_by, options = (exposure.model, exposure.options(req.options)) if exposure else (model, req.options)
    ranking = rank(ranked_by, state, ctx, options, stock=stock, prepared=prepared)
    fallback = ranking.fallback_reason if override is None or ranking.personalised else override
    svc.metrics.served(ranking.strategy, fallback)
    fields = {"channel": ctx.channel, "strategy": ranking.strategy, "customer_id": customer_id,
              "fallback_reason": fallback}
    rid = "r-" + os.urandom(16).hex()  # 32 random hex digits, as uuid4().hex without building a UUID
    if exposure is not None:
        svc.experiments.shown(exposure, rid, ctx, ranking)
        fields.update(experiment_id=exposure.experiment.experiment_id, variant=exposure.variant.name)
    return {
        "recommendation_id": rid,
        "model_id": ranked_by.model_id,
        "customer_id": customer_id,
        "personalised": ranking.personalised,
        "strategy": ranking.strategy,
        "variant": exposure.variant.name if exposure else None,
        "experiment_id": exposure.experiment.experiment_id if exposure else None,
        "items": render_offers(ranking, req.options.explain),
        "fallback_reason": fallback,
    }, fields

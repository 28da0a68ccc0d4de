"""POST /v1/recommendations: resolve the customer, one store round trip, rank, dump.

Redis down or slow never fails the request: the list comes from the model alone, anonymous (consent
cannot be checked), with `fallback_reason: state_unavailable`.
"""

from __future__ import annotations

import uuid

from flask import Blueprint, g

from recsvc.api import doc, json_response, read_json, services
from recsvc.core import CustomerState
from recsvc.core.ranking import rank
from recsvc.core.types import Ranking
from recsvc.http_errors import ModelNotReady, UnknownItemInRequest
from recsvc.schemas.common import ErrorBodySchema
from recsvc.schemas.recommendations import RecommendationRequestSchema, RecommendationResponseSchema
from recsvc.state.base import StoreUnavailable

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
    "Unknown or anonymous customers get a non-personalised list with `fallback_reason`.",
)
def recommend():
    svc = services()
    model = svc.holder.model
    if model is None:
        raise ModelNotReady("no model loaded yet; see /readyz")
    req = svc.schemas.recommendation.load(read_json())
    ctx = req.context
    g.log_fields = {"channel": ctx.channel}
    check_items(model, req)
    store = svc.store
    ref = req.customer
    customer_id = None
    override = None
    try:
        if ref is not None:
            if ref.customer_id is not None:
                customer_id = ref.customer_id
            else:
                customer_id = store.resolve_identifier(ref.identifier_type, ref.identifier_value)
                if customer_id is None:
                    override = UNKNOWN_IDENTIFIER
        state, stock = store.get_state(customer_id, ctx.store_id)
    except StoreUnavailable as e:
        svc.store_failed("get_state", e)
        state, stock, override = CustomerState(), None, STATE_UNAVAILABLE
    ranking = rank(model, state, ctx, req.options, stock=stock)
    fallback = ranking.fallback_reason if override is None or ranking.personalised else override
    svc.metrics.served(ranking.strategy, fallback)
    g.log_fields.update(strategy=ranking.strategy, customer_id=customer_id, fallback_reason=fallback)
    return json_response(
        {
            "recommendation_id": "r-" + uuid.uuid4().hex,
            "model_id": model.model_id,
            "customer_id": customer_id,
            "personalised": ranking.personalised,
            "strategy": ranking.strategy,
            "variant": None,
            "items": render_offers(ranking, req.options.explain),
            "fallback_reason": fallback,
        }
    )

"""GET /v1/items/{item_id}/similar: items like one the customer looks at or holds."""

from __future__ import annotations

from flask import Blueprint, g, request

from recsvc.api import doc, json_response, services
from recsvc.api.recommendations import render_offers
from recsvc.core import Context, RankOptions
from recsvc.core.ranking import similar
from recsvc.http_errors import ModelNotReady, ResourceNotFound
from recsvc.schemas.common import ErrorBodySchema
from recsvc.schemas.items import SimilarQuerySchema, SimilarResponseSchema
from recsvc.security import CLERK, STOREFRONT, allow, require_scope
from recsvc.state.base import StoreUnavailable

bp = Blueprint("items", __name__)


@bp.get("/v1/items/<item_id>/similar")
@doc(
    "Items similar to one item",
    tag="items",
    query=SimilarQuerySchema,
    responses={200: SimilarResponseSchema, 404: ErrorBodySchema, 422: ErrorBodySchema, 503: ErrorBodySchema},
    description="A clerk key answers only for its own store (`store_id`).",
)
@allow(STOREFRONT, CLERK)
def similar_items(item_id: str):
    svc = services()
    model = svc.holder.model
    if model is None:
        raise ModelNotReady("no model loaded yet; see /readyz")
    q = svc.schemas.similar_query.load(request.args.to_dict(flat=True))
    g.log_fields = {"channel": q["channel"]}
    require_scope(q["store_id"], q["channel"])
    if model.item_index(item_id) < 0:
        raise ResourceNotFound(
            f"unknown item {item_id!r} (not in the served model {model.model_id})",
            [{"field": "item_id", "reason": "unknown item"}],
        )
    ctx = Context(
        channel=q["channel"], store_id=q["store_id"], locale=q["locale"], page="product", item_id=item_id
    )
    stock = None
    if q["store_id"] is not None:
        try:
            _, stock = svc.store.get_state(None, q["store_id"])
        except StoreUnavailable as e:
            svc.store_failed("get_state", e)
    ranking = similar(model, item_id, ctx, RankOptions(n=q["n"], max_per_category=None), stock=stock)
    return json_response({"item_id": item_id, "model_id": model.model_id, "items": render_offers(ranking)})

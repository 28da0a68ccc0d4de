"""PUT/GET /v1/stores/{store_id}/stock: live stock per store, kept in the state store."""

from __future__ import annotations

from flask import Blueprint, g, request

from recsvc.api import doc, json_response, read_json, services
from recsvc.http_errors import ModelNotReady, ResourceNotFound, UnknownItemInRequest
from recsvc.schemas.common import ID_MAX, ErrorBodySchema
from recsvc.schemas.stores import (
    StockQuerySchema,
    StockResponseSchema,
    StockUpdateResponseSchema,
    StockUpdateSchema,
)
from recsvc.security import CLERK, allow, require_scope

bp = Blueprint("stores", __name__)


def _store_id(store_id: str) -> str:
    if len(store_id) > ID_MAX or any(ord(c) < 32 or ord(c) == 127 for c in store_id):
        raise ResourceNotFound(
            "no such store id (at most 128 printable characters)",
            [{"field": "store_id", "reason": "not a valid id"}],
        )
    return store_id


def _unknown(model, item_ids: list[str], field) -> None:
    bad = [(k, i) for k, i in enumerate(item_ids) if model.item_index(i) < 0]
    if bad:
        k, item = bad[0]
        raise UnknownItemInRequest(
            f"{field(k)}: unknown item {item!r} (not in the served model {model.model_id})",
            [{"field": field(j), "reason": "unknown item"} for j, _ in bad[:20]],
        )


@bp.put("/v1/stores/<store_id>/stock")
@doc(
    "Set a store's stock",
    tag="stores",
    body=StockUpdateSchema,
    responses={200: StockUpdateResponseSchema, 422: ErrorBodySchema, 503: ErrorBodySchema},
    description="Quantities of the listed items in the store; from the first write on, the store's live "
    "stock replaces the snapshot the model was trained with (items never written count as 0).",
)
@allow()
def put_stock(store_id: str):
    svc = services()
    store_id = _store_id(store_id)
    model = svc.holder.model
    if model is None:
        raise ModelNotReady("no model loaded yet: item ids cannot be checked; see /readyz")
    body = svc.schemas.stock_update.load(read_json())
    lines = body["items"]
    _unknown(model, [x["item_id"] for x in lines], lambda k: f"items[{k}].item_id")
    version = svc.store.set_stock(
        store_id, {x["item_id"]: x["quantity"] for x in lines}, replace=body["replace"]
    )
    g.log_fields = {"store_id": store_id, "lines": len(lines)}
    return json_response({"store_id": store_id, "updated": len(lines), "version": version})


@bp.get("/v1/stores/<store_id>/stock")
@doc(
    "Read a store's stock",
    tag="stores",
    query=StockQuerySchema,
    responses={200: StockResponseSchema, 404: ErrorBodySchema, 422: ErrorBodySchema, 503: ErrorBodySchema},
    description="A clerk key reads its own store's stock only.",
)
@allow(CLERK)
def get_stock(store_id: str):
    svc = services()
    store_id = _store_id(store_id)
    require_scope(store_id, None)
    q = svc.schemas.stock_query.load({"item_id": request.args.getlist("item_id")})
    wanted = q["item_id"] or None
    live = svc.store.get_stock(store_id, wanted)
    if live is not None:
        items = live
        source = "live"
    else:
        model = svc.holder.model
        if model is None:
            raise ModelNotReady("no model loaded yet; see /readyz")
        s = model.store_index(store_id)
        if s < 0:
            raise ResourceNotFound(
                f"no stock known for store {store_id!r} (neither live nor in the model)",
                [{"field": "store_id", "reason": "unknown store"}],
            )
        rows, qty = model.stock_of(s)
        snapshot = {str(model.item_ids[r]): int(x) for r, x in zip(rows, qty)}
        items = snapshot if wanted is None else {i: snapshot.get(i, 0) for i in wanted}
        source = "model"
    return json_response(
        {
            "store_id": store_id,
            "source": source,
            "items": [{"item_id": k, "quantity": v} for k, v in sorted(items.items())],
        }
    )

"""/healthz (the process answers), /readyz (a model is loaded and the store answers), /metrics."""

from __future__ import annotations

from flask import Blueprint, Response

from recsvc.api import doc, json_response, services
from recsvc.http_errors import error_response
from recsvc.schemas.health import HealthSchema, NotReadySchema, ReadySchema
from recsvc.state.base import StoreUnavailable

bp = Blueprint("health", __name__)


@bp.get("/healthz")
@doc("The process is up", tag="operations", responses={200: HealthSchema})
def healthz():
    return json_response({"status": "ok"})


@bp.get("/readyz")
@doc(
    "Ready to serve: a model is loaded and the state store answers",
    tag="operations",
    responses={200: ReadySchema, 503: NotReadySchema},
)
def readyz():
    svc = services()
    model = svc.holder.model
    try:
        svc.store.ping()
        store = "ok"
    except StoreUnavailable as e:
        store = e.message
    body = {
        "ready": model is not None and store == "ok",
        "model_id": model.model_id if model is not None else None,
        "store": store,
        "last_error": svc.holder.last_error,
    }
    if body["ready"]:
        return json_response(body)
    why = []
    if model is None:
        why.append(f"no model loaded ({svc.holder.last_error or 'loading'})")
    if store != "ok":
        why.append(f"state store: {store}")
    return error_response(503, "not_ready", "; ".join(why), extra=body)


@bp.get("/metrics")
@doc("Prometheus metrics", tag="operations", responses={200: "text/plain exposition format"})
def metrics():
    data, ctype = services().metrics.exposition()
    return Response(data, mimetype=ctype.split(";")[0], content_type=ctype)

"""GET /v1/models, GET /v1/models/current, POST /v1/models/reload."""

from __future__ import annotations

import os

from flask import Blueprint, g

from recsvc.api import doc, json_response, read_json, services
from recsvc.artifact.manifest import Manifest
from recsvc.errors import ArtifactError, RegistryError
from recsvc.http_errors import ModelNotReady, ModelRefused
from recsvc.schemas.common import ErrorBodySchema
from recsvc.schemas.models import (
    ModelListSchema,
    ModelSummarySchema,
    ReloadRequestSchema,
    ReloadResponseSchema,
)
from recsvc.security import ANALYST, allow

bp = Blueprint("models", __name__)


@bp.get("/v1/models")
@doc("Models in the registry, with their aliases", tag="models", responses={200: ModelListSchema})
@allow(ANALYST)
def list_models():
    holder = services().holder
    reg = holder.registry
    aliases = reg.aliases()
    serving = holder.model.model_id if holder.model is not None else None
    out = []
    for mid in reg.model_ids():
        entry = {
            "model_id": mid,
            "aliases": sorted(a for a, t in aliases.items() if t == mid),
            "serving": mid == serving,
        }
        try:
            m = Manifest.read(os.path.join(reg.models_dir, mid))
            entry.update(learner=m.learner, created_at=m.created_at, metrics=m.metrics.get("overall"))
        except (ArtifactError, RegistryError) as e:
            entry["error"] = e.message
        out.append(entry)
    return json_response({"models": out, "aliases": aliases, "serving": serving})


@bp.get("/v1/models/current")
@doc("The model this worker serves", tag="models", responses={200: ModelSummarySchema, 503: ErrorBodySchema})
@allow(ANALYST)
def current_model():
    holder = services().holder
    if holder.model is None:
        raise ModelNotReady(f"no model loaded yet: {holder.last_error or 'loading'}")
    return json_response(holder.summary())


@bp.post("/v1/models/reload")
@doc(
    "Load a model and swap it in",
    tag="models",
    body=ReloadRequestSchema,
    body_required=False,
    responses={200: ReloadResponseSchema, 404: ErrorBodySchema, 409: ErrorBodySchema, 422: ErrorBodySchema},
    description="The model is verified (checksums, a test ranking) before an atomic swap; requests in "
    "flight finish on the model they started with. A refused model (409) leaves the "
    "previous one serving. The other workers of this server follow within RECSVC_RELOAD_POLL_S.",
)
@allow(ANALYST)
def reload_model():
    svc = services()
    body = svc.schemas.reload.load(read_json(optional=True) or {})
    try:
        old, new, changed = svc.holder.reload(body["model"])
    except ArtifactError as e:
        svc.metrics.reloads.labels("refused").inc()
        raise ModelRefused(
            f"model refused, still serving "
            f"{svc.holder.model.model_id if svc.holder.model else 'nothing'}: {e.message}",
            [{"field": "model", "reason": e.message}],
        ) from None
    except RegistryError:
        svc.metrics.reloads.labels("refused").inc()
        raise
    svc.metrics.reloads.labels("ok" if changed else "unchanged").inc()
    g.log_fields = {"model_id": new, "previous_model_id": old}
    return json_response(
        {"model_id": new, "previous_model_id": old, "changed": changed, "ref": svc.holder.ref}
    )

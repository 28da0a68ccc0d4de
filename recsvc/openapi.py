"""/openapi.json, generated at start from the routed views and the same marshmallow schemas that
validate requests: each view carries its facts (`recsvc.api.doc`), paths and methods come from the
app's URL map, so nothing is written twice by hand."""

from __future__ import annotations

import re

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Flask

from recsvc import __version__
from recsvc.schemas.common import ID_MAX, ErrorBodySchema

DESCRIPTION = (
    "Omnichannel recommendations: one model, the same selection on every channel (web, app, store, "
    'call centre). Every error answers `{"error": {"code", "message", "details": [{"field", '
    '"reason"}]}, "request_id"}`; every response carries an `X-Request-ID` header. Every /v1/ request '
    "carries an API key, `Authorization: Bearer <key>` (made with `recsvc keys create --role ROLE`): 401 "
    "without a valid one, 403 when the key's role may not call the operation or the request's store or "
    "channel is outside the key's bindings, 429 with `Retry-After` over the key's rate limit. Each "
    "operation names the roles it allows."
)
SECURITY_SCHEME = {"type": "http", "scheme": "bearer",
                   "description": "an API key: `rk_<id>_<secret>` from `recsvc keys create`"}
AUTH_ERRORS = {
    "401": "no valid API key (missing, malformed, unknown or revoked); `WWW-Authenticate: Bearer`",
    "403": "the key's role may not call this, or the store/channel is outside the key's bindings",
    "429": "the key's rate limit is reached; `Retry-After` says when to retry",
}
SKIP_METHODS = {"HEAD", "OPTIONS"}


def _path(rule: str) -> str:
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def _content(schema) -> dict:
    return {"application/json": {"schema": schema}}


def _param_schema(converter) -> dict:
    """A path segment's schema; an `<any(a, b):name>` segment routes only its listed values."""
    items = getattr(converter, "items", None)
    if items:
        return {"type": "string", "enum": sorted(items)}
    return {"type": "string", "minLength": 1, "maxLength": ID_MAX}


def _operation(meta: dict, arguments: list[str], has_body: bool, converters: dict | None = None) -> dict:
    op: dict = {"summary": meta["summary"], "tags": [meta["tag"]], "operationId": None, "responses": {}}
    if meta["description"]:
        op["description"] = meta["description"]
    params = [
        {
            "name": a,
            "in": "path",
            "required": True,
            "schema": _param_schema((converters or {}).get(a)),
        }
        for a in arguments
    ]
    if meta["query"] is not None:
        params.append({"in": "query", "schema": meta["query"]})
    if params:
        op["parameters"] = params
    if has_body:
        op["requestBody"] = {"required": meta["body_required"], "content": _content(meta["body"])}
    for status, what in sorted(meta["responses"].items()):
        if isinstance(what, str):
            op["responses"][str(status)] = {
                "description": what,
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        else:
            name = what.__name__.removesuffix("Schema") if isinstance(what, type) else type(what).__name__
            op["responses"][str(status)] = {"description": name, "content": _content(what)}
    errors = {"404": "unknown resource", "405": "method not allowed"}
    if has_body:
        errors.update(
            {
                "400": "invalid JSON",
                "413": "body too large",
                "415": "not application/json",
                "422": "invalid field (see error.details)",
            }
        )
    if meta["query"] is not None:
        errors["422"] = "invalid field (see error.details)"
    for status, text in errors.items():
        op["responses"].setdefault(status, {"description": text, "content": _content(ErrorBodySchema)})
    roles = meta.get("roles")
    if roles is not None:
        op["security"] = [{"bearerAuth": []}]
        who = ", ".join(r for r in ("storefront", "clerk", "analyst", "admin") if r in roles)
        op["description"] = (op.get("description", "") + f" Roles: {who}.").strip()
        for status, text in AUTH_ERRORS.items():
            op["responses"].setdefault(status, {"description": text, "content": _content(ErrorBodySchema)})
        op["responses"]["429"]["headers"] = {"Retry-After": {"schema": {"type": "integer"},
                                                             "description": "seconds"}}
    op["responses"]["default"] = {"description": "any other error", "content": _content(ErrorBodySchema)}
    return op


def build_spec(app: Flask) -> dict:
    spec = APISpec(
        title="recsvc",
        version=__version__,
        openapi_version="3.0.3",
        plugins=[MarshmallowPlugin()],
        info={"description": DESCRIPTION},
    )
    spec.components.schema("ErrorBody", schema=ErrorBodySchema)
    spec.components.security_scheme("bearerAuth", SECURITY_SCHEME)
    paths: dict[str, dict] = {}
    for rule in app.url_map.iter_rules():
        view = app.view_functions.get(rule.endpoint)
        meta = getattr(view, "_openapi", None)
        if meta is None:
            continue
        ops = paths.setdefault(_path(rule.rule), {})
        for method in sorted((rule.methods or set()) - SKIP_METHODS):
            facts = meta
            if rule.rule.startswith("/v1/"):
                from recsvc.security.policy import roles_of

                facts = {**meta, "roles": roles_of(view)}
            op = _operation(facts, sorted(rule.arguments), meta["body"] is not None,
                            getattr(rule, "_converters", None))
            op["operationId"] = f"{method.lower()}_{rule.endpoint.replace('.', '_')}"
            ops[method.lower()] = op
    for path in sorted(paths):
        spec.path(path=path, operations=paths[path])
    return spec.to_dict()

"""HTTP blueprints, one per resource. Views are thin: parse with a schema, call the core or the
store, dump. Helpers here: the app's services, JSON in/out, and the `doc` decorator that the OpenAPI
generator (recsvc.openapi) reads, so each path is documented where it is routed."""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson
from flask import Response, current_app, g, request

from recsvc.http_errors import InvalidJson, UnsupportedMediaType, ValidationFailed

if TYPE_CHECKING:
    from recsvc.app import Services


def services() -> Services:
    return current_app.extensions["recsvc"]


def doc(
    summary: str,
    *,
    tag: str,
    body=None,
    query=None,
    responses: dict | None = None,
    description: str | None = None,
    body_required: bool = True,
):
    """Attach OpenAPI facts to a view: request body schema, query schema, {status: schema or text}."""

    def wrap(view):
        view._openapi = {
            "summary": summary,
            "tag": tag,
            "body": body,
            "query": query,
            "responses": responses or {},
            "description": description,
            "body_required": body_required,
        }
        return view

    return wrap


def read_json(optional: bool = False) -> dict | None:
    """The request body as a JSON object (400 invalid JSON, 413 too large, 415 not JSON)."""
    mimetype = request.mimetype
    if mimetype and mimetype != "application/json" and not mimetype.endswith("+json"):
        raise UnsupportedMediaType(f"send the body as application/json, not {mimetype}")
    data = request.get_data(cache=False)
    if not data or not data.strip():
        if optional:
            return None
        raise InvalidJson("the request body is empty: send a JSON object")
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise InvalidJson(
            f"the request body is not valid JSON: {e}", [{"field": "body", "reason": str(e)}]
        ) from None
    if not isinstance(body, dict):
        raise ValidationFailed(
            "the request body must be a JSON object",
            [{"field": "body", "reason": f"expected an object, got {type(body).__name__}"}],
        )
    return body


def json_response(obj, status: int = 200) -> Response:
    return Response(orjson.dumps(obj), status=status, mimetype="application/json")


def note(**fields) -> None:
    """Fields for this request's log line (channel, strategy, customer_id: the internal id only)."""
    g.log_fields = {**getattr(g, "log_fields", {}), **fields}

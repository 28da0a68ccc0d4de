"""Every HTTP error in the contract's shape, never HTML:

    {"error": {"code": "...", "message": "...", "details": [{"field": "...", "reason": "..."}]},
     "request_id": "..."}

Views raise named errors (subclasses of RecsvcError with a status and a stable snake_case code);
`register(app)` turns those, marshmallow ValidationError, the core's UnknownItem and werkzeug's own
HTTP errors (404, 405, 413 ...) into that body. An unexpected exception is logged with its traceback
and answered 500 `internal_error`, so the cause is kept in the log, never hidden.
"""

from __future__ import annotations

import logging

import orjson
from flask import Flask, Response, current_app, g, request
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException

from recsvc.core.errors import UnknownItem
from recsvc.errors import RecsvcError, RegistryError, StoreUnavailable

log = logging.getLogger("recsvc.http")

HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    408: "request_timeout",
    409: "conflict",
    411: "length_required",
    413: "body_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    431: "headers_too_large",
    500: "internal_error",
    501: "not_implemented",
    503: "unavailable",
}


class ApiError(RecsvcError):
    """An error a view answers on purpose."""

    status = 400
    code = "bad_request"


class InvalidJson(ApiError):
    status = 400
    code = "invalid_json"


class UnsupportedMediaType(ApiError):
    status = 415
    code = "unsupported_media_type"


class ValidationFailed(ApiError):
    status = 422
    code = "validation_error"


class UnknownItemInRequest(ValidationFailed):
    """An item id in the request body (context.item_id, cart, exclude, stock lines) the model lacks."""

    code = "unknown_item"


class ResourceNotFound(ApiError):
    status = 404
    code = "not_found"


class ModelNotReady(ApiError):
    status = 503
    code = "model_not_ready"


class ModelRefused(ApiError):
    """A model that failed verification on reload; the previous one keeps serving."""

    status = 409
    code = "model_refused"


def error_response(
    status: int,
    code: str,
    message: str,
    details: list | None = None,
    headers: dict | None = None,
    extra: dict | None = None,
) -> Response:
    """The contract's error body; `extra` adds top-level fields (e.g. /readyz's readiness facts)."""
    body = {
        "error": {"code": code, "message": message, "details": details or []},
        "request_id": getattr(g, "request_id", None) or "-",
        **(extra or {}),
    }
    resp = Response(orjson.dumps(body), status=status, mimetype="application/json")
    if headers:
        resp.headers.update(headers)
    return resp


def _path(prefix: str, key) -> str:
    if isinstance(key, int):
        return f"{prefix}[{key}]"
    if key == "_schema":
        return prefix
    return f"{prefix}.{key}" if prefix else str(key)


def flatten(messages, prefix: str = "") -> list[dict]:
    """marshmallow's nested messages -> [{"field": "context.cart[2]", "reason": "..."}]."""
    out: list[dict] = []
    if isinstance(messages, dict):
        for k, v in messages.items():
            out += flatten(v, _path(prefix, k))
    elif isinstance(messages, (list, tuple)):
        if all(isinstance(m, str) for m in messages):
            out += [{"field": prefix or "body", "reason": m} for m in messages]
        else:
            for m in messages:
                out += flatten(m, prefix)
    else:
        out.append({"field": prefix or "body", "reason": str(messages)})
    return out


def validation_failed(err: ValidationError, prefix: str = "") -> ValidationFailed:
    details = flatten(err.messages, prefix)
    first = details[0] if details else {"field": "body", "reason": "invalid"}
    more = f" (and {len(details) - 1} more)" if len(details) > 1 else ""
    return ValidationFailed(f"{first['field']}: {first['reason']}{more}", details)


def unknown_item(err: UnknownItem) -> UnknownItemInRequest:
    return UnknownItemInRequest(
        f"{err.field}: unknown item {err.item_id!r} (not in the served model)",
        [{"field": err.field, "reason": "unknown item"}],
    )


def register(app: Flask) -> None:
    @app.errorhandler(RecsvcError)
    def _named(e: RecsvcError):
        status = getattr(e, "status", 500) or 500
        headers = getattr(e, "headers", None)  # WWW-Authenticate of a 401, Retry-After of a 429
        if isinstance(e, StoreUnavailable):
            headers = {"Retry-After": "1"}
            current_app.extensions["recsvc"].store_failed(request.endpoint or "-", e)
        if status >= 500:
            log.error("%s: %s", e.code, e.message)
        return error_response(status, e.code, e.message, e.details, headers)

    @app.errorhandler(RegistryError)
    def _registry(e: RegistryError):
        code = e.code if e.code != "registry_error" else "unknown_model"
        return error_response(e.status, code, e.message, e.details)

    @app.errorhandler(ValidationError)
    def _invalid(e: ValidationError):
        return _named(validation_failed(e))

    @app.errorhandler(UnknownItem)
    def _unknown_item(e: UnknownItem):
        return _named(unknown_item(e))

    @app.errorhandler(HTTPException)
    def _http(e: HTTPException):
        status = e.code or 500
        code = HTTP_CODES.get(status, f"http_{status}")
        message = e.description or e.name
        if status == 404:
            message = "no such resource; see /openapi.json for the API"
        elif status == 413:
            message = f"request body larger than the {app.config.get('MAX_CONTENT_LENGTH')} bytes accepted"
        headers = {k: v for k, v in e.get_headers() if k.lower() in ("allow", "retry-after")}
        return error_response(status, code, message, [], headers)

    @app.errorhandler(Exception)
    def _unexpected(e: Exception):
        log.exception("unhandled %s while serving the request", type(e).__name__)
        return error_response(500, "internal_error", "internal error; the request_id finds it in the log")


def server_error_body(status: int, message: str) -> bytes:
    """The contract's error body for errors the HTTP server answers before the app runs (request line
    too long, bad headers): used by the development server's handler and gunicorn.conf.py."""
    import uuid

    return orjson.dumps(
        {
            "error": {"code": HTTP_CODES.get(status, f"http_{status}"), "message": message, "details": []},
            "request_id": uuid.uuid4().hex,
        }
    )

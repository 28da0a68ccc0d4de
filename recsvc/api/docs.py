"""/openapi.json and /docs: Swagger UI served from the `swagger-ui-bundle` package (no CDN, works
offline); without that package, a plain HTML page rendered from the same OpenAPI document."""

from __future__ import annotations

import html
import os

from flask import Blueprint, Response, abort, send_from_directory

from recsvc.api import json_response, services

bp = Blueprint("docs", __name__)

SWAGGER_FILES = (
    "swagger-ui.css",
    "swagger-ui-bundle.js",
    "swagger-ui-standalone-preset.js",
    "favicon-32x32.png",
    "favicon-16x16.png",
)
PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>recsvc API</title>
<link rel="stylesheet" href="/docs/static/swagger-ui.css">
<link rel="icon" type="image/png" href="/docs/static/favicon-32x32.png"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/static/swagger-ui-bundle.js"></script>
<script src="/docs/init.js"></script></body></html>
"""
INIT_JS = """window.onload = function () {
  window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true,
                               presets: [SwaggerUIBundle.presets.apis]});
};
"""


def swagger_dir() -> str | None:
    try:
        import swagger_ui_bundle
    except ImportError:
        return None
    d = getattr(swagger_ui_bundle, "swagger_ui_path", None)
    return d if d and os.path.isfile(os.path.join(d, "swagger-ui-bundle.js")) else None


def static_page(spec: dict) -> str:
    """The OpenAPI document as plain HTML: one section per operation."""
    esc = html.escape
    rows = []
    for path, ops in spec.get("paths", {}).items():
        for method, op in ops.items():
            codes = ", ".join(k for k in op.get("responses", {}))
            rows.append(
                f"<h2><code>{esc(method.upper())} {esc(path)}</code></h2><p>{esc(op.get('summary', ''))}</p>"
                f"<p>{esc(op.get('description', ''))}</p><p>Responses: {esc(codes)}</p>"
            )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>recsvc API</title></head>'
        f"<body><h1>{esc(spec['info']['title'])} {esc(spec['info']['version'])}</h1>"
        f'<p>{esc(spec["info"].get("description", ""))}</p><p><a href="/openapi.json">openapi.json</a></p>'
        + "".join(rows)
        + "</body></html>"
    )


@bp.get("/openapi.json")
def openapi_json():
    return json_response(services().openapi)


@bp.get("/docs")
@bp.get("/docs/")
def docs_page():
    if swagger_dir() is None:
        return Response(static_page(services().openapi), mimetype="text/html")
    return Response(PAGE, mimetype="text/html")


@bp.get("/docs/init.js")
def docs_init():
    return Response(INIT_JS, mimetype="text/javascript")


@bp.get("/docs/static/<name>")
def docs_static(name: str):
    d = swagger_dir()
    if d is None or name not in SWAGGER_FILES:
        abort(404)
    return send_from_directory(d, name, max_age=86400)

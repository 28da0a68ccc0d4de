"""/openapi.json is generated from the routed views and the validating schemas; /docs works offline."""

from __future__ import annotations

import re

import schemathesis


def test_every_api_route_is_documented(client, app):
    spec = client.get("/openapi.json").get_json()
    assert spec["openapi"].startswith("3.0")
    documented = {(p, m.upper()) for p, ops in spec["paths"].items() for m in ops}
    routed = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith(("/v1/", "/healthz", "/readyz", "/metrics")):
            path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
            routed |= {(path, m) for m in rule.methods - {"HEAD", "OPTIONS"}}
    assert routed == documented


def test_request_schemas_come_from_the_validating_schemas(client):
    spec = client.get("/openapi.json").get_json()
    schemas = spec["components"]["schemas"]
    req = schemas["RecommendationRequest"]
    assert req["required"] == ["context"]
    assert req["properties"]["n"] == {"type": "integer", "default": 10, "minimum": 1, "maximum": 100}
    ctx = schemas["Context"]
    assert ctx["properties"]["channel"]["enum"] == ["web", "app", "store", "call_center"]
    op = spec["paths"]["/v1/recommendations"]["post"]
    assert op["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/RecommendationRequest"
    }
    for status in ("200", "400", "413", "415", "422", "503", "default"):
        assert status in op["responses"]
    assert op["responses"]["422"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorBody"
    }
    similar = spec["paths"]["/v1/items/{item_id}/similar"]["get"]
    assert {p["name"] for p in similar["parameters"]} == {"item_id", "n", "channel", "store_id", "locale"}


def test_the_document_is_valid_openapi(client):
    spec = client.get("/openapi.json").get_json()
    schema = schemathesis.openapi.from_dict(spec)  # validates the document against the OpenAPI 3.0 schema
    ops = [op for op in schema.get_all_operations()]
    assert len(ops) == sum(len(v) for v in spec["paths"].values())
    assert all(op.ok() for op in ops)


def test_docs_page_is_served_without_internet(client):
    r = client.get("/docs")
    assert r.status_code == 200 and r.mimetype == "text/html"
    page = r.get_data(as_text=True)
    assert "http://" not in page and "https://" not in page and "<script>" not in page
    for src in re.findall(r'(?:src|href)="([^"]+)"', page):
        with client.get(src) as asset:
            assert asset.status_code == 200 and len(asset.get_data()) > 100, src
    assert client.get("/docs/static/../../app.py").status_code == 404
    assert client.get("/docs/static/index.html").status_code == 404

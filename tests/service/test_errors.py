"""Bad input of every kind gets a 4xx in the contract's error shape; nothing answers 500 or HTML."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

URL = "/v1/recommendations"


def error_of(resp, status: int) -> dict:
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.mimetype == "application/json"
    js = resp.get_json()
    assert set(js) >= {"error", "request_id"} and js["request_id"] == resp.headers["X-Request-ID"]
    e = js["error"]
    assert isinstance(e["code"], str) and e["code"] and isinstance(e["message"], str) and e["message"]
    assert isinstance(e["details"], list)
    assert all(set(d) == {"field", "reason"} for d in e["details"])
    return e


def fields_of(e: dict) -> list[str]:
    return [d["field"] for d in e["details"]]


def raw(client, data, content_type="application/json", method="post", url=URL):
    return getattr(client, method)(url, data=data, content_type=content_type)


def test_invalid_json_is_400(client):
    for data in (
        b'{"customer": {"customer_id": ',
        b"",
        b"   ",
        b"\xff\xfe",
        b'{"a": NaN}',
        b'"\\ud800"',
        b"[" * 5000 + b"]" * 5000,
    ):
        e = error_of(raw(client, data), 400)
        assert e["code"] == "invalid_json"


def test_body_not_an_object_is_422(client):
    for data in (b"[]", b"1", b'"x"', b"null", b"[{}]"):
        e = error_of(raw(client, data), 422)
        assert fields_of(e) == ["body"]


def test_body_too_large_is_413(make_app):
    client = make_app(max_body_bytes=4096).test_client()
    e = error_of(raw(client, b'{"x": "' + b"a" * 10_000_000 + b'"}'), 413)
    assert e["code"] == "body_too_large"


def test_default_limit_refuses_a_10_mb_body(client):
    error_of(raw(client, b" " * 10_000_000), 413)


def test_not_json_content_type_is_415(client):
    e = error_of(raw(client, b"context=web", content_type="application/x-www-form-urlencoded"), 415)
    assert e["code"] == "unsupported_media_type"


def test_unknown_route_and_method(client):
    e = error_of(client.get("/v2/nothing"), 404)
    assert e["code"] == "not_found"
    r = client.get(URL)
    error_of(r, 405)
    assert "POST" in r.headers["Allow"]
    error_of(client.get("/clerk/no-such-file.js"), 404)  # JSON, even under the clerk page


@pytest.mark.parametrize(
    "body, field",
    [
        ({"context": {"channel": "fax"}}, "context.channel"),
        ({"context": {}}, "context.channel"),
        ({}, "context"),
        ({"context": None}, "context"),
        ({"context": []}, "context"),
        ({"context": {"channel": "web"}, "n": 0}, "n"),
        ({"context": {"channel": "web"}, "n": 10**9}, "n"),
        ({"context": {"channel": "web"}, "n": 10**30}, "n"),
        ({"context": {"channel": "web"}, "n": "10"}, "n"),
        ({"context": {"channel": "web"}, "n": 1.5}, "n"),
        ({"context": {"channel": "web"}, "n": None}, "n"),
        ({"context": {"channel": "web"}, "n": True}, "n"),
        ({"context": {"channel": "web"}, "customer": {}}, "customer.customer_id"),
        (
            {
                "context": {"channel": "web"},
                "customer": {"customer_id": "c1", "identifier": {"type": "device", "value": "d"}},
            },
            "customer.customer_id",
        ),
        ({"context": {"channel": "web"}, "customer": {"customer_id": 42}}, "customer.customer_id"),
        ({"context": {"channel": "web"}, "customer": {"customer_id": ""}}, "customer.customer_id"),
        ({"context": {"channel": "web"}, "customer": {"customer_id": "a\x00b"}}, "customer.customer_id"),
        ({"context": {"channel": "web"}, "customer": {"customer_id": "x" * 129}}, "customer.customer_id"),
        (
            {"context": {"channel": "web"}, "customer": {"identifier": {"type": "passport", "value": "x"}}},
            "customer.identifier.type",
        ),
        (
            {
                "context": {"channel": "web"},
                "customer": {"identifier": {"type": "email_sha256", "value": "a@b.c"}},
            },
            "customer.identifier.value",
        ),
        ({"context": {"channel": "web", "cart": "i00001"}}, "context.cart"),
        ({"context": {"channel": "web", "cart": [1, 2]}}, "context.cart[0]"),
        ({"context": {"channel": "web", "at": "yesterday"}}, "context.at"),
        ({"context": {"channel": "web", "locale": "français"}}, "context.locale"),
        ({"context": {"channel": "web"}, "filters": {"max_price": -1}}, "filters.max_price"),
        ({"context": {"channel": "web"}, "filters": {"max_price": 1e308 * 10}}, "filters.max_price"),
        ({"context": {"channel": "web"}, "filters": {"min_price": 50, "max_price": 10}}, "filters.min_price"),
        ({"context": {"channel": "web"}, "exclude": ["i00001"] * 1001}, "exclude"),
        ({"context": {"channel": "web"}, "chanel": "web"}, "chanel"),
    ],
)
def test_validation_errors_name_the_field(client, body, field):
    r = client.post(URL, data=json.dumps(body, allow_nan=True), content_type="application/json")
    if r.status_code == 400:  # 1e309 is not JSON at all
        assert field == "filters.max_price"
        return
    e = error_of(r, 422)
    assert e["code"] == "validation_error"
    assert field in fields_of(e)


@pytest.mark.parametrize(
    "context, field",
    [
        ({"item_id": "nope"}, "context.item_id"),
        ({"cart": ["i00001", "i00002", "nope"]}, "context.cart[2]"),
    ],
)
def test_unknown_items_in_the_context_are_422(client, context, field):
    e = error_of(client.post(URL, json={"context": {"channel": "web", **context}}), 422)
    assert e["code"] == "unknown_item" and e["details"] == [{"field": field, "reason": "unknown item"}]
    e = error_of(client.post(URL, json={"context": {"channel": "web"}, "exclude": ["i00001", "zz"]}), 422)
    assert fields_of(e) == ["exclude[1]"]


@pytest.mark.parametrize(
    "value", ["🛒💥", "\u202etxet", "é" * 128, "\ufeff", "a\u0301", "\U0010ffff", "💩" * 128]
)
def test_unicode_oddities_never_fail(client, value):
    body = {
        "customer": {"customer_id": value},
        "context": {"channel": "store", "store_id": value, "page": value[:64], "category": value},
    }
    r = client.post(URL, json=body)
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.get_json()["customer_id"] == value
    error_of(client.post(URL, json={"context": {"channel": "web", "item_id": value}}), 422)


def test_nulls_where_optional_are_fine(client):
    body = {
        "customer": None,
        "context": {
            "channel": "web",
            "store_id": None,
            "locale": None,
            "page": None,
            "item_id": None,
            "category": None,
            "at": None,
        },
        "filters": None,
    }
    assert client.post(URL, json=body).status_code == 200


def test_a_timestamp_in_context_is_accepted(client):
    body = {"context": {"channel": "web", "at": "2026-11-23T10:00:00Z", "locale": "fr-FR"}}
    js = client.post(URL, json=body).get_json()
    assert js["items"] and js["items"][0]["reasons"][0]["text"].startswith("Populaire")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
field_names = st.sampled_from(
    [
        "customer",
        "context",
        "n",
        "filters",
        "exclude",
        "explain",
        "exclude_history",
        "channel",
        "store_id",
        "customer_id",
        "identifier",
        "cart",
        "item_id",
        "at",
    ]
)
plausible = st.fixed_dictionaries(
    {},
    optional={
        "customer": st.one_of(
            json_values,
            st.fixed_dictionaries(
                {},
                optional={
                    "customer_id": json_values,
                    "identifier": st.fixed_dictionaries(
                        {},
                        optional={
                            "type": st.sampled_from(["loyalty_card", "email_sha256", "device", "x"])
                            | json_values,
                            "value": json_values,
                        },
                    ),
                },
            ),
        ),
        "context": st.one_of(
            json_values,
            st.fixed_dictionaries(
                {},
                optional={
                    "channel": st.sampled_from(["web", "app", "store", "call_center"]) | json_values,
                    "store_id": json_values,
                    "locale": json_values,
                    "item_id": json_values,
                    "cart": json_values,
                    "at": json_values,
                    "category": json_values,
                    "page": json_values,
                },
            ),
        ),
        "n": json_values,
        "filters": json_values,
        "exclude": json_values,
        "explain": json_values,
    },
) | st.dictionaries(field_names, json_values, max_size=5)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=plausible)
def test_any_json_body_gets_2xx_or_4xx_never_5xx(client, body):
    r = client.post(URL, data=json.dumps(body), content_type="application/json")
    assert r.status_code < 500, r.get_data(as_text=True)
    if r.status_code >= 400:
        error_of(r, r.status_code)
    else:
        assert r.get_json()["items"] is not None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=200))
def test_any_bytes_get_4xx_or_2xx(client, data):
    r = raw(client, data)
    assert r.status_code < 500

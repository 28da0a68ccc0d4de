"""Logs never hold raw emails, phone numbers, card numbers, device ids or API keys: a full scenario
(identifier links and unlinks, lookups, recommendations and events by identifier, consent, customer
views, refused and invalid requests) against gunicorn with two workers on Redis, every log on (DEBUG,
gunicorn's access log too), then the whole log output is searched for the test data's identifiers,
their hashes, and the keys and their secrets."""

from __future__ import annotations

import hashlib
import re
import subprocess
import uuid

import pytest

from tests.service import (
    GUNICORN,
    GUNICORN_CONF,
    PYTHON,
    Server,
    bearer,
    free_port,
    make_key,
    request,
    server_env,
)

pytestmark = [pytest.mark.slow, pytest.mark.redis]


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


PEOPLE = [
    {"id": "c00005", "card": "4970123498761234", "email": "Marie.Curie@Example.org", "phone": "+33611223344",
     "device": "dev-9f8e7d6c5b4a"},
    {"id": "c00006", "card": "4970555511112222", "email": "alan.turing@example.com", "phone": "+447700900123",
     "device": "dev-1a2b3c4d5e6f"},
]


def test_a_full_run_logs_no_identifier_and_no_key(models_dir, redis_url, tmp_path):
    keys_file = str(tmp_path / "keys.json")
    keys = {"clerk": make_key(keys_file, "clerk", store="s1", name="tablet"),
            "storefront": make_key(keys_file, "storefront", name="web"),
            "admin": make_key(keys_file, "admin", name="ops"),
            "revoked": make_key(keys_file, "storefront", name="old")}
    subprocess.run([PYTHON, "-m", "recsvc", "keys", "revoke", "old", "--keys-file", keys_file], check=True,
                   capture_output=True, timeout=60)
    port = free_port()
    env = server_env(models_dir, redis_url, RECSVC_AUTH="on", RECSVC_KEYS_FILE=keys_file, RECSVC_LOG_LEVEL="DEBUG",
                     RECSVC_ACCESS_LOG="-")
    server = Server([GUNICORN, "-c", GUNICORN_CONF, "recsvc.wsgi:app", "--bind", f"127.0.0.1:{port}",
                     "--workers", "2"], env, str(tmp_path), port, str(tmp_path / "gunicorn.log"))
    base = server.base
    clerk, sf, admin = bearer(keys["clerk"]), bearer(keys["storefront"]), bearer(keys["admin"])
    statuses = []

    def call(method, path, body=None, headers=None):
        status, js = request(method, base + path, body, headers=headers)
        statuses.append(status)
        return status, js

    try:
        server.wait_ready()
        for p in PEOPLE:
            ids = [("loyalty_card", p["card"]), ("email_sha256", sha(p["email"].strip().lower())),
                   ("phone_sha256", sha(p["phone"])), ("device", p["device"])]
            for type_, value in ids:
                assert call("POST", f"/v1/customers/{p['id']}/identifiers", {"type": type_, "value": value},
                            clerk)[0] == 201
            for type_, value in ids:
                assert call("POST", "/v1/customers/lookup", {"type": type_, "value": value}, clerk)[1][
                    "customer_id"] == p["id"]
                ctx = {"channel": "store", "store_id": "s1"}
                assert call("POST", "/v1/recommendations", {"customer": {"identifier": {"type": type_, "value": value}},
                                                             "context": ctx}, clerk)[0] == 200
                assert call("POST", "/v1/recommendations", {"customer": {"identifier": {"type": type_, "value": value}},
                                                             "context": {"channel": "web"}}, sf)[0] == 200
            events = [{"event_id": f"log-{uuid.uuid4().hex}", "customer": {"identifier": {"type": t, "value": v}},
                       "item_id": "i00004", "event": "view", "channel": "web", "timestamp": "2026-11-20T10:00:00Z"}
                      for t, v in ids]
            assert call("POST", "/v1/events", {"events": events}, sf)[0] == 202
            assert call("PUT", f"/v1/customers/{p['id']}/consent",
                        {"personalisation": False, "source": "clerk", "channel": "store"}, clerk)[0] == 200
            assert call("GET", f"/v1/customers/{p['id']}", headers=clerk)[0] == 200
            assert call("DELETE", f"/v1/customers/{p['id']}/identifiers/loyalty_card/{p['card']}",
                        headers=clerk)[0] == 200
            # refused and invalid requests carrying identifiers and keys
            assert call("POST", "/v1/customers/lookup", {"type": "email_sha256", "value": p["email"]}, clerk)[0] == 422
            assert call("POST", "/v1/customers/lookup", {"type": "phone_sha256", "value": p["phone"]}, clerk)[0] == 422
            assert call("POST", "/v1/customers/lookup", {"type": "loyalty_card", "value": p["card"]}, sf)[0] == 403
            assert call("POST", "/v1/recommendations", {"customer": {"identifier": {"type": "loyalty_card",
                                                                                     "value": p["card"]}},
                                                         "context": {"channel": "web"}},
                        bearer(keys["revoked"]))[0] == 401
            bad = keys["storefront"][:-1] + ("A" if keys["storefront"][-1] != "A" else "B")
            assert call("GET", f"/v1/customers/{p['id']}", headers=bearer(bad))[0] == 401
            assert call("DELETE", f"/v1/customers/{p['id']}/identifiers/device/{p['device']}", headers=sf)[0] == 403
            assert call("POST", "/v1/recommendations", {"customer": {"identifier": {"type": "loyalty_card",
                                                                                     "value": p["card"]}},
                                                         "context": {"channel": "store", "store_id": "s2"}},
                        clerk)[0] == 403
        assert call("GET", "/v1/audit", headers=admin)[0] == 200
    finally:
        server.stop()
    log = server.log()
    assert len(statuses) > 50
    # the log is complete: every request has its access line (the app's and gunicorn's), internal ids are there
    assert log.count('"logger":"recsvc.access"') >= len(statuses)
    assert log.count('"logger":"gunicorn.access"') >= len(statuses)
    assert "c00005" in log and "/identifiers/loyalty_card/***" in log
    needles = []
    for p in PEOPLE:
        needles += [p["card"], p["card"][-8:], p["email"], p["email"].lower(), p["email"].split("@")[0],
                    sha(p["email"].strip().lower()), sha(p["email"].strip().lower())[:16], p["phone"],
                    p["phone"][1:], sha(p["phone"]), sha(p["phone"])[:16], p["device"]]
    for k in keys.values():
        needles += [k, k.split("_", 2)[2], k.split("_", 2)[2][:12]]
    with open(keys_file + ".secret", encoding="utf-8") as f:
        needles.append(f.read().strip())
    found = [n for n in needles if re.search(re.escape(n), log, re.IGNORECASE)]
    assert found == [], found

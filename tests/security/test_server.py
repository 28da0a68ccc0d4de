"""API keys on real servers, made the way an operator makes them (`recsvc keys create`):

- `recsvc serve` on Redis with RECSVC_AUTH=on: the acceptance scenarios (no key 401, storefront 200 on
  recommendations and 403 on a customer, a clerk of one store 403 on another store and 200 on its own),
  every error in the contract's shape;
- gunicorn with two workers: a revoked key is refused by every worker shortly after `recsvc keys
  revoke`, with nothing restarted; a rate limit is shared by the workers (Redis) and answers 429 with
  Retry-After; the keys file holds no key, only keyed hashes, and its secret lives in another file.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import time

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


def error_shape(js) -> bool:
    e = js.get("error") if isinstance(js, dict) else None
    return (isinstance(e, dict) and bool(e.get("code")) and bool(e.get("message")) and isinstance(e.get("details"), list)
            and all({"field", "reason"} <= set(d) for d in e["details"]) and bool(js.get("request_id")))


def rec(customer="c00001", channel="web", store_id=None):
    ctx = {"channel": channel, **({"store_id": store_id} if store_id else {})}
    return {"customer": {"customer_id": customer}, "context": ctx, "n": 5}


@pytest.fixture
def serve(models_dir, redis_url, tmp_path):
    servers = []

    def start(env_extra: dict, gunicorn: bool = False) -> Server:
        port = free_port()
        env = server_env(models_dir, redis_url, RECSVC_AUTH="on", RECSVC_KEYS_FILE=str(tmp_path / "keys.json"),
                         **env_extra)
        if gunicorn:
            cmd = [GUNICORN, "-c", GUNICORN_CONF, "recsvc.wsgi:app", "--bind", f"127.0.0.1:{port}",
                   "--workers", "2"]
        else:
            cmd = [PYTHON, "-m", "recsvc", "serve", "--host", "127.0.0.1", "--port", str(port)]
        s = Server(cmd, env, str(tmp_path), port, str(tmp_path / f"server-{port}.log"))
        servers.append(s)
        s.wait_ready()
        return s

    yield start
    for s in servers:
        s.stop()


def test_the_acceptance_scenarios_on_recsvc_serve(serve, tmp_path):
    keys_file = str(tmp_path / "keys.json")
    storefront = make_key(keys_file, "storefront", name="check-storefront")
    clerk = make_key(keys_file, "clerk", store="s1", name="check-clerk")
    base = serve({}).base
    url = base + "/v1/recommendations"

    status, js = request("POST", url, rec())
    assert status == 401 and error_shape(js) and js["error"]["code"] == "unauthorized"
    status, js = request("POST", url, rec(), headers=bearer(storefront))
    assert status == 200 and js["items"]
    status, js = request("GET", base + "/v1/customers/c00001", headers=bearer(storefront))
    assert status == 403 and error_shape(js) and js["error"]["code"] == "forbidden"
    status, js = request("POST", url, rec(channel="store", store_id="s2"), headers=bearer(clerk))
    assert status == 403 and error_shape(js) and js["error"]["details"][0]["field"] == "context.store_id"
    status, js = request("POST", url, rec(channel="store", store_id="s1"), headers=bearer(clerk))
    assert status == 200 and js["items"][0]["availability"]["store_id"] == "s1"
    status, js = request("GET", base + "/v1/customers/c00001", headers=bearer(clerk))
    assert status == 200 and js["customer_id"] == "c00001"
    for path in ("/healthz", "/readyz", "/openapi.json", "/docs", "/clerk/"):
        assert request("GET", base + path)[0] == 200, path


def test_keys_file_holds_keyed_hashes_only_and_its_secret_apart(tmp_path):
    keys_file = str(tmp_path / "keys.json")
    made = [make_key(keys_file, role, store="s1" if role == "clerk" else None)
            for role in ("storefront", "clerk", "analyst", "admin")]
    with open(keys_file, encoding="utf-8") as f:
        text = f.read()
    data = json.loads(text)
    with open(keys_file + ".secret", encoding="utf-8") as f:
        secret = f.read().strip()
    for key in made:
        kid, token_secret = key.split("_")[1], key.split("_", 2)[2]
        assert token_secret not in text and key not in text and kid in text
    assert secret not in text and len(secret) >= 32
    assert oct(os.stat(keys_file).st_mode & 0o777) == "0o600"
    assert oct(os.stat(keys_file + ".secret").st_mode & 0o777) == "0o600"
    assert {k["role"] for k in data["keys"]} == {"storefront", "clerk", "analyst", "admin"}
    assert all(len(k["hash"]) == 64 and set(k["hash"]) <= set("0123456789abcdef") for k in data["keys"])
    listed = subprocess.run([PYTHON, "-m", "recsvc", "keys", "list", "--keys-file", keys_file], check=True,
                            capture_output=True, text=True, timeout=60).stdout
    assert all(k.split("_")[1] in listed and k.split("_", 2)[2] not in listed for k in made)


def test_revocation_reaches_every_gunicorn_worker_and_rate_limits_are_shared(serve, tmp_path):
    keys_file = str(tmp_path / "keys.json")
    doomed = make_key(keys_file, "storefront", name="doomed")
    limited = make_key(keys_file, "clerk", store="s1", name="limited", rate_limit=5)
    other = make_key(keys_file, "storefront", name="other")
    server = serve({"RECSVC_RATE_WINDOW_S": "3600"}, gunicorn=True)

    def fresh(body, key):  # a new connection each time: any of the two workers answers
        c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        c.request("POST", "/v1/recommendations", json.dumps(body),
                  {"Content-Type": "application/json", "Connection": "close", **bearer(key)})
        r = c.getresponse()
        out = r.status, r.getheader("Retry-After"), json.loads(r.read() or b"null")
        c.close()
        return out

    assert {fresh(rec(), doomed)[0] for _ in range(10)} == {200}
    p = subprocess.run([PYTHON, "-m", "recsvc", "keys", "revoke", "doomed", "--keys-file", keys_file],
                       check=False, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and "revoked storefront key" in p.stdout
    deadline = time.monotonic() + 10
    while fresh(rec(), doomed)[0] != 401 and time.monotonic() < deadline:
        time.sleep(0.05)
    statuses = [fresh(rec(), doomed)[0] for _ in range(30)]  # both workers, without a restart
    assert statuses == [401] * 30

    # a limit of 5 requests for this key, whichever worker answers
    body = rec(channel="store", store_id="s1")
    got = [fresh(body, limited) for _ in range(8)]
    assert [s for s, _, _ in got] == [200] * 5 + [429] * 3
    _, retry, js = got[-1]
    assert 0 < int(retry) <= 3600 and error_shape(js) and js["error"]["code"] == "rate_limited"
    # another key is not limited by this one's use
    assert fresh(rec(), other)[0] == 200

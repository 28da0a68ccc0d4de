"""Property-based fuzzing of the served OpenAPI document (schemathesis) against a live `recsvc serve`
with API keys on: the whole document with no key, then with each role's key (a clerk key bound to a
store); no generated request, valid or not, gets a 5xx. Bounded: a few examples per operation per run.
(Rate limits are off here so that the fuzzer reaches the views; their 429 is tested in tests/security.)"""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from tests.service import PYTHON, Server, free_port, make_key, server_env

pytestmark = pytest.mark.slow
ST = os.path.join(os.path.dirname(PYTHON), "st")
RUNS = {"no key": 3, "storefront": 8, "clerk": 8, "analyst": 8, "admin": 15}  # examples per operation


@pytest.fixture(scope="module")
def fuzzed_server(tmp_path_factory):
    from tests.modelkit import make_model

    root = tmp_path_factory.mktemp("fuzz")
    models = str(root / "models")
    os.makedirs(models)
    make_model(models)
    keys_file = str(root / "keys.json")
    keys = {role: make_key(keys_file, role, store="s1" if role == "clerk" else None, name=f"fuzz-{role}")
            for role in ("storefront", "clerk", "analyst", "admin")}
    port = free_port()
    server = Server(
        [PYTHON, "-m", "recsvc", "serve", "--host", "127.0.0.1", "--port", str(port)],
        server_env(models, RECSVC_AUTH="on", RECSVC_KEYS_FILE=keys_file, RECSVC_RATE_LIMIT="off"),
        str(root),
        port,
        str(root / "serve.log"),
    )
    try:
        server.wait_ready()
        yield server, keys
    finally:
        server.stop()


@pytest.mark.parametrize("who", list(RUNS))
def test_fuzzing_the_openapi_document_finds_no_server_error(fuzzed_server, who, tmp_path):
    server, keys = fuzzed_server
    headers = [] if who == "no key" else ["-H", f"Authorization: Bearer {keys[who]}"]
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "120"}
    p = subprocess.run(
        [ST, "run", server.base + "/openapi.json", "--checks", "not_a_server_error", "--max-examples",
         str(RUNS[who]), "--seed", "1", "--request-timeout", "10", *headers],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=str(tmp_path),
        stdin=subprocess.DEVNULL,
    )
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-4000:]
    # Warnings are allowed (experiment bodies have cross-field rules, shares summing to 1, a control
    # variant, that JSON Schema cannot state, so most generated ones get a 422; operations a role may not
    # call answer only 401/403), failures not.
    cases = re.search(r"(\d+) generated, (\d+) passed", out)
    assert cases and cases.group(1) == cases.group(2) and int(cases.group(1)) > 500, out[-2000:]
    assert "Server error" not in out and "Failures" not in out, out[-2000:]
    selected, tested = re.search(r"Selected: (\d+)/(\d+)", out), re.search(r"Tested: (\d+)", out)
    assert selected and tested and selected.group(1) == selected.group(2) == tested.group(1), out[-2000:]
    if who == "no key":
        assert "Authentication failed" in out  # every /v1/ operation answered 401
    assert "Traceback" not in server.log()

"""Property-based fuzzing of the served OpenAPI document (schemathesis) against a live `recsvc serve`:
no generated request, valid or not, gets a 5xx. Bounded: a few examples per operation, < 60 s."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.service import PYTHON, Server, free_port, server_env

pytestmark = pytest.mark.slow
ST = os.path.join(os.path.dirname(PYTHON), "st")


def test_fuzzing_the_openapi_document_finds_no_server_error(models_dir, tmp_path):
    port = free_port()
    server = Server(
        [PYTHON, "-m", "recsvc", "serve", "--host", "127.0.0.1", "--port", str(port)],
        server_env(models_dir),
        str(tmp_path),
        port,
        str(tmp_path / "serve.log"),
    )
    try:
        server.wait_ready()
        env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "120"}
        p = subprocess.run(
            [
                ST,
                "run",
                server.base + "/openapi.json",
                "--checks",
                "not_a_server_error",
                "--max-examples",
                "15",
                "--seed",
                "1",
                "--request-timeout",
                "10",
            ],
            check=False,
            capture_output=True,
            text=True,
            timeout=90,
            env=env,
            cwd=str(tmp_path),
            stdin=subprocess.DEVNULL,
        )
    finally:
        server.stop()
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-4000:]
    assert "No issues found" in out and "Server error" not in out, out[-2000:]
    assert "Traceback" not in server.log()

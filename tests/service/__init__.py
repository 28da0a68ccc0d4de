"""Helpers for tests that run a real server process (gunicorn, `recsvc serve`, `recsvc demo`) on a free
loopback port: start it in its own session, wait until /readyz answers, stop the whole group."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import recsvc

PYTHON = sys.executable
GUNICORN = os.path.join(os.path.dirname(sys.executable), "gunicorn")
GUNICORN_CONF = os.path.join(os.path.dirname(recsvc.__file__), "gunicorn.conf.py")


def free_port() -> int:
    while True:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        if port != 6379:
            return port


def server_env(models_dir: str, store_url: str = "memory://", **extra: str) -> dict:
    """The environment of a test server: API keys off (RECSVC_AUTH=off) unless `extra` turns them on,
    as the tests of keys do (tests/security)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECSVC_", "PROMETHEUS_"))}
    env.update(
        RECSVC_MODELS_DIR=models_dir,
        RECSVC_STORE_URL=store_url,
        RECSVC_AUTH="off",
        RECSVC_LOG_LEVEL="WARNING",
    )
    env.update(extra)
    return env


def make_key(keys_file: str, role: str, store: str | None = None, name: str | None = None,
             channels: tuple[str, ...] = (), rate_limit: int | None = None, env: dict | None = None) -> str:
    """A new API key in `keys_file`, made the way an operator makes one (`recsvc keys create`)."""
    cmd = [PYTHON, "-m", "recsvc", "keys", "create", "--role", role, "--keys-file", keys_file]
    if store:
        cmd += ["--store", store]
    if name:
        cmd += ["--name", name]
    for c in channels:
        cmd += ["--channel", c]
    if rate_limit is not None:
        cmd += ["--rate-limit", str(rate_limit)]
    e = {k: v for k, v in os.environ.items() if not k.startswith("RECSVC_")}
    e.update(env or {})
    p = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=60, env=e,
                       stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip().splitlines()[-1]


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


class Server:
    """A server process in its own session; `stop()` ends its whole process group."""

    def __init__(self, cmd: list[str], env: dict, cwd: str, port: int, log_path: str):
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - open for the life of the process
        self.proc = subprocess.Popen(
            cmd,
            env=env,
            cwd=cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def log(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def wait_ready(self, timeout: float = 60.0, path: str = "/readyz") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            try:
                status, _ = request("GET", self.base + path, timeout=2)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server not ready after {timeout}s:\n{self.log()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
            except ProcessLookupError:
                pass
        self._log.close()


def request(method: str, url: str, body=None, timeout: float = 10.0, headers: dict | None = None):
    """-> (status, parsed JSON or text). Never raises on an HTTP status."""
    data = json.dumps(body).encode() if body is not None else None
    h = {"Content-Type": "application/json"} if data is not None else {}
    h.update(headers or {})
    req = urllib.request.Request(url, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, text, ctype = r.status, r.read().decode(), r.headers.get("Content-Type", "")
    except urllib.error.HTTPError as e:
        status, text, ctype = e.code, e.read().decode(), e.headers.get("Content-Type", "")
        e.close()
    return status, (json.loads(text) if ctype.startswith("application/json") else text)

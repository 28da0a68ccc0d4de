"""Helpers of the reliability tests: a real gunicorn (the shipped gunicorn.conf.py) on a free loopback
port with its workers' pids, broken copies of a published model, the service's JSON log lines, and
"every worker says so" waits (a sync worker answers whichever request the kernel hands it)."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import time

import psutil

from recsvc.artifact.registry import Registry
from tests.modelkit import make_model
from tests.service import GUNICORN, GUNICORN_CONF, Server, free_port, request, server_env

BROKEN_KINDS = ("checksum", "missing_array", "format_version")
# what the refusal says for each kind (the log line and /readyz carry it)
REASON = {
    "checksum": "checksum",
    "missing_array": "missing arrays pop_global",
    "format_version": "format_version 99 is not supported",
    "no_manifest": "not in",
}


def gunicorn(models_dir: str, store_url: str, tmp_path, name: str, workers: int = 2, ready: bool = True,
             **env: str) -> Server:
    """A gunicorn of `workers` sync workers; auth is off explicitly (these tests are about faults, not
    keys). ready: wait until /readyz answers 200 and every worker has loaded its model."""
    port = free_port()
    s = Server([GUNICORN, "-c", GUNICORN_CONF, "recsvc.wsgi:app", "--bind", f"127.0.0.1:{port}",
                "--workers", str(workers)],
               off_env(models_dir, store_url, **env), str(tmp_path), port, str(tmp_path / f"{name}.log"))
    try:
        if ready:
            s.wait_ready()
            workers_up(s, workers)
        else:
            s.wait_ready(path="/healthz")
    except BaseException:
        s.stop()
        raise
    return s


def off_env(models_dir: str, store_url: str, **env: str) -> dict:
    """server_env with RECSVC_AUTH=off set explicitly, whatever its default becomes."""
    out = server_env(models_dir, store_url, **env)
    out["RECSVC_AUTH"] = "off"
    return out


def worker_pids(server: Server) -> list[int]:
    try:
        return sorted(p.pid for p in psutil.Process(server.proc.pid).children())
    except psutil.NoSuchProcess:
        return []


def workers_up(server: Server, n: int, timeout: float = 60.0) -> None:
    """n workers are running and each has a model (recsvc_model_info adds one per worker)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(worker_pids(server)) == n:
            _, text = request("GET", server.base + "/metrics")
            total = sum(float(v) for v in re.findall(r"^recsvc_model_info\{[^}]*\} (\S+)$", str(text), re.MULTILINE))
            if total == n:
                return
        time.sleep(0.1)
    raise AssertionError(f"{n} workers with a model did not come up:\n{server.log()[-3000:]}")


def every_worker(server: Server, path: str, check, streak: int = 12, timeout: float = 30.0,
                 method: str = "GET", body=None):
    """Ask `path` until `streak` answers in a row pass `check(status, js)` (with 2 workers, 12 in a row
    all but rules out one worker never answering). Returns the last answer; raises with it if never."""
    deadline, run, last = time.monotonic() + timeout, 0, None
    while time.monotonic() < deadline:
        last = request(method, server.base + path, body)
        run = run + 1 if check(*last) else 0
        if run >= streak:
            return last
        time.sleep(0.02)
    raise AssertionError(f"{path}: no {streak} passing answers in a row; last {last}\n{server.log()[-2000:]}")


def later_model(models_dir: str, seed: int, alias: str | None = None) -> str:
    when = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(hours=seed)
    return make_model(models_dir, alias=alias, when=when, seed=seed)


def broken_model(models_dir: str, kind: str, seed: int) -> str:
    """A published model damaged the way a bad copy or an old/new writer would leave it."""
    mid = later_model(models_dir, seed)
    folder = os.path.join(models_dir, mid)
    man_path = os.path.join(folder, "manifest.json")
    with open(man_path) as f:
        man = json.load(f)
    if kind == "checksum":  # bytes changed after publishing (bit rot, a partial copy over an old file)
        name = next(n for n in man["files"] if n.startswith("item_factors"))
        with open(os.path.join(folder, name), "r+b") as f:
            f.seek(-4, os.SEEK_END)
            f.write(b"\x00\x01\x02\x03")
    elif kind == "missing_array":  # an array left out, manifest consistent with it (a buggy writer)
        name = next(n for n in man["files"] if n.startswith("pop_global"))
        os.unlink(os.path.join(folder, name))
        del man["files"][name]
    elif kind == "format_version":  # written by a recsvc this one does not know
        man["format_version"] = 99
    elif kind == "no_manifest":  # a copy that stopped before its manifest
        os.unlink(man_path)
        return mid
    else:
        raise ValueError(kind)
    with open(man_path, "w") as f:
        json.dump(man, f)
    return mid


def point_alias(models_dir: str, alias: str, model_id: str) -> None:
    """Move an alias as `models promote` does; by hand (os.replace) for a folder the registry would
    not accept, as a careless copy script would."""
    reg = Registry(models_dir)
    if model_id in reg.model_ids():
        reg.set_alias(alias, model_id)
        return
    path = reg.alias_path(alias)
    with open(path + ".tmp", "w") as f:
        f.write(model_id + "\n")
    os.replace(path + ".tmp", path)


def log_records(server: Server) -> list[dict]:
    """The JSON lines of the server's log (gunicorn's own and the app's)."""
    out = []
    for line in server.log().splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def live_event_ids(r, prefix: str) -> list[str]:
    """Event ids in every customer's recent list in Redis (what fold-in reads; a double count would
    show here). An entry is a JSON object, or a compact array in ROW_FIELDS order."""
    try:
        from recsvc.state.base import ROW_FIELDS
        at = ROW_FIELDS.index("event_id")
    except ImportError:
        at = None
    out = []
    for k in r.scan_iter(match=f"{prefix}:cust:*:events", count=1000):
        for x in r.lrange(k, 0, -1):
            d = json.loads(x)
            out.append(d["event_id"] if isinstance(d, dict) else d[at])
    return out


def stream_event_ids(r, prefix: str) -> list[str]:
    """Event ids of the stream `recsvc-train export-events` reads (one entry per accepted event)."""
    return [json.loads(f["e"])["event_id"] for _, f in r.xrange(f"{prefix}:events")]


def refusal_lines(server: Server, model_id: str) -> list[dict]:
    return [r for r in log_records(server)
            if r.get("level") == "ERROR" and "refused" in r.get("msg", "") and model_id in r.get("msg", "")]

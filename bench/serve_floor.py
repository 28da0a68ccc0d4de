"""POST /v1/recommendations against the hardware floor (issue 4's serving figures).

Both servers run under gunicorn with 2 sync workers and one BLAS thread each, on the same
memory-mapped model: the floor is bench/floor_app.py (parse the body, `item_factors @ u`,
argpartition, ten ids); recsvc runs `recsvc/gunicorn.conf.py` on a real Redis (a redis-server this
script starts on a free loopback port, nothing kept on disk). The load is wrk -t2 -c16, 1,000 known
customers sampled from the model, the four channels in turn (the store's id on the `store` channel).
The floor and recsvc are measured back to back, `--rounds` times, and the medians are compared:
the target is recsvc throughput >= 0.8x the floor's and p99 <= 1.5x the floor's p99.

    python bench/serve_floor.py                       # synth 50k customers x 20k items, 1M events, fit
    python bench/serve_floor.py --models-dir M        # an existing registry (alias champion)

Prints one line per run and the medians; writes bench/results/serve_floor.json.
Needs wrk (`apt-get install wrk`) and redis-server.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results", "serve_floor.json")
CHANNELS = ("web", "app", "call_center", "store")
BLAS1 = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def free_port() -> int:
    while True:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        if port != 6379:
            return port


def spawn(cmd: list[str], env: dict, log: str, cwd: str | None = None) -> subprocess.Popen:
    with open(log, "wb") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def stop(p: subprocess.Popen) -> None:
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=5)


def wait_ready(url: str, p: subprocess.Popen, log: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if p.poll() is not None:
            raise SystemExit(f"server exited ({p.returncode}); see {log}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} not ready after {timeout:.0f} s; see {log}")


def build_model(work: str, a) -> str:
    """`recsvc-train synth` + `recsvc-train fit --alias champion` (cached in `work` between runs)."""
    models = os.path.join(work, "models")
    data = os.path.join(work, "data")
    if os.path.exists(os.path.join(models, "aliases", "champion")):
        return models
    train = [sys.executable, "-m", "training"]
    env = {**os.environ, **BLAS1}
    print(f"building the model in {work} (synth + fit)...", flush=True)
    subprocess.run(train + ["synth", "--out", data, "--customers", str(a.customers), "--items", str(a.items),
                            "--stores", str(a.stores), "--events", str(a.events), "--seed", str(a.seed)],
                   check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(train + ["fit", "--data", data, "--models-dir", models, "--alias", "champion"],
                   check=True, env=env, stdout=subprocess.DEVNULL)
    return models


def model_dir(models: str) -> str:
    with open(os.path.join(models, "aliases", "champion"), encoding="utf-8") as f:
        ref = f.read().strip()
    return ref if os.path.isabs(ref) else os.path.join(models, ref)


def request_bodies(mdir: str, k: int, seed: int) -> list[dict]:
    customers = sorted(str(c) for c in np.load(os.path.join(mdir, "customer_ids.npy"), allow_pickle=False))
    stores = sorted(str(s) for s in np.load(os.path.join(mdir, "store_ids.npy"), allow_pickle=False))
    sample = random.Random(seed).sample(customers, min(k, len(customers)))
    out = []
    for j, c in enumerate(sample):
        ch = CHANNELS[j % 4]
        ctx = {"channel": ch}
        if ch == "store" and stores:
            ctx["store_id"] = stores[0]
        out.append({"context": ctx, "n": 10, "customer": {"customer_id": c}})
    return out


def lua_file(path: str, url_path: str, bodies: list[dict]) -> str:
    with open(path, "w", encoding="utf-8") as f:
        f.write("wrk.method = 'POST'\nwrk.headers['Content-Type'] = 'application/json'\nlocal b = {\n")
        f.writelines("[==[" + json.dumps(b) + "]==],\n" for b in bodies)
        f.write("}\nlocal i = 0\nrequest = function()\n  i = i + 1\n"
                f"  return wrk.format(nil, '{url_path}', nil, b[(i % #b) + 1])\nend\n")
    return path


def _ms(v: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s|m)$", v)
    x, unit = float(m.group(1)), m.group(2)
    return {"us": x / 1000, "ms": x, "s": x * 1000, "m": x * 60000}[unit]


def wrk(url: str, lua: str, secs: int, threads: int, conns: int) -> dict:
    cmd = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{secs}s", "--latency", "--timeout", "2s", "-s", lua, url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=secs + 30, check=False).stdout
    rps = re.search(r"Requests/sec:\s*([\d.]+)", out)
    p50 = re.search(r"^\s*50(?:\.000)?%\s+(\S+)", out, re.MULTILINE)
    p99 = re.search(r"^\s*99(?:\.000)?%\s+(\S+)", out, re.MULTILINE)
    non2 = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    if not (rps and p99):
        raise SystemExit(f"wrk failed on {url}:\n{out}")
    return {"rps": float(rps.group(1)), "p50_ms": _ms(p50.group(1)), "p99_ms": _ms(p99.group(1)),
            "non_2xx": int(non2.group(1)) if non2 else 0, "socket_errors": errors.group(1) if errors else None}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models-dir", help="an existing registry with a champion (default: synth + fit)")
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "recsvc-bench-serve-floor"),
                    help="where the built model and the logs go")
    ap.add_argument("--customers", type=int, default=50_000)
    ap.add_argument("--items", type=int, default=20_000)
    ap.add_argument("--stores", type=int, default=5)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2, help="wrk threads")
    ap.add_argument("--connections", type=int, default=16, help="wrk connections")
    ap.add_argument("--duration", type=int, default=10, help="seconds per measured run")
    ap.add_argument("--rounds", type=int, default=3, help="floor/recsvc pairs, run back to back")
    ap.add_argument("--out", default=RESULTS)
    a = ap.parse_args(argv)
    for tool in ("wrk", "redis-server"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} not found: apt-get install {'wrk' if tool == 'wrk' else 'redis-server'}")
    gunicorn = os.path.join(os.path.dirname(sys.executable), "gunicorn")
    os.makedirs(a.work, exist_ok=True)
    models = a.models_dir or build_model(a.work, a)
    mdir = model_dir(models)
    bodies = request_bodies(mdir, 1000, seed=5)
    logs = tempfile.mkdtemp(prefix="logs-", dir=a.work)
    procs: list[subprocess.Popen] = []
    try:
        rport = free_port()
        procs.append(spawn(["redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--save", "",
                            "--appendonly", "no", "--dir", logs], os.environ.copy(), os.path.join(logs, "redis.log")))
        fport, sport = free_port(), free_port()
        base_env = {k: v for k, v in os.environ.items() if not k.startswith(("RECSVC_", "PROMETHEUS_"))}
        floor_log = os.path.join(logs, "floor.log")
        procs.append(spawn([gunicorn, "--chdir", HERE, "floor_app:app", "--bind", f"127.0.0.1:{fport}",
                            "--workers", str(a.workers), "--worker-class", "sync"],
                           {**base_env, **BLAS1, "FLOOR_MODEL_DIR": mdir}, floor_log))
        rec_log = os.path.join(logs, "recsvc.log")
        conf = os.path.join(ROOT, "recsvc", "gunicorn.conf.py")
        procs.append(spawn([gunicorn, "-c", conf, "recsvc.wsgi:app", "--bind", f"127.0.0.1:{sport}",
                            "--workers", str(a.workers)],
                           {**base_env, **BLAS1, "RECSVC_MODELS_DIR": models, "RECSVC_MODEL": "champion",
                            "RECSVC_STORE_URL": f"redis://127.0.0.1:{rport}/0", "RECSVC_AUTH": "off"},
                           rec_log, cwd=logs))
        floor, rec = f"http://127.0.0.1:{fport}", f"http://127.0.0.1:{sport}"
        wait_ready(floor + "/readyz", procs[1], floor_log)
        wait_ready(rec + "/readyz", procs[2], rec_log)
        flua = lua_file(os.path.join(logs, "floor.lua"), "/rec", bodies)
        rlua = lua_file(os.path.join(logs, "rec.lua"), "/v1/recommendations", bodies)
        for b in bodies[:8]:
            req = urllib.request.Request(rec + "/v1/recommendations", data=json.dumps(b).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
            with urllib.request.urlopen(req, timeout=10) as r:
                got = json.loads(r.read())
            if len(got["items"]) != 10:
                raise SystemExit(f"recsvc answered {len(got['items'])} items for {b}")
        runs = []
        for k in range(a.rounds):
            wrk(floor + "/rec", flua, 2, a.threads, a.connections)
            f = wrk(floor + "/rec", flua, a.duration, a.threads, a.connections)
            wrk(rec + "/v1/recommendations", rlua, 2, a.threads, a.connections)
            r = wrk(rec + "/v1/recommendations", rlua, a.duration, a.threads, a.connections)
            run = {"floor": f, "recsvc": r, "ratio": r["rps"] / f["rps"], "p99_ratio": r["p99_ms"] / f["p99_ms"]}
            runs.append(run)
            print(f"round {k + 1}: recsvc {r['rps']:.0f} rps p99 {r['p99_ms']:.1f} ms; floor {f['rps']:.0f} rps "
                  f"p99 {f['p99_ms']:.1f} ms; ratio {run['ratio']:.2f}, p99 ratio {run['p99_ratio']:.2f}",
                  flush=True)
    finally:
        for p in reversed(procs):
            stop(p)

    def med(key: str, side: str | None = None) -> float:
        return statistics.median(x[side][key] if side else x[key] for x in runs)

    summary = {
        "recsvc_rps": med("rps", "recsvc"), "recsvc_p99_ms": med("p99_ms", "recsvc"),
        "floor_rps": med("rps", "floor"), "floor_p99_ms": med("p99_ms", "floor"),
        "ratio": med("ratio"), "p99_ratio": med("p99_ratio"),
    }
    summary["holds"] = summary["ratio"] >= 0.8 and summary["p99_ratio"] <= 1.5
    items, factors = np.load(os.path.join(mdir, "item_factors.npy"), mmap_mode="r").shape
    result = {
        "benchmark": "serve_floor",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "setup": {"workers": a.workers, "worker_class": "sync", "blas_threads": 1,
                  "wrk": f"-t{a.threads} -c{a.connections} -d{a.duration}s", "rounds": a.rounds,
                  "customers_sampled": len(bodies), "channels": list(CHANNELS), "model": os.path.basename(mdir),
                  "items": int(items), "factors": int(factors), "cpus": os.cpu_count(),
                  "load_avg_1min_after": os.getloadavg()[0]},
        "target": {"ratio_min": 0.8, "p99_ratio_max": 1.5},
        "median": summary,
        "runs": runs,
    }
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
    print(f"median: recsvc {summary['recsvc_rps']:.0f} rps p99 {summary['recsvc_p99_ms']:.1f} ms; floor "
          f"{summary['floor_rps']:.0f} rps p99 {summary['floor_p99_ms']:.1f} ms; ratio {summary['ratio']:.2f}, "
          f"p99 ratio {summary['p99_ratio']:.2f} ({'holds' if summary['holds'] else 'short'}); wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What API keys cost the everyday request: POST /v1/recommendations with RECSVC_AUTH=off against the
same server with keys on (a storefront key on every request, verified by HMAC-SHA256 and a
constant-time compare, and its rate limit counted in Redis in blocks).

1. In-process: the key check alone (KeyRing.verify) and the rate limiter alone (memory store and real
   Redis), microseconds per call; then the CPU time of whole requests through the app's WSGI entry
   (the express lane) with keys off and on, interleaved (`time.process_time`: what other processes
   on a shared machine do moves it far less than it moves throughput).
2. Served: gunicorn with 2 sync workers on a real Redis (a redis-server this script starts), wrk -t2
   -c16 with 1,000 known customers over the four channels, auth off and auth on measured back to back
   `--rounds` times in alternating order; the medians and their ratio (target: throughput on >= 0.97x
   off). On a shared machine the served figures move by tens of percent from one run to the next; the
   CPU-time figure of step 1 is the steadier one.

    python bench/auth_overhead.py                    # synth 20k customers x 20k items, 400k events, fit
    python bench/auth_overhead.py --models-dir M     # an existing registry (alias champion)

Prints one line per run and the medians; writes bench/results/auth_overhead.json. Needs wrk and
redis-server.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)

from serve_floor import (
    BLAS1,
    build_model,
    free_port,
    model_dir,
    request_bodies,
    spawn,
    stop,
    wait_ready,
    wrk,
)

RESULTS = os.path.join(HERE, "results", "auth_overhead.json")


def micro(n: int = 200_000) -> dict:
    from recsvc.security.keys import KeyRing, create_key
    from recsvc.security.ratelimit import RateLimiter
    from recsvc.state.memory import InMemoryStore

    d = tempfile.mkdtemp(prefix="auth-micro-")
    path = os.path.join(d, "keys.json")
    secret = "bench-secret-0123456789abcdef"
    for k in range(50):
        create_key(path, secret, "storefront", name=f"k{k}")
    _, token = create_key(path, secret, "storefront")
    ring = KeyRing(path, secret)
    who = ring.verify(token)
    out = {}
    t = time.perf_counter()
    for _ in range(n):
        ring.verify(token)
    out["verify_us"] = (time.perf_counter() - t) / n * 1e6
    bad = token[:-1] + ("A" if token[-1] != "A" else "B")
    t = time.perf_counter()
    for _ in range(n):
        ring.verify(bad)
    out["verify_wrong_secret_us"] = (time.perf_counter() - t) / n * 1e6
    rl = RateLimiter(InMemoryStore(), {"storefront": 300_000})
    t = time.perf_counter()
    for _ in range(n):
        rl.admit(who)
    out["rate_limit_memory_us"] = (time.perf_counter() - t) / n * 1e6
    return out


def micro_redis(url: str, n: int = 200_000) -> float:
    from recsvc.security.keys import Principal
    from recsvc.security.ratelimit import RateLimiter
    from recsvc.state.redis import RedisStore

    store = RedisStore.from_url(url + "?prefix=bench-auth")
    rl = RateLimiter(store, {"storefront": 300_000})
    who = Principal("benchbench01", "bench", "storefront")
    t = time.perf_counter()
    for _ in range(n):
        rl.admit(who)
    us = (time.perf_counter() - t) / n * 1e6
    store.close()
    return us


def lane_cpu(models: str, redis_url: str, bodies: list[dict], rounds: int = 10, n: int = 1000) -> dict:
    """CPU microseconds per request through app.wsgi_app, keys off vs on, rounds interleaved."""
    import io

    from recsvc.app import create_app
    from recsvc.config import Config
    from recsvc.security.keys import create_key

    d = tempfile.mkdtemp(prefix="auth-lane-")
    secret = "bench-secret-0123456789abcdef"
    _, key = create_key(os.path.join(d, "keys.json"), secret, "storefront")
    apps = {mode: create_app(Config(models_dir=models, auth=mode == "on", keys_file=os.path.join(d, "keys.json"),
                                    keys_secret=secret, log_level="WARNING", event_log=None,
                                    rate_limits=(("storefront", 10**9),),
                                    store_url=f"{redis_url}?prefix=lane-{mode}")) for mode in ("off", "on")}
    raws = [json.dumps(b).encode() for b in bodies]

    def run(mode: str) -> float:
        app = apps[mode]
        t = time.process_time()
        for i in range(n):
            raw = raws[i % len(raws)]
            env = {"PATH_INFO": "/v1/recommendations", "REQUEST_METHOD": "POST", "CONTENT_TYPE": "application/json",
                   "CONTENT_LENGTH": str(len(raw)), "wsgi.input": io.BytesIO(raw), "SERVER_NAME": "bench",
                   "SERVER_PORT": "80", "wsgi.url_scheme": "http"}
            if mode == "on":
                env["HTTP_AUTHORIZATION"] = "Bearer " + key
            b"".join(app.wsgi_app(env, lambda status, headers: None))
        return (time.process_time() - t) / n * 1e6

    per = {"off": [], "on": []}
    for k in range(rounds):
        for mode in ("off", "on") if k % 2 == 0 else ("on", "off"):
            per[mode].append(run(mode))
    assert all(a.wsgi_app.answered == rounds * n for a in apps.values()), "the express lane did not answer"
    off, on = statistics.median(per["off"]), statistics.median(per["on"])
    return {"off_cpu_us": round(off, 1), "on_cpu_us": round(on, 1), "extra_us": round(on - off, 1),
            "ratio": round(off / on, 4), "rounds": per}


def lua_file(path: str, bodies: list[dict], key: str | None) -> str:
    with open(path, "w", encoding="utf-8") as f:
        f.write("wrk.method = 'POST'\nwrk.headers['Content-Type'] = 'application/json'\n")
        if key:
            f.write(f"wrk.headers['Authorization'] = 'Bearer {key}'\n")
        f.write("local b = {\n")
        f.writelines("[==[" + json.dumps(b) + "]==],\n" for b in bodies)
        f.write("}\nlocal i = 0\nrequest = function()\n  i = i + 1\n"
                "  return wrk.format(nil, '/v1/recommendations', nil, b[(i % #b) + 1])\nend\n")
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models-dir", help="an existing registry with a champion (default: synth + fit)")
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "recsvc-bench-auth"))
    ap.add_argument("--customers", type=int, default=20_000)
    ap.add_argument("--items", type=int, default=20_000)
    ap.add_argument("--stores", type=int, default=5)
    ap.add_argument("--events", type=int, default=400_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--duration", type=int, default=5,
                    help="seconds per measured run (short runs, many rounds: a shared machine moves under long ones)")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--out", default=RESULTS)
    a = ap.parse_args(argv)
    for tool in ("wrk", "redis-server"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} not found: apt-get install {tool}")
    gunicorn = os.path.join(os.path.dirname(sys.executable), "gunicorn")
    os.makedirs(a.work, exist_ok=True)
    small = micro()
    models = a.models_dir or build_model(a.work, a)
    bodies = request_bodies(model_dir(models), 1000, seed=5)
    logs = tempfile.mkdtemp(prefix="logs-", dir=a.work)
    keys_file = os.path.join(logs, "keys.json")
    env_keys = {k: v for k, v in os.environ.items() if not k.startswith(("RECSVC_", "PROMETHEUS_"))}
    key = subprocess.run([sys.executable, "-m", "recsvc", "keys", "create", "--role", "storefront", "--keys-file",
                          keys_file], check=True, capture_output=True, text=True, env=env_keys).stdout.strip()
    procs: list[subprocess.Popen] = []
    runs = []
    lane: dict = {}
    try:
        rport = free_port()
        procs.append(spawn(["redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--save", "",
                            "--appendonly", "no", "--dir", logs], os.environ.copy(), os.path.join(logs, "redis.log")))
        redis_url = f"redis://127.0.0.1:{rport}/0"
        time.sleep(0.5)
        small["rate_limit_redis_us"] = micro_redis(redis_url)
        lane = lane_cpu(models, redis_url, bodies)
        print(f"CPU per request through the lane: auth off {lane['off_cpu_us']:.0f} us, auth on {lane['on_cpu_us']:.0f} us "
              f"(throughput ratio {lane['ratio']:.3f})", flush=True)
        conf = os.path.join(ROOT, "recsvc", "gunicorn.conf.py")
        servers = {}
        for mode in ("off", "on"):
            port = free_port()
            env = {**env_keys, **BLAS1, "RECSVC_MODELS_DIR": models, "RECSVC_MODEL": "champion",
                   "RECSVC_STORE_URL": redis_url + f"?prefix=auth-{mode}", "RECSVC_AUTH": mode,
                   "RECSVC_KEYS_FILE": keys_file, "RECSVC_RATE_LIMIT": "storefront=1000000000"}
            log = os.path.join(logs, f"recsvc-{mode}.log")
            procs.append(spawn([gunicorn, "-c", conf, "recsvc.wsgi:app", "--bind", f"127.0.0.1:{port}",
                                "--workers", str(a.workers)], env, log, cwd=logs))
            servers[mode] = (f"http://127.0.0.1:{port}", procs[-1], log)
        for mode, (base, p, log) in servers.items():
            wait_ready(base + "/readyz", p, log)
            req = urllib.request.Request(base + "/v1/recommendations", data=json.dumps(bodies[0]).encode(),
                                         headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
                                         method="POST")
            with urllib.request.urlopen(req, timeout=10) as r:
                assert len(json.loads(r.read())["items"]) == 10
        luas = {"off": lua_file(os.path.join(logs, "off.lua"), bodies, None),
                "on": lua_file(os.path.join(logs, "on.lua"), bodies, key)}
        for k in range(a.rounds):
            run = {}
            for mode in ("off", "on") if k % 2 == 0 else ("on", "off"):
                base = servers[mode][0]
                wrk(base + "/v1/recommendations", luas[mode], 2, a.threads, a.connections)
                run[mode] = wrk(base + "/v1/recommendations", luas[mode], a.duration, a.threads, a.connections)
            run["ratio"] = run["on"]["rps"] / run["off"]["rps"]
            runs.append(run)
            print(f"round {k + 1}: auth off {run['off']['rps']:.0f} rps p99 {run['off']['p99_ms']:.1f} ms; auth on "
                  f"{run['on']['rps']:.0f} rps p99 {run['on']['p99_ms']:.1f} ms (non-2xx {run['on']['non_2xx']}); "
                  f"ratio {run['ratio']:.3f}", flush=True)
    finally:
        for p in reversed(procs):
            stop(p)
    median = {
        "off_rps": statistics.median(r["off"]["rps"] for r in runs),
        "on_rps": statistics.median(r["on"]["rps"] for r in runs),
        "off_p99_ms": statistics.median(r["off"]["p99_ms"] for r in runs),
        "on_p99_ms": statistics.median(r["on"]["p99_ms"] for r in runs),
        "ratio": statistics.median(r["ratio"] for r in runs),
    }
    median["holds"] = median["ratio"] >= 0.97
    result = {"benchmark": "auth_overhead", "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "setup": {"workers": a.workers, "wrk": f"-t{a.threads} -c{a.connections} -d{a.duration}s",
                        "rounds": a.rounds, "cpus": os.cpu_count(), "load_avg_1min_after": os.getloadavg()[0],
                        "model": os.path.basename(model_dir(models))},
              "in_process_us": {k: round(v, 3) for k, v in small.items()}, "lane_cpu": lane,
              "target": {"ratio_min": 0.97}, "median": median, "runs": runs}
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
    print("in process: " + ", ".join(f"{k} {v:.2f} us" for k, v in small.items()))
    print(f"median: auth off {median['off_rps']:.0f} rps, auth on {median['on_rps']:.0f} rps, ratio "
          f"{median['ratio']:.3f} ({'holds' if median['holds'] else 'short'}); p99 {median['off_p99_ms']:.1f} -> "
          f"{median['on_p99_ms']:.1f} ms; wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

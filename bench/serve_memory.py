"""Memory per gunicorn worker: the model is memory-mapped, so a worker's private memory must not
grow with the catalogue. Issue 4's figure: RSS and PSS per worker for 2 and 4 workers, model with
100k items x 64 factors and 1M known customers.

The model is written directly as an artifact with random factors (memory does not depend on how
the factors were learned), then each server gets 2,000 requests for random customers on all
channels so the pages the requests touch are mapped, and /proc smaps are read per worker.

    python bench/serve_memory.py [--items 100000 --customers 1000000 --factors 64]

Writes bench/results/serve_memory.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
import urllib.request

import numpy as np
import psutil

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

from serve_floor import BLAS1, free_port, spawn, stop, wait_ready

from recsvc.artifact.manifest import CHANNELS, NO_DATE_FROM, NO_DATE_TO, Manifest, utcnow
from recsvc.artifact.registry import Registry
from recsvc.artifact.write import write_model


def build(models: str, n_items: int, n_cust: int, k: int, seed: int = 0) -> str:
    """A complete artifact with random factors, written fast (vectorised)."""
    rng = np.random.default_rng(seed)
    item_ids = np.char.add("i", np.char.zfill(np.arange(n_items).astype(str), 7))
    cust_ids = np.char.add("c", np.char.zfill(np.arange(n_cust).astype(str), 8))
    per = 5
    hist_items = rng.integers(0, n_items, n_cust * per).astype(np.int32).reshape(n_cust, per)
    hist_items.sort(axis=1)
    stores = np.array(["s001", "s002", "s003", "s004", "s005"])
    top = np.tile(np.arange(200, dtype=np.int32), (len(stores), 1))
    arrays = {
        "item_ids": item_ids, "item_title": np.char.add("Item ", item_ids),
        "item_category": (np.arange(n_items) % 12).astype(np.int32),
        "category_names": np.array([f"cat{c:02d}" for c in range(12)]),
        "item_price": rng.uniform(5, 200, n_items).astype(np.float32),
        "item_valid_from": np.full(n_items, NO_DATE_FROM, np.int64),
        "item_valid_to": np.full(n_items, NO_DATE_TO, np.int64),
        "locale_names": np.array(["en-GB", "fr-FR"]), "item_locales": np.ones((n_items, 2), bool),
        "item_channels": np.ones((n_items, len(CHANNELS)), bool),
        "pop_global": rng.pareto(1.2, n_items).astype(np.float32),
        "customer_ids": cust_ids, "customer_segment": np.zeros(n_cust, np.int16),
        "segment_names": np.array(["all"]),
        "hist_indptr": np.arange(0, n_cust * per + 1, per, dtype=np.int64),
        "hist_items": hist_items.ravel(), "hist_flags": np.ones(n_cust * per, np.uint8),
        "hist_weights": np.ones(n_cust * per, np.float32),
        "store_ids": stores, "pop_store_items": top, "pop_store_scores": np.ones(top.shape, np.float32),
        "pop_locale_items": top[:2], "pop_locale_scores": np.ones((2, 200), np.float32),
        "pop_segment_items": top[:1], "pop_segment_scores": np.ones((1, 200), np.float32),
        "stock_indptr": np.arange(0, 5 * 1000 + 1, 1000, dtype=np.int64),
        "stock_items": np.tile(np.arange(1000, dtype=np.int32), 5), "stock_qty": np.full(5000, 3, np.int32),
        "item_factors": (rng.standard_normal((n_items, k)) * 0.1).astype(np.float32),
        "customer_factors": (rng.standard_normal((n_cust, k)) * 0.1).astype(np.float32),
    }
    when = utcnow()
    man = Manifest(model_id=f"als-{when.strftime('%Y%m%dT%H%M%SZ')}-mem{k:03d}", learner="als",
                   created_at=when.isoformat(), params={"factors": k}, seed=seed,
                   scoring={"kind": "factors", "foldin": {"regularization": 0.1, "alpha": 1.0},
                            "event_weights": {"view": 1.0, "purchase": 8.0}})
    write_model(models, man, arrays)
    Registry(models).set_alias("champion", man.model_id)
    return man.model_id


def smaps(pid: int) -> dict[str, float]:
    m = psutil.Process(pid).memory_full_info()
    return {"rss_mb": round(m.rss / 2**20, 1), "pss_mb": round(m.pss / 2**20, 1),
            "private_mb": round(m.uss / 2**20, 1)}


def post(url: str, body: dict) -> None:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        r.read()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--factors", type=int, default=64)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--out", default=os.path.join(HERE, "results", "serve_memory.json"))
    a = ap.parse_args(argv)
    work = tempfile.mkdtemp(prefix="recsvc-bench-mem-")
    models = os.path.join(work, "models")
    t = time.time()
    mid = build(models, a.items, a.customers, a.factors)
    print(f"model {mid}: {a.items} items x {a.factors}, {a.customers} customers, written in {time.time() - t:.0f}s")
    gunicorn = os.path.join(os.path.dirname(sys.executable), "gunicorn")
    conf = os.path.join(ROOT, "recsvc", "gunicorn.conf.py")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("RECSVC_")}, **BLAS1,
           "RECSVC_MODELS_DIR": models, "RECSVC_AUTH": "off", "RECSVC_STORE_URL": "memory://"}
    rng = random.Random(1)
    results = {"model": {"items": a.items, "customers": a.customers, "factors": a.factors,
                         "artifact_mb": round(sum(os.path.getsize(os.path.join(models, mid, f))
                                                  for f in os.listdir(os.path.join(models, mid))) / 2**20, 1)},
               "runs": {}}
    for workers in (2, 4):
        port = free_port()
        log = os.path.join(work, f"gunicorn-{workers}.log")
        p = spawn([gunicorn, "-c", conf, "recsvc.wsgi:app", "--bind", f"127.0.0.1:{port}", "--workers",
                   str(workers)], env, log, cwd=work)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_ready(base + "/readyz", p, log)
            for j in range(a.requests):
                post(base + "/v1/recommendations",
                     {"customer": {"customer_id": f"c{rng.randrange(a.customers):08d}"},
                      "context": {"channel": CHANNELS[j % 4]}, "n": 10})
            kids = psutil.Process(p.pid).children()
            per = [smaps(c.pid) for c in kids]
            results["runs"][str(workers)] = {"workers": per, "master": smaps(p.pid)}
            print(f"{workers} workers: " + "; ".join(f"rss {w['rss_mb']} MB pss {w['pss_mb']} MB "
                                                      f"private {w['private_mb']} MB" for w in per))
        finally:
            stop(p)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump({**results, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, f, indent=2)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

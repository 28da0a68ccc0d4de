"""`recsvc demo`: the embedded default, end to end on one machine with no Redis.

1. synthetic data and a trained model in the work folder, made by the training CLI run as
   subprocesses (`python -m training synth`, then `fit --alias champion`); a model trained there
   before is reused, so a second start takes seconds;
2. the in-memory store seeded with the demo customers' identifiers and consent (customers.csv) and
   the stores' stock (stock.csv), through the store interface like any other writer;
3. the URLs and three curl examples that work on that data, then the development server.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time

from recsvc.artifact.registry import Registry
from recsvc.errors import RecsvcError
from recsvc.state.base import Consent, StateStore

DEMO_DATA = {"customers": 2000, "items": 500, "stores": 5, "events": 50000, "seed": 1}
IDENTIFIER_COLUMNS = ("loyalty_card", "email_sha256", "phone_sha256")


class DemoError(RecsvcError):
    code = "demo_error"


def _run(cmd: list[str], what: str) -> str:
    print(f"recsvc demo: {what} ...", file=sys.stderr, flush=True)
    t0 = time.time()
    p = subprocess.run(
        cmd, check=False, stdout=subprocess.PIPE, stderr=sys.stderr, stdin=subprocess.DEVNULL, text=True
    )
    if p.returncode != 0:
        raise DemoError(f"{what} failed (exit {p.returncode}): {' '.join(cmd)}")
    print(f"recsvc demo: {what} done in {time.time() - t0:.1f}s", file=sys.stderr, flush=True)
    return p.stdout


def ensure_model(workdir: str) -> tuple[str, str, str]:
    """(data dir, models dir, champion model id), training only when the work folder has no model."""
    data, models = os.path.join(workdir, "data"), os.path.join(workdir, "models")
    reg = Registry(models)
    champion = reg.alias("champion")
    if champion and champion in reg.model_ids():
        print(f"recsvc demo: reusing model {champion} in {models}", file=sys.stderr, flush=True)
        return data, models, champion
    os.makedirs(workdir, exist_ok=True)
    if not os.path.exists(os.path.join(data, "interactions.csv")) and not any(
        os.path.exists(os.path.join(data, f"interactions.{e}")) for e in ("parquet", "jsonl")
    ):
        args = [a for k, v in DEMO_DATA.items() for a in (f"--{k}", str(v))]
        _run([sys.executable, "-m", "training", "synth", "--out", data, *args], "synthetic data")
    out = _run(
        [
            sys.executable,
            "-m",
            "training",
            "fit",
            "--data",
            data,
            "--models-dir",
            models,
            "--alias",
            "champion",
        ],
        "training the model",
    )
    lines = [x.strip() for x in out.splitlines() if x.strip()]
    champion = reg.alias("champion") or (lines[-1] if lines else "")
    if not champion:
        raise DemoError(f"training finished but {models} has no champion model")
    return data, models, champion


def _rows(path: str):
    if not os.path.exists(path):
        return
    with open(path, encoding="utf-8", newline="") as f:
        yield from csv.DictReader(f)


def seed_store(store: StateStore, data: str) -> dict[str, int]:
    """Identifiers, consent and stock of the demo data into live state; counts of what was written."""
    ids = consents = 0
    for row in _rows(os.path.join(data, "customers.csv")):
        cid = (row.get("customer_id") or "").strip()
        if not cid:
            continue
        for col in IDENTIFIER_COLUMNS:
            v = (row.get(col) or "").strip()
            if v:
                store.link_identifier(cid, col, v.lower() if col.endswith("_sha256") else v)
                ids += 1
        c = (row.get("consent_personalisation") or "").strip().lower()
        if c in ("true", "false", "1", "0"):
            store.set_consent(cid, Consent(granted=c in ("true", "1"), source="demo import"))
            consents += 1
    stock: dict[str, dict[str, int]] = {}
    for row in _rows(os.path.join(data, "stock.csv")):
        try:
            stock.setdefault(row["store_id"], {})[row["item_id"]] = max(0, int(float(row["quantity"])))
        except (KeyError, ValueError):
            continue
    for store_id, q in stock.items():
        store.set_stock(store_id, q, replace=True)
    return {
        "identifiers": ids,
        "consents": consents,
        "stores": len(stock),
        "stock_lines": sum(len(q) for q in stock.values()),
    }


def examples(base: str, data: str) -> list[str]:
    """Three curl commands that work on the demo data."""
    customer, card, store = None, None, None
    for row in _rows(os.path.join(data, "customers.csv")):
        customer = customer or row.get("customer_id")
        card = card or (row.get("loyalty_card") or None)
        if customer and card:
            break
    for row in _rows(os.path.join(data, "stock.csv")):
        store = row.get("store_id")
        break
    post = f"curl -s -X POST {base}/v1/recommendations -H 'Content-Type: application/json' -d "
    out = [post + "'" + json.dumps({"context": {"channel": "web"}, "n": 5}) + "'"]
    ctx = {"channel": "store", **({"store_id": store} if store else {})}
    if customer:
        out.append(
            post + "'" + json.dumps({"customer": {"customer_id": customer}, "context": ctx, "n": 5}) + "'"
        )
    if card:
        out.append(
            post
            + "'"
            + json.dumps(
                {"customer": {"identifier": {"type": "loyalty_card", "value": card}}, "context": ctx, "n": 5}
            )
            + "'"
        )
    if len(out) < 3:
        out.append(f"curl -s {base}/v1/models/current")
    return out


def run_demo(workdir: str, host: str, port: int, serve) -> int:
    from recsvc.app import create_app
    from recsvc.config import Config
    from recsvc.state.memory import InMemoryStore

    t0 = time.time()
    workdir = os.path.abspath(workdir)
    data, models, model_id = ensure_model(workdir)
    store = InMemoryStore()
    counts = seed_store(store, data)
    config = Config.from_env(models_dir=models, model="champion", store_url="memory://")
    app = create_app(config, store=store)
    base = f"http://{host}:{port}"
    print(
        f"\nrecsvc demo ready in {time.time() - t0:.0f}s: model {model_id}, "
        f"{counts['identifiers']} identifiers, {counts['stock_lines']} stock lines in {counts['stores']} stores "
        f"(work folder {workdir})\n"
        f"  API:         {base}/v1/recommendations\n"
        f"  docs:        {base}/docs   (OpenAPI: {base}/openapi.json)\n"
        f"  clerk page:  {base}/clerk/\n\ntry:",
        flush=True,
    )
    for cmd in examples(base, data):
        print("  " + cmd, flush=True)
    print(flush=True)
    serve(app, host, port)
    return 0

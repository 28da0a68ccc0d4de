"""`recsvc demo`: the embedded default, end to end on one machine with no Redis.

1. synthetic data and a trained model in the work folder, made by the training CLI run as
   subprocesses (`python -m training synth`, then `fit --alias champion`); a model trained there
   before is reused, so a second start takes seconds;
2. the in-memory store seeded with the demo customers' identifiers and consent (customers.csv), the
   stores' stock (stock.csv) and the data's last week of events, which the model was not trained on
   (`fit --until`): the clerk page shows that recent activity and fold-in uses it, as it would the
   events since last night's training; all through the store interface like any other writer;
3. one API key per role (storefront, clerk of the first store, analyst, admin) in `<work>/keys.json`,
   made afresh at each start (the previous demo keys are revoked: a key is shown only once);
4. the URLs, the keys and three curl examples that work on that data, then the development server.
   `RECSVC_AUTH=off` runs it without keys (with the warning).
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import subprocess
import sys
import time

from recsvc.artifact.registry import Registry
from recsvc.core.types import LiveEvent
from recsvc.errors import RecsvcError
from recsvc.state.base import Consent, StateStore, StoredEvent

DEMO_DATA = {"customers": 2000, "items": 500, "stores": 5, "events": 50000, "seed": 1}
LIVE_DAYS = 7  # the data's last week is not trained on: it is replayed into live state at start, as the
# events since last night's training would be (the clerk page shows them, fold-in uses them)
DAY_S = 86400
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
        today = time.strftime("%Y-%m-%d", time.gmtime(time.time() + DAY_S))  # ends at tonight's midnight
        _run([sys.executable, "-m", "training", "synth", "--out", data, *args, "--end", today], "synthetic data")
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
            "--until",
            str(int(live_since(data))),
        ],
        "training the model",
    )
    lines = [x.strip() for x in out.splitlines() if x.strip()]
    champion = reg.alias("champion") or (lines[-1] if lines else "")
    if not champion:
        raise DemoError(f"training finished but {models} has no champion model")
    return data, models, champion


def _last_timestamp(data: str) -> float:
    last = 0.0
    for row in _rows(os.path.join(data, "interactions.csv")):
        last = max(last, _epoch(row.get("timestamp") or ""))
    return last


def live_since(data: str) -> float:
    """Interactions from this time on are live events, not training data."""
    return _last_timestamp(data) - LIVE_DAYS * DAY_S


def _epoch(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return dt.datetime.fromisoformat(text).timestamp()
    except ValueError:
        return 0.0


def _live_events(data: str, since: float) -> list[StoredEvent]:
    out = []
    for row in _rows(os.path.join(data, "interactions.csv")):
        ts = _epoch(row.get("timestamp") or "")
        if ts < since or not row.get("customer_id"):
            continue
        value = row.get("value") or ""
        out.append(StoredEvent(
            event_id=row.get("event_id") or f"demo-{len(out)}", customer_id=row["customer_id"],
            event=LiveEvent(item_id=row["item_id"], event=row["event"], channel=row["channel"], ts=ts,
                            store_id=row.get("store_id") or None, quantity=float(row.get("quantity") or 1),
                            value=float(value) if value else None,
                            recommendation_id=row.get("recommendation_id") or None),
            actor_type=row.get("actor_type") or None, actor_id=row.get("actor_id") or None,
            session_id=row.get("session_id") or None))
    return out


def _showcase_card(data: str, active: set[str]) -> str | None:
    """The loyalty card of a consenting customer with live events: what to type on the clerk page."""
    for row in _rows(os.path.join(data, "customers.csv")):
        if (row.get("customer_id") in active and (row.get("loyalty_card") or "").strip()
                and (row.get("consent_personalisation") or "").strip().lower() in ("true", "1")):
            return row["loyalty_card"].strip()
    return None


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
    live = _live_events(data, live_since(data))
    for a in range(0, len(live), 1000):
        store.append_events(live[a:a + 1000])
    return {
        "live_events": len(live),
        "showcase_card": _showcase_card(data, {e.customer_id for e in live}),
        "identifiers": ids,
        "consents": consents,
        "stores": len(stock),
        "stock_lines": sum(len(q) for q in stock.values()),
    }


DEMO_ROLES = ("storefront", "clerk", "analyst", "admin")


def first_store(data: str) -> str:
    for row in _rows(os.path.join(data, "stock.csv")):
        if row.get("store_id"):
            return row["store_id"]
    return "s001"


def demo_keys(keys_file: str, secret: str | None, store: str) -> dict[str, str]:
    """{role: key}: the demo's keys, made afresh (earlier demo keys revoked)."""
    from recsvc.security.keys import KeyError_, create_key, revoke_key

    out = {}
    for role in DEMO_ROLES:
        try:
            revoke_key(keys_file, f"demo-{role}")
        except KeyError_:
            pass
        _, out[role] = create_key(keys_file, secret, role, store_id=store if role == "clerk" else None,
                                  name=f"demo-{role}")
    return out


def examples(base: str, data: str, key: str | None = None) -> list[str]:
    """Three curl commands that work on the demo data (sending `key` when auth is on)."""
    customer, card, store = None, None, None
    for row in _rows(os.path.join(data, "customers.csv")):
        customer = customer or row.get("customer_id")
        card = card or (row.get("loyalty_card") or None)
        if customer and card:
            break
    for row in _rows(os.path.join(data, "stock.csv")):
        store = row.get("store_id")
        break
    auth = f"-H 'Authorization: Bearer {key}' " if key else ""
    post = f"curl -s -X POST {base}/v1/recommendations {auth}-H 'Content-Type: application/json' -d "
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
        out.append(f"curl -s {base}/readyz")
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
    config = Config.from_env(models_dir=models, model="champion", store_url="memory://",
                             keys_file=os.path.join(workdir, "keys.json"))
    store_id = first_store(data)
    keys = demo_keys(config.keys_file, config.keys_secret, store_id) if config.auth else {}
    app = create_app(config, store=store)
    base = f"http://{host}:{port}"
    print(
        f"\nrecsvc demo ready in {time.time() - t0:.0f}s: model {model_id}, "
        f"{counts['identifiers']} identifiers, {counts['stock_lines']} stock lines in {counts['stores']} stores, "
        f"{counts['live_events']} live events of the last {LIVE_DAYS} days "
        f"(work folder {workdir})\n"
        f"  API:         {base}/v1/recommendations\n"
        f"  docs:        {base}/docs   (OpenAPI: {base}/openapi.json)\n"
        f"  clerk page:  {base}/clerk/"
        + (f"   (then find loyalty card {counts['showcase_card']})" if counts.get("showcase_card") else ""),
        flush=True,
    )
    if keys:
        print(f"\nAPI keys (made now, shown once; only their hashes are kept in {config.keys_file}):", flush=True)
        for role in DEMO_ROLES:
            bound = f" (store {store_id}: sign in to the clerk page with it)" if role == "clerk" else ""
            print(f"  {role + ':':12} {keys[role]}{bound}", flush=True)
    else:
        print("\nRECSVC_AUTH=off: no API keys needed (never like this outside a test machine)", flush=True)
    print("\ntry:", flush=True)
    for cmd in examples(base, data, keys.get("storefront")):
        print("  " + cmd, flush=True)
    print(flush=True)
    serve(app, host, port)
    return 0

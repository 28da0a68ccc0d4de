"""Redis sizing: bytes of live state per customer and per event, measured with MEMORY USAGE on a store
seeded through RedisStore (the service's own writes) in a redis-server of its own.

Seed: N customers with a mix of activity (60% light: 10 events, 30% medium: 50, 10% heavy: 250, more
than the 200 a recent list keeps), web/app/store events with a store on store events; 50% with a
recorded consent, 70% with a loyalty card and 40% with a hashed email linked. Then every key of the
prefix is measured (`MEMORY USAGE key SAMPLES 0`), grouped by kind, and extrapolated per million
customers; INFO's used_memory before and after says what the key table itself adds.

    python bench/redis_sizing.py [--customers 3000]

Prints a table; writes bench/results/redis_sizing.json. Needs redis-server on the PATH.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict

import redis

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from recsvc.core.types import LiveEvent
from recsvc.state.base import Consent, Provenance, StoredEvent
from recsvc.state.redis import RedisStore
from tests.service import free_port

RESULTS = os.path.join(ROOT, "bench", "results", "redis_sizing.json")
PREFIX = "recsvc"
KINDS = [  # (kind, pattern of the key after the prefix)
    ("cust events (recent list)", r"cust:\{.*\}:events"),
    ("cust evids (dedup zset)", r"cust:\{.*\}:evids"),
    ("cust xids (erasure index)", r"cust:\{.*\}:xids"),
    ("cust consent", r"cust:\{.*\}:consent"),
    ("cust ids (identifiers)", r"cust:\{.*\}:ids"),
    ("cust meta", r"cust:\{.*\}:meta"),
    ("ident (identifier -> customer)", r"ident:\{.*\}"),
    ("events stream", r"events"),
]


def seed(store: RedisStore, n: int, rng: random.Random) -> dict:
    events = 0
    batch: list[StoredEvent] = []
    now = time.time()
    for c in range(n):
        cid = f"c{c:07d}"
        k = rng.random()
        count = 10 if k < 0.6 else 50 if k < 0.9 else 250
        for j in range(count):
            ch = rng.choice(("web", "web", "app", "store"))
            ev = LiveEvent(item_id=f"{rng.randrange(20000):010d}", event=rng.choice(("view", "view", "click",
                           "add_to_cart", "purchase")), channel=ch, ts=now - rng.randrange(86400 * 30),
                           store_id=f"s{rng.randrange(50):03d}" if ch == "store" else None)
            batch.append(StoredEvent(event_id=f"{cid}-{j}-{rng.getrandbits(48):012x}", customer_id=cid, event=ev))
            if len(batch) >= 1000:
                store.append_events(batch)
                events += len(batch)
                batch = []
        if rng.random() < 0.5:
            store.set_consent(cid, Consent(granted=rng.random() < 0.8, source="web settings", channel="web", at=now))
        if rng.random() < 0.7:
            store.link_identifier(cid, "loyalty_card", f"4970{c:012d}", Provenance(at=now, by_type="clerk",
                                                                             by_id="clerk-1", channel="store"))
        if rng.random() < 0.4:
            store.link_identifier(cid, "email_sha256", hashlib.sha256(f"{cid}@example.com".encode()).hexdigest(),
                                  Provenance(at=now, by_type="customer", channel="web"))
    if batch:
        store.append_events(batch)
        events += len(batch)
    return {"customers": n, "events": events}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--customers", type=int, default=3000)
    args = p.parse_args()
    work = tempfile.mkdtemp(prefix="recsvc-sizing-")
    port = free_port()
    proc = subprocess.Popen([shutil.which("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", work], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        r = redis.Redis(port=port, decode_responses=True)
        for _ in range(100):
            try:
                r.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        store = RedisStore.from_url(f"redis://127.0.0.1:{port}/0?prefix={PREFIX}", timeout_ms=5000)
        store.r.set(f"{PREFIX}:erasure-key", "k" * 64)  # as the service makes it, so it is not counted below
        before = int(r.info("memory")["used_memory"])
        counts = seed(store, args.customers, random.Random(1))
        after = int(r.info("memory")["used_memory"])
        sizes: dict[str, list[int]] = defaultdict(list)
        other = 0
        for key in r.scan_iter(match=f"{PREFIX}:*", count=5000):
            rest = key[len(PREFIX) + 1:]
            kind = next((k for k, pat in KINDS if re.fullmatch(pat, rest)), None)
            b = int(r.memory_usage(key, samples=0) or 0)
            if kind is None:
                other += b
            else:
                sizes[kind].append(b)
        stream_len = r.xlen(f"{PREFIX}:events")
        version = r.info("server")["redis_version"]
        store.close()
        r.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)
    n = counts["customers"]
    rows = {}
    for kind, _ in KINDS:
        xs = sizes.get(kind, [])
        rows[kind] = {"keys": len(xs), "bytes": sum(xs), "per_customer": round(sum(xs) / n, 1),
                      "mean_per_key": round(sum(xs) / len(xs), 1) if xs else 0, "max_per_key": max(xs, default=0)}
    live = sum(v["bytes"] for k, v in rows.items() if k != "events stream")
    stream = rows["events stream"]["bytes"]
    out = {
        "redis_version": version,
        "seed": counts | {"mix": "60% 10 events, 30% 50, 10% 250; 50% consent, 70% loyalty card, 40% email"},
        "by_kind": rows,
        "other_keys_bytes": other,
        "live_state_bytes_per_customer": round(live / n, 1),
        "live_state_gib_per_million_customers": round(live / n * 1e6 / 2**30, 2),
        "stream_bytes_per_event": round(stream / max(stream_len, 1), 1),
        "stream_gib_per_million_events": round(stream / max(stream_len, 1) * 1e6 / 2**30, 3),
        "used_memory_delta_bytes": after - before,
        "used_memory_delta_per_customer_without_stream": round((after - before - stream) / n, 1),
    }
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as f:
        json.dump(out, f, indent=2)
        f.write("\n")
    print(f"redis {version}: {n} customers, {counts['events']} events")
    print(f"{'kind':34} {'keys':>7} {'B/customer':>11} {'B/key mean':>11} {'B/key max':>10}")
    for kind, v in rows.items():
        print(f"{kind:34} {v['keys']:>7} {v['per_customer']:>11} {v['mean_per_key']:>11} {v['max_per_key']:>10}")
    print(f"live state: {out['live_state_bytes_per_customer']} B/customer = "
          f"{out['live_state_gib_per_million_customers']} GiB per million customers (stream apart)")
    print(f"stream: {out['stream_bytes_per_event']} B/event = {out['stream_gib_per_million_events']} GiB per million "
          f"events until exported and trimmed")
    print(f"used_memory grew {out['used_memory_delta_bytes']} B "
          f"({out['used_memory_delta_per_customer_without_stream']} B/customer without the stream)")
    print(f"written to {os.path.relpath(RESULTS, ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`recsvc-train export-events --store-url URL --out DIR`: today's live events as a data directory that
`recsvc-train fit --data DIR` reads, so tomorrow's model learns from every channel's events.

Sources (the service's durable record of acknowledged events):
- `redis://host:port/db?prefix=P[&cluster=1]` — the event streams that the service's event script
  appends to (one entry per accepted event, field `e` = the event's JSON): `P:events`, and in the
  sharded layout one per bucket (training/redis_streams.py), merged in arrival order. Read with redis-py
  directly: training imports nothing of `recsvc.state`, so the key layout below repeats the one
  documented in `recsvc/state/base.py` (a test checks that they agree).
- `file://PATH` — the embedded store's append-only log (`RECSVC_EVENT_LOG`); `memory://` reads the log
  at `$RECSVC_EVENT_LOG`, else `recsvc-events.jsonl` in the working folder (the service's default).

Erased customers are left out twice over: their entries were deleted at erasure, and any event of a
customer whose keyed hash is a tombstone is skipped (key: `$RECSVC_ERASURE_KEY`, else the generated key
the service keeps at `P:erasure-key` or beside the log). Events of an anonymous profile that a customer
adopted (a device that later logged in) are exported under the customer's id. Each `event_id` is
written once.

Writes `interactions.csv` (contract columns + `event_id`, `store_id`, `quantity`, `value`, `session_id`,
`recommendation_id`, `actor_type`, `actor_id`) and, with `--catalog-from`, the catalog: copied from a
data directory (with its `stores.*` and `stock.*`), or written from a model (id, alias or path).
Returns counts; the CLI prints them as JSON (`last_stream_id`: trim the stream up to it once the export
is safe, `XTRIM P:events MINID <id>`; keep the id's sequence part +1 to include it; `last_stream_ids`:
the same per stream, in the sharded layout, where each stream is trimmed with its own id).
"""

from __future__ import annotations

import datetime as dt
import glob
import hashlib
import hmac
import os
import shutil
from urllib.parse import urlsplit

import numpy as np
import orjson
import pandas as pd

from training.errors import ConfigError, DataError
from training.redis_streams import adopted_keys, connect, merged, stream_keys, tomb_hash

COLUMNS = ("customer_id", "item_id", "event", "channel", "timestamp", "event_id", "store_id", "quantity",
           "value", "session_id", "recommendation_id", "actor_type", "actor_id")
DEFAULT_LOG = "recsvc-events.jsonl"
PAGE = 10_000


# -- the Redis key layout (recsvc/state/base.py)
def stream_key(prefix: str) -> str:
    return f"{prefix}:events"


def adopted_key(prefix: str) -> str:
    return f"{prefix}:adopted"


def erasure_key_name(prefix: str) -> str:
    return f"{prefix}:erasure-key"


def tomb_pattern(prefix: str) -> str:
    return f"{prefix}:tomb:*"


def tombstone_id(key: bytes, customer_id: str) -> str:
    return hmac.new(key, customer_id.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


class _Collected:
    """Events in stream/log order, the tombstones and adoptions that apply to them."""

    def __init__(self):
        self.events: list[dict] = []
        self.tombs: set[str] = set()
        self.adopted: dict[str, str] = {}
        self.key: bytes | None = None
        self.last_id: str | None = None  # of the single-server stream P:events
        self.last_ids: dict[str, str] = {}  # stream -> its last entry read


def _env_key() -> bytes | None:
    k = os.environ.get("RECSVC_ERASURE_KEY", "").strip()
    return k.encode("utf-8") if k else None


def read_redis(url: str) -> _Collected:
    import redis

    parts = urlsplit(url)
    out = _Collected()
    try:
        r, prefix = connect(url)
    except redis.exceptions.RedisClusterException as e:
        raise DataError(f"export-events: cannot reach the cluster at {parts.hostname}:{parts.port}: {e}") from e
    try:
        for key, entry_id, fields in merged(r, stream_keys(r, prefix), page=PAGE):
            if "e" in fields:
                out.events.append(orjson.loads(fields["e"]))
            out.last_ids[key] = entry_id
        out.last_id = out.last_ids.get(stream_key(prefix))
        out.tombs = {tomb_hash(k) for k in r.scan_iter(match=tomb_pattern(prefix), count=1000)}
        for key in adopted_keys(r, prefix):
            out.adopted.update(r.hgetall(key))
        stored = r.get(erasure_key_name(prefix))
        out.key = _env_key() or (stored.encode() if stored else None)
    except redis.exceptions.ConnectionError as e:
        raise DataError(f"export-events: cannot read {parts.hostname}:{parts.port or 6379}: {e}") from e
    finally:
        r.close()
    return out


def read_log(path: str) -> _Collected:
    """Replay the embedded log: events, tombstones, and which anonymous profile each link adopted."""
    if not os.path.exists(path):
        raise DataError(f"export-events: no event log at {path} (set --store-url file://PATH to the "
                        "service's RECSVC_EVENT_LOG)")
    out = _Collected()
    owner: dict[str, str] = {}  # identifier key -> customer
    anon: set[str] = set()
    adopted_by_link: dict[tuple[str, str], str] = {}
    with open(path, "rb") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = orjson.loads(line)
            except orjson.JSONDecodeError:
                if not line.endswith(b"\n"):  # a torn last line: never acknowledged
                    break
                raise DataError(f"export-events: {path}, line {n}: not JSON") from None
            t = rec.get("t")
            if t == "ev":
                out.events.append(rec["e"])
            elif t == "erase":
                out.tombs.add(rec["h"])
            elif t == "anon":
                owner[rec["k"]] = rec["c"]
                anon.add(rec["c"])
            elif t == "link":
                before, c, k = owner.get(rec["k"]), rec["c"], rec["k"]
                owner[k] = c
                if before in anon and before not in out.adopted:
                    out.adopted[before] = c
                    adopted_by_link[(c, k)] = before
            elif t == "unlink":
                c, k = rec["c"], rec["k"]
                a = adopted_by_link.pop((c, k), None)
                if a is not None:
                    out.adopted.pop(a, None)
                    owner[k] = a
                else:
                    owner.pop(k, None)
    try:
        with open(path + ".erasure-key", "rb") as f:
            stored = f.read().strip()
    except FileNotFoundError:
        stored = None
    out.key = _env_key() or stored or None
    return out


def _log_path(url: str) -> str:
    if url.startswith("file://"):
        p = urlsplit(url)
        return (p.netloc + p.path) or DEFAULT_LOG
    return os.environ.get("RECSVC_EVENT_LOG") or DEFAULT_LOG


def collect(store_url: str) -> _Collected:
    if store_url.startswith(("redis://", "rediss://", "unix://")):
        return read_redis(store_url)
    if store_url.startswith(("file://", "memory://")):
        return read_log(_log_path(store_url))
    raise ConfigError(f"--store-url {store_url!r}: expected redis://host:port/db[?prefix=P], file://PATH "
                      "(the embedded event log) or memory://")


def to_frame(c: _Collected) -> tuple[pd.DataFrame, dict]:
    """Rows to export, plus what was left out and why."""
    if not c.events:
        return pd.DataFrame(columns=list(COLUMNS)), {"events": 0, "erased_skipped": 0, "duplicates_skipped": 0}
    df = pd.DataFrame.from_records(c.events)
    for col in ("store_id", "value", "session_id", "recommendation_id", "actor_type", "actor_id", "quantity"):
        if col not in df.columns:
            df[col] = None
    df["customer_id"] = df["customer_id"].astype(str)
    skipped = 0
    if c.tombs:
        if c.key is None:
            raise ConfigError("export-events: the store has erasure tombstones but no erasure key is known; "
                              "set RECSVC_ERASURE_KEY to the service's value")
        ids = df["customer_id"].unique()
        gone = {i for i in ids if tombstone_id(c.key, i) in c.tombs}
        if gone:
            keep = ~df["customer_id"].isin(gone).to_numpy()
            skipped = int((~keep).sum())
            df = df[keep]
    if c.adopted:
        df["customer_id"] = df["customer_id"].replace(c.adopted)
    before = len(df)
    df = df.drop_duplicates(subset="event_id", keep="first")
    ts = pd.to_datetime(df["ts"].astype(float), unit="s", utc=True)
    df["timestamp"] = ts.dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    df = df.iloc[np.argsort(df["ts"].to_numpy(dtype=float), kind="stable")]
    return df.loc[:, list(COLUMNS)], {"events": len(df), "erased_skipped": skipped,
                                      "duplicates_skipped": before - len(df)}


def _copy_catalog(src: str, out: str, models_dir: str | None) -> str:
    """A data directory's catalog (and stores/stock) or a model's catalog arrays -> out/catalog.*."""
    if os.path.isdir(src) and glob.glob(os.path.join(src, "catalog.*")):
        for stem in ("catalog", "stores", "stock"):
            for p in glob.glob(os.path.join(src, f"{stem}.*")):
                shutil.copyfile(p, os.path.join(out, os.path.basename(p)))
        return "data"
    from recsvc.artifact.read import load_model
    from recsvc.artifact.registry import Registry
    from training.config import models_dir as default_models_dir

    model = load_model(Registry(default_models_dir(models_dir)).resolve(src))
    write_catalog(model, os.path.join(out, "catalog.csv"))
    return "model"


def write_catalog(model, path: str) -> None:
    """The catalog a model was trained with, as catalog.csv (restrictions written only where they exist)."""
    from recsvc.artifact.manifest import CHANNELS, NO_DATE_FROM, NO_DATE_TO

    n = model.n_items
    cats = np.asarray(model.category_names).astype(str)
    chan = np.asarray(model.item_channels, dtype=bool)
    loc = np.asarray(model.item_locales, dtype=bool)
    loc_names = np.asarray(model.locale_names).astype(str)

    def lists(mask: np.ndarray, names) -> list[str]:
        full = mask.all(axis=1) if mask.shape[1] else np.ones(n, dtype=bool)
        return ["" if full[i] else ";".join(str(names[k]) for k in np.flatnonzero(mask[i])) for i in range(n)]

    def dates(a: np.ndarray, none: int) -> list[str]:
        return ["" if v == none else dt.datetime.fromtimestamp(int(v), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                for v in np.asarray(a)]

    frame = pd.DataFrame({
        "item_id": np.asarray(model.item_ids).astype(str),
        "title": np.asarray(model.item_title).astype(str),
        "category": cats[np.asarray(model.item_category)],
        "price": np.asarray(model.item_price, dtype=np.float64),
        "channels": lists(chan, CHANNELS),
        "locales": lists(loc, loc_names),
        "valid_from": dates(model.item_valid_from, NO_DATE_FROM),
        "valid_to": dates(model.item_valid_to, NO_DATE_TO),
    })
    frame.to_csv(path, index=False)


def export_events(store_url: str, out: str, catalog_from: str | None = None,
                  models_dir: str | None = None) -> dict:
    """Write out/interactions.csv (and the catalog); returns counts for the CLI to print."""
    collected = collect(store_url)
    frame, counts = to_frame(collected)
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "interactions.csv")
    tmp = path + ".tmp"
    frame.to_csv(tmp, index=False)
    os.replace(tmp, path)
    result = {**counts, "customers": int(frame["customer_id"].nunique()) if len(frame) else 0,
              "out": out, "last_stream_id": collected.last_id}
    if len(collected.last_ids) > 1 or (collected.last_ids and collected.last_id is None):
        result["last_stream_ids"] = collected.last_ids
    if catalog_from:
        result["catalog"] = _copy_catalog(catalog_from, out, models_dir)
    return result

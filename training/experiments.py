"""`recsvc-train experiments report EXP_ID --store-url URL [--out DIR]`: an experiment's results, read
straight from the service's Redis, computed by the same code as `GET /v1/experiments/{id}/report`
(`recsvc.core.experiment_attribution` + `recsvc.core.experiment_stats`).

Training imports nothing of `recsvc.experiments` or `recsvc.state`, so the key layout below repeats
the one documented in `recsvc/experiments/backend.py`; a test writes through the service and reads
through these functions, so the two cannot drift apart.

Writes `report.json`, `report.md` (the text digest) and `report.png` (one panel per metric, bars per
channel and variant with 95% intervals) into `--out` (default `experiment-<id>/`).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterator

import orjson

from recsvc.core.experiment_attribution import attribute, design_from_definition, tables_from_records
from recsvc.core.experiment_chart import render_png
from recsvc.core.experiment_stats import analyse, summary_lines
from training import redis_streams
from training.errors import ConfigError, DataError

PAGE = 5000


# -- the Redis key layout (recsvc/experiments/backend.py)
def defs_key(prefix: str) -> str:
    return f"{prefix}:exp:{{registry}}:defs"


def shown_key(prefix: str, experiment_id: str) -> str:
    return f"{prefix}:exp:{{{experiment_id}}}:shown"


def events_key(prefix: str) -> str:
    """The single-server layout's event stream (the sharded layout's: training/redis_streams.py)."""
    return f"{prefix}:events"


def connect(url: str):
    """redis://host:port/db?prefix=P[&cluster=1] -> (client, prefix)."""
    import redis

    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(f"--store-url {url}: experiments live in the service's Redis (redis://host:port/db"
                          f"?prefix=NAME); the embedded memory:// store keeps them in the service process only")
    try:
        return redis_streams.connect(url)
    except redis.exceptions.RedisClusterException as e:
        raise DataError(f"experiments report: cannot reach the cluster at {url.split('?')[0]}: {e}") from e


def _pages(r, key: str, lo: str = "-", hi: str = "+") -> Iterator[dict]:
    start = lo
    while True:
        page = r.xrange(key, min=start, max=hi, count=PAGE)
        for _, fields in page:
            yield fields
        if len(page) < PAGE:
            return
        start = "(" + page[-1][0]


def read_definition(r, prefix: str, experiment_id: str) -> dict:
    raw = r.hget(defs_key(prefix), experiment_id)
    if raw is None:
        known = sorted(r.hkeys(defs_key(prefix)))
        raise DataError(f"experiments report: no experiment {experiment_id!r} under prefix {prefix!r} "
                        f"(known: {', '.join(known) or 'none'})")
    return orjson.loads(raw)


def read_impressions(r, prefix: str, experiment_id: str) -> Iterator[dict]:
    return _pages(r, shown_key(prefix, experiment_id))


def read_events(r, prefix: str, since: float, until: float | None) -> Iterator[dict]:
    """The live-event streams (every bucket's) between two times, in arrival order (entry ids are
    arrival ms; a day of slack each side)."""
    lo = str(max(0, int((since - 86400) * 1000)))
    hi = "+" if until is None else str(int((until + 86400) * 1000))
    for _, _, fields in redis_streams.merged(r, redis_streams.stream_keys(r, prefix), lo, hi, PAGE):
        if "e" in fields:
            yield orjson.loads(fields["e"])


def _price_lookup(models_dir: str | None, model: str | None):
    """Catalogue prices for purchases sent without `value` (as the service uses its champion's)."""
    if model is None:
        return None
    from recsvc.artifact.read import load_model
    from recsvc.artifact.registry import ArtifactError, Registry, RegistryError

    try:
        m = load_model(Registry(models_dir or os.environ.get("RECSVC_MODELS_DIR") or "models").resolve(model))
    except (ArtifactError, RegistryError, OSError, ValueError):
        return None
    if m.item_price is None:
        return None

    def price_of(item_id: str) -> float | None:
        idx = m.item_index(item_id)
        if idx < 0:
            return None
        p = float(m.item_price[idx])
        return p if math.isfinite(p) else None

    return price_of


def compute_report(store_url: str, experiment_id: str, models_dir: str | None = None,
                   model: str | None = "champion", now: float | None = None) -> dict:
    import redis

    now = time.time() if now is None else now
    r, prefix = connect(store_url)
    try:
        d = read_definition(r, prefix, experiment_id)
        design = design_from_definition(d)
        closes = design.closes_at()
        until = None if closes is None else closes + design.window_s
        imp, ev, _ = tables_from_records(design, read_impressions(r, prefix, experiment_id),
                                         read_events(r, prefix, design.start, until),
                                         _price_lookup(models_dir, model))
    except redis.exceptions.ConnectionError as e:
        raise DataError(f"experiments report: cannot read {store_url.split('?')[0]}: {e}") from e
    finally:
        r.close()
    report = analyse(design, attribute(design, imp, ev), status=design.state(now), now=now)
    report["final"] = closes is not None and now > closes + design.window_s
    report["definition"] = d
    return report


def draw_png(report: dict, path: str) -> None:
    """The chart the service answers to `?format=png`."""
    with open(path, "wb") as f:
        f.write(render_png(report))


def write_report(report: dict, out: str) -> dict[str, str]:
    os.makedirs(out, exist_ok=True)
    paths = {k: os.path.join(out, f"report.{k}") for k in ("json", "md", "png")}
    with open(paths["json"], "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2, sort_keys=True)
    with open(paths["md"], "w", encoding="utf-8") as f:
        f.write(f"# Experiment {report['experiment_id']}\n\n```\n" + "\n".join(summary_lines(report))
                + "\n```\n\nTests: " + "; ".join(f"{k}: {v}" for k, v in report["tests"].items())
                + "\n\n![results](report.png)\n")
    draw_png(report, paths["png"])
    return paths

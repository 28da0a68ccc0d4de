"""How training reads the service's Redis: the URL (`?prefix=`, `?cluster=1`), the event streams and
the adoption hashes of either key layout, merged in stream-id (arrival) order.

Training imports nothing of `recsvc.state`, so the names below repeat recsvc/state/redis_layout.py
(tests write through the service and read through these functions): the single-server layout has one
stream `P:events` and one hash `P:adopted`; the sharded layout (N recorded at `P:shards`) has one of
each per bucket, `P:events:{P:b<k>}` and `P:adopted:{P:b<k>}`. Both are read, so data written before
a move to the sharded layout is still exported.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

OWN_URL_PARAMETERS = ("prefix", "stream_maxlen", "shards", "cluster")


def connect(url: str, socket_timeout: float = 30, connect_timeout: float = 5):
    """redis://host:port/db?prefix=P[&cluster=1] -> (client, prefix): a RedisCluster with cluster=1."""
    import redis

    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefix = next((v for k, v in query if k == "prefix"), "recsvc") or "recsvc"
    cluster = next((v for k, v in query if k == "cluster"), "0").lower() in ("1", "yes", "true")
    clean = urlunsplit(parts._replace(query=urlencode([(k, v) for k, v in query if k not in OWN_URL_PARAMETERS])))
    kw = {"decode_responses": True, "socket_timeout": socket_timeout, "socket_connect_timeout": connect_timeout}
    if cluster:
        from redis.cluster import RedisCluster

        return RedisCluster.from_url(clean, **kw), prefix
    return redis.Redis.from_url(clean, **kw), prefix


def shards(r, prefix: str) -> int:
    return int(r.get(f"{prefix}:shards") or 0)


def stream_keys(r, prefix: str) -> list[str]:
    """Every event stream the prefix may hold: the single-server one, then one per bucket."""
    return [f"{prefix}:events"] + [f"{prefix}:events:{{{prefix}:b{k}}}" for k in range(shards(r, prefix))]


def adopted_keys(r, prefix: str) -> list[str]:
    return [f"{prefix}:adopted"] + [f"{prefix}:adopted:{{{prefix}:b{k}}}" for k in range(shards(r, prefix))]


def tomb_hash(key_name: str) -> str:
    """The keyed hash in a tombstone key: `P:tomb:{<hash>}` or `P:tomb:{P:b<k>}:<hash>`."""
    last = key_name.rsplit(":", 1)[-1]
    return last[1:-1] if last.startswith("{") and last.endswith("}") else last


def entries(r, key: str, lo: str = "-", hi: str = "+", page: int = 5000) -> Iterator[tuple[str, dict]]:
    """(entry id, fields) of one stream, paged."""
    start = lo
    while True:
        got = r.xrange(key, min=start, max=hi, count=page)
        yield from got
        if len(got) < page:
            return
        start = "(" + got[-1][0]


def _order(entry: tuple[str, dict]) -> tuple[int, int]:
    ms, _, seq = entry[0].partition("-")
    return int(ms), int(seq or 0)


def merged(r, keys: list[str], lo: str = "-", hi: str = "+", page: int = 5000) -> Iterator[tuple[str, str, dict]]:
    """(stream, entry id, fields) of several streams in arrival (id) order."""
    def tagged(n: int, key: str):
        for entry_id, fields in entries(r, key, lo, hi, page):
            yield _order((entry_id, fields)), n, key, entry_id, fields

    for _, _, key, entry_id, fields in heapq.merge(*(tagged(n, key) for n, key in enumerate(keys))):
        yield key, entry_id, fields

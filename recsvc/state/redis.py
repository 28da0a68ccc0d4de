"""RedisStore: live state shared by every worker and instance (key layout in recsvc/state/base.py).

Request-path reads are one pipelined round trip (transaction=False). Every call has the configured
socket timeouts and one immediate retry (a pooled connection may predate a Redis restart); after a
failure the store answers StoreUnavailable at once for `breaker_s` seconds, so a slow or dead Redis
costs one timeout per worker per second instead of one per request, and recovery needs no restart.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from contextlib import contextmanager
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from recsvc.core.stock import StockView
from recsvc.core.types import CustomerState
from recsvc.state.base import (
    CUSTOMER_TTL_S,
    EVENTS_CAP,
    Consent,
    StoredEvent,
    StoreError,
    StoreUnavailable,
    event_from_dict,
    event_to_dict,
    identifier_key,
    tombstone_id,
)

UNAVAILABLE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)

# KEYS: events list, event-id set. ARGV: cap, ttl, then (event_id, json) pairs. Returns accepted count.
APPEND_LUA = """
local acc = 0
for i = 3, #ARGV, 2 do
  if redis.call('SADD', KEYS[2], ARGV[i]) == 1 then
    redis.call('LPUSH', KEYS[1], ARGV[i + 1])
    acc = acc + 1
  end
end
if acc > 0 then redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[1]) - 1) end
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[2])
return acc
"""


def split_url(url: str) -> tuple[str, str]:
    """redis://host:port/db?prefix=NAME -> (URL without our own parameters, prefix)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefix = "recsvc"
    rest = []
    for k, v in query:
        if k == "prefix":
            prefix = v
        else:
            rest.append((k, v))
    if not prefix or any(c in prefix for c in "{} \n"):
        raise StoreError(f"{url}: prefix must be a non-empty name without braces or spaces")
    return urlunsplit(parts._replace(query=urlencode(rest))), prefix


class RedisStore:
    def __init__(
        self,
        client: redis.Redis,
        prefix: str = "recsvc",
        erasure_key: bytes = b"",
        events_cap: int = EVENTS_CAP,
        ttl_s: int = CUSTOMER_TTL_S,
        breaker_s: float = 1.0,
        where: str = "redis",
    ):
        self.r = client
        self.prefix = prefix
        self._key = erasure_key
        self._cap = events_cap
        self._ttl = ttl_s
        self._breaker_s = breaker_s
        self._down_until = 0.0
        self._where = where
        self._stock_cache: dict[str, tuple[str, StockView]] = {}
        self._lock = threading.Lock()
        self._append = self.r.register_script(APPEND_LUA)

    @classmethod
    def from_url(cls, url: str, timeout_ms: int = 250, **kw) -> RedisStore:
        clean, prefix = split_url(url)
        t = timeout_ms / 1000.0
        try:
            client = redis.Redis.from_url(
                clean,
                socket_timeout=t,
                socket_connect_timeout=t,
                health_check_interval=15,
                retry=Retry(NoBackoff(), 1),
                decode_responses=True,
                client_name="recsvc",
            )
        except ValueError as e:
            raise StoreError(f"{url}: {e}") from None
        p = urlsplit(clean)
        return cls(client, prefix=prefix, where=f"redis at {p.hostname or p.path}:{p.port or 6379}", **kw)

    def __repr__(self) -> str:
        return f"RedisStore({self._where}, prefix={self.prefix!r})"

    # -- keys
    def _cust(self, customer_id: str, part: str) -> str:
        return f"{self.prefix}:cust:{{{customer_id}}}:{part}"

    def _tomb(self, customer_id: str) -> str:
        return f"{self.prefix}:tomb:{{{tombstone_id(self._key, customer_id)}}}"

    def _ident(self, type_: str, value: str) -> str:
        return f"{self.prefix}:ident:{{{identifier_key(type_, value)}}}"

    def _stock(self, store_id: str) -> str:
        return f"{self.prefix}:stock:{{{store_id}}}"

    def _stock_version(self, store_id: str) -> str:
        return f"{self.prefix}:stock:{{{store_id}}}:version"

    @contextmanager
    def _guard(self, what: str):
        """Turn connection trouble into StoreUnavailable and open the breaker for a moment."""
        now = time.monotonic()
        if now < self._down_until:
            raise StoreUnavailable(f"{self._where} unreachable; {what} not attempted (retrying shortly)")
        try:
            yield
        except UNAVAILABLE as e:
            self._down_until = time.monotonic() + self._breaker_s
            raise StoreUnavailable(f"{self._where} unreachable during {what}: {e}") from e

    def _roundtrip(self, commands: list[tuple]) -> list:
        """Send `commands` in one write and read every reply: a non-transactional pipeline without
        redis-py's Pipeline object (a fifth of the cost of the request path's read). One retry on a fresh
        connection, as the client's own retry does (a pooled connection may predate a Redis restart)."""
        pool = self.r.connection_pool
        for attempt in (0, 1):
            conn = pool.get_connection()
            try:
                conn.send_packed_command(conn.pack_commands(commands))
                replies = [conn.read_response() for _ in commands]
            except UNAVAILABLE:
                conn.disconnect()
                if attempt:
                    raise
                continue
            except BaseException:
                conn.disconnect()  # replies may be left unread on it
                raise
            finally:
                pool.release(conn)
            return replies
        raise AssertionError("unreachable")

    # -- the request path
    def get_state(
        self, customer_id: str | None, store_id: str | None
    ) -> tuple[CustomerState, StockView | None]:
        cmds: list[tuple] = []
        if customer_id is not None:
            cmds += [
                ("LRANGE", self._cust(customer_id, "events"), 0, self._cap - 1),
                ("HGET", self._cust(customer_id, "consent"), "granted"),
                ("EXISTS", self._tomb(customer_id)),
            ]
        if store_id is not None:
            cmds.append(("GET", self._stock_version(store_id)))
        if not cmds:
            return CustomerState(), None
        with self._guard("get_state"):
            res = self._roundtrip(cmds)
            stock = self._stock_view(store_id, res[-1]) if store_id is not None else None
        if customer_id is None:
            return CustomerState(), stock
        raw_events, granted, erased = res[0], res[1], res[2]
        if erased:
            return CustomerState(customer_id=customer_id, erased=True), stock
        events = tuple(event_from_dict(orjson.loads(x)).event for x in reversed(raw_events))
        consent = None if granted is None else granted == "1"
        return CustomerState(customer_id=customer_id, consent=consent, events=events), stock

    def _stock_view(self, store_id: str, version: str | None) -> StockView | None:
        """The store's stock at `version`, re-read only when the version moved (stays in the cache)."""
        if version is None:
            self._stock_cache.pop(store_id, None)
            return None
        hit = self._stock_cache.get(store_id)
        if hit is not None and hit[0] == version:
            return hit[1]
        pipe = self.r.pipeline(transaction=True)
        pipe.get(self._stock_version(store_id))
        pipe.hgetall(self._stock(store_id))
        version, raw = pipe.execute()
        if version is None:
            return None
        view = StockView({k: int(v) for k, v in raw.items()})
        with self._lock:
            self._stock_cache[store_id] = (version, view)
        return view

    # -- identity
    def resolve_identifier(self, type_: str, value: str) -> str | None:
        with self._guard("resolve_identifier"):
            return self.r.get(self._ident(type_, value))

    def link_identifier(self, customer_id: str, type_: str, value: str) -> None:
        with self._guard("link_identifier"):
            before = self.r.get(self._ident(type_, value))
            pipe = self.r.pipeline(transaction=False)
            pipe.set(self._ident(type_, value), customer_id)
            pipe.sadd(self._cust(customer_id, "ids"), f"{type_}:{value}")
            if before is not None and before != customer_id:
                pipe.srem(self._cust(before, "ids"), f"{type_}:{value}")
            pipe.execute()

    def unlink_identifier(self, customer_id: str, type_: str, value: str) -> bool:
        with self._guard("unlink_identifier"):
            if self.r.get(self._ident(type_, value)) != customer_id:
                return False
            pipe = self.r.pipeline(transaction=False)
            pipe.delete(self._ident(type_, value))
            pipe.srem(self._cust(customer_id, "ids"), f"{type_}:{value}")
            pipe.execute()
            return True

    def identifiers(self, customer_id: str) -> list[tuple[str, str]]:
        with self._guard("identifiers"):
            members = self.r.smembers(self._cust(customer_id, "ids"))
        return sorted(tuple(m.split(":", 1)) for m in members)  # type: ignore[misc]

    # -- consent
    def set_consent(self, customer_id: str, consent: Consent) -> None:
        fields = {"granted": "1" if consent.granted else "0"}
        for k, v in (("source", consent.source), ("channel", consent.channel), ("at", consent.at)):
            if v is not None:
                fields[k] = str(v)
        with self._guard("set_consent"):
            pipe = self.r.pipeline(transaction=True)
            pipe.delete(self._cust(customer_id, "consent"))
            pipe.hset(self._cust(customer_id, "consent"), mapping=fields)
            pipe.execute()

    def get_consent(self, customer_id: str) -> Consent | None:
        with self._guard("get_consent"):
            d = self.r.hgetall(self._cust(customer_id, "consent"))
        if not d:
            return None
        return Consent(
            granted=d.get("granted") == "1",
            source=d.get("source"),
            channel=d.get("channel"),
            at=float(d["at"]) if "at" in d else None,
        )

    # -- events
    def append_events(self, events: Sequence[StoredEvent]) -> tuple[int, int]:
        by_customer: dict[str, list[StoredEvent]] = {}
        for e in events:
            by_customer.setdefault(e.customer_id, []).append(e)
        if not by_customer:
            return 0, 0
        customers = list(by_customer)
        with self._guard("append_events"):
            pipe = self.r.pipeline(transaction=False)
            for c in customers:
                pipe.exists(self._tomb(c))
            erased = pipe.execute()
            pipe = self.r.pipeline(transaction=False)
            live = [c for c, gone in zip(customers, erased) if not gone]
            for c in live:
                args: list = [self._cap, self._ttl]
                for e in by_customer[c]:
                    args += [e.event_id, orjson.dumps(event_to_dict(e))]
                self._append(keys=[self._cust(c, "events"), self._cust(c, "evids")], args=args, client=pipe)
            counts = pipe.execute() if live else []
        accepted = int(sum(counts))
        offered = sum(len(by_customer[c]) for c in live)
        return accepted, offered - accepted

    def recent_events(self, customer_id: str, limit: int = EVENTS_CAP) -> list[StoredEvent]:
        if limit <= 0:
            return []
        with self._guard("recent_events"):
            raw = self.r.lrange(self._cust(customer_id, "events"), 0, limit - 1)
        return [event_from_dict(orjson.loads(x)) for x in reversed(raw)]

    # -- stock
    def set_stock(self, store_id: str, quantities: Mapping[str, int], replace: bool = False) -> int:
        with self._guard("set_stock"):
            pipe = self.r.pipeline(transaction=True)
            if replace:
                pipe.delete(self._stock(store_id))
            if quantities:
                pipe.hset(self._stock(store_id), mapping={str(k): int(v) for k, v in quantities.items()})
            pipe.incr(self._stock_version(store_id))
            return int(pipe.execute()[-1])

    def get_stock(self, store_id: str, item_ids: Iterable[str] | None = None) -> dict[str, int] | None:
        with self._guard("get_stock"):
            pipe = self.r.pipeline(transaction=True)
            pipe.get(self._stock_version(store_id))
            ids = None if item_ids is None else list(item_ids)
            if ids is None:
                pipe.hgetall(self._stock(store_id))
            elif ids:
                pipe.hmget(self._stock(store_id), ids)
            res = pipe.execute()
        if res[0] is None:
            return None
        if ids is None:
            return {k: int(v) for k, v in res[1].items()}
        if not ids:
            return {}
        return {i: int(v) if v is not None else 0 for i, v in zip(ids, res[1])}

    # -- erasure
    def erase(self, customer_id: str) -> None:
        with self._guard("erase"):
            members = self.r.smembers(self._cust(customer_id, "ids"))
            pipe = self.r.pipeline(transaction=False)
            for m in members:
                t, _, v = m.partition(":")
                pipe.delete(self._ident(t, v))
            pipe.delete(*(self._cust(customer_id, p) for p in ("events", "evids", "consent", "ids")))
            pipe.set(self._tomb(customer_id), "1")
            pipe.execute()

    def is_erased(self, customer_id: str) -> bool:
        with self._guard("is_erased"):
            return bool(self.r.exists(self._tomb(customer_id)))

    def ping(self) -> None:
        with self._guard("ping"):
            self.r.ping()

    def close(self) -> None:
        self.r.close()

"""RedisStore: live state shared by every worker and instance (key layout in recsvc/state/base.py).

Request-path reads are one pipelined round trip (transaction=False). Every call has the configured
socket timeouts and one immediate retry (a pooled connection may predate a Redis restart); after a
failure the store answers StoreUnavailable at once for `breaker_s` seconds, so a slow or dead Redis
costs one timeout per worker per second instead of one per request, and recovery needs no restart.

On a Redis Cluster (`?cluster=1`, the sharded key layout of state/redis_layout.py) the client is
redis-py's RedisCluster: reads are its non-transactional pipelines, and scripts (which it cannot
pipeline) are sent one pipeline per node by `_call_many`.
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from contextlib import contextmanager
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import hiredis
import orjson
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from recsvc.core.stock import StockView
from recsvc.core.types import CustomerState
from recsvc.state import redis_scripts as lua
from recsvc.state.base import (
    ANON_PREFIX,
    AUDIT_CAP,
    AUDIT_SCAN,
    CUSTOMER_TTL_S,
    DEDUP_CAP,
    EVENTS_CAP,
    EVENTS_SLACK,
    XIDS_TTL_S,
    AppendResult,
    Consent,
    CustomerProfile,
    LinkedIdentifier,
    LinkOutcome,
    Provenance,
    StoredEvent,
    StoreError,
    StoreUnavailable,
    audit_matches,
    audit_subject,
    audit_view,
    event_from_row,
    event_row,
    event_to_dict,
    identifier_key,
    identifier_record,
    linked_from_record,
    live_events_from_rows,
    mask_identifier,
    tombstone_id,
)
from recsvc.state.redis_layout import DEFAULT_CLUSTER_SHARDS, Layout
from recsvc.state.redis_link import link_for, reply_error

UNAVAILABLE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)
TOMB_NAMES = 4096  # tombstone key names kept per store (a keyed hash costs about a microsecond)
OWN_PARAMETERS = ("prefix", "stream_maxlen", "shards", "cluster")  # recsvc's own URL parameters
REDIRECTED = (redis.exceptions.AskError, redis.exceptions.TryAgainError, redis.exceptions.ClusterDownError)


def stream_maxlen(url: str) -> int:
    """`?stream_maxlen=N`: approximate cap of the global event stream (default 0: only trimmed by the
    operator after `recsvc-train export-events`)."""
    for k, v in parse_qsl(urlsplit(url).query):
        if k == "stream_maxlen":
            if not v.isdigit():
                raise StoreError(f"{url}: stream_maxlen must be a whole number of entries (0 = no cap)")
            return int(v)
    return 0

def cluster_options(url: str) -> tuple[bool, int]:
    """`?cluster=1`: a Redis Cluster (any node's address; redis-py finds the others); `?shards=N`:
    the sharded key layout with N buckets (default 0, the single-server layout; 64 with cluster=1).
    See recsvc/state/redis_layout.py."""
    cluster, shards = False, None
    for k, v in parse_qsl(urlsplit(url).query):
        if k == "cluster":
            if v.lower() not in ("0", "1", "yes", "no", "true", "false"):
                raise StoreError(f"{url}: cluster must be 1 or 0")
            cluster = v.lower() in ("1", "yes", "true")
        elif k == "shards":
            if not v.isdigit() or int(v) > 16384:
                raise StoreError(f"{url}: shards must be a whole number from 0 (single server) to 16384")
            shards = int(v)
    if shards is None:
        shards = DEFAULT_CLUSTER_SHARDS if cluster else 0
    if cluster and shards == 0:
        raise StoreError(f"{url}: a Redis Cluster needs the sharded layout (shards=N, N >= 1)")
    return cluster, shards


def split_url(url: str) -> tuple[str, str]:
    """redis://host:port/db?prefix=NAME -> (URL without our own parameters, prefix)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefix = "recsvc"
    rest = []
    for k, v in query:
        if k == "prefix":
            prefix = v
        elif k not in OWN_PARAMETERS:
            rest.append((k, v))
    if not prefix or any(c in prefix for c in "{} \n"):
        raise StoreError(f"{url}: prefix must be a non-empty name without braces or spaces")
    return urlunsplit(parts._replace(query=urlencode(rest))), prefix


class RedisStore:
    def __init__(
        self,
        client: redis.Redis,
        prefix: str = "recsvc",
        erasure_key: bytes | None = None,
        events_cap: int = EVENTS_CAP,
        ttl_s: int = CUSTOMER_TTL_S,
        breaker_s: float = 1.0,
        where: str = "redis",
        dedup_cap: int = DEDUP_CAP,
        stream_maxlen: int = 0,
        shards: int = 0,
    ):
        self.r = client
        self.prefix = prefix
        self.layout = Layout(prefix, shards)
        self.cluster = not hasattr(client, "connection_pool")  # redis.cluster.RedisCluster
        self._layout_ok = False
        self._erasure_key = erasure_key  # None: the key shared through Redis (see _key)
        self._dedup_cap = dedup_cap
        self._maxlen = stream_maxlen
        self.stream = self.layout.stream(0)  # the one stream of the single-server layout (bucket 0's)
        self._cap = events_cap
        self._ttl = ttl_s
        self._breaker_s = breaker_s
        self._down_until = 0.0
        self._where = where
        self._stock_cache: dict[str, tuple[str, StockView]] = {}
        self._tomb_names: dict[str, str] = {}
        self._spare_anon: dict[int, list[str]] = {}  # unused anonymous ids per bucket (see _anon_ids)
        self._lock = threading.Lock()
        self._fast = link_for(client)  # the request path's own connections (None: redis-py's pool)
        self._fast_writes = link_for(client)  # the same for event ingestion's script (other connections)
        self._append = self.r.register_script(lua.APPEND)
        self._resolve = self.r.register_script(lua.RESOLVE_OR_CREATE)
        self._link_commit = self.r.register_script(lua.LINK_COMMIT)
        self._link_release = self.r.register_script(lua.LINK_RELEASE)
        self._link_claim = self.r.register_script(lua.LINK_CLAIM)
        self._unlink_commit = self.r.register_script(lua.UNLINK_COMMIT)
        self._unlink_release = self.r.register_script(lua.UNLINK_RELEASE)
        self._unlink_giveback = self.r.register_script(lua.UNLINK_GIVEBACK)
        self._del_if_equal = self.r.register_script(lua.DEL_IF_EQUAL)
        self._unadopt = self.r.register_script(lua.UNADOPT)
        self._del_if_owner = self.r.register_script(lua.DEL_IF_OWNER)
        self.audit_stream = f"{prefix}:audit"
        self.audit_subjects = f"{prefix}:audit:subjects"

    @classmethod
    def from_url(cls, url: str, timeout_ms: int = 250, **kw) -> RedisStore:
        clean, prefix = split_url(url)
        cluster, shards = cluster_options(url)
        t = timeout_ms / 1000.0
        p = urlsplit(clean)
        try:
            if cluster:
                from redis.cluster import RedisCluster

                if p.path.strip("/") not in ("", "0"):
                    raise StoreError(f"{url}: a Redis Cluster has only database 0")
                client = RedisCluster.from_url(clean, socket_timeout=t, socket_connect_timeout=t,
                                               decode_responses=True, client_name="recsvc")
            else:
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
        except UNAVAILABLE + (redis.exceptions.RedisClusterException,) as e:  # a Cluster client connects at once
            raise StoreUnavailable(f"redis cluster at {p.hostname}:{p.port or 6379} unreachable: {e}") from e
        kw.setdefault("stream_maxlen", stream_maxlen(url))
        kind = "redis cluster" if cluster else "redis"
        return cls(client, prefix=prefix, where=f"{kind} at {p.hostname or p.path}:{p.port or 6379}",
                   shards=shards, **kw)

    def __repr__(self) -> str:
        return f"RedisStore({self._where}, prefix={self.prefix!r}, shards={self.layout.shards})"

    def _check_layout(self) -> None:
        """Record the layout at `<prefix>:shards` (first store to run) or check that it is the recorded
        one: with another shard count every key name would differ and the data seem gone."""
        name = self.layout.shards_key
        try:
            found = self.r.get(name)
            if found is None and self.layout.bucketed and self.r.exists(Layout(self.prefix).stream()):
                raise StoreError(f"{self._where}: prefix {self.prefix!r} holds data in the single-server layout "
                                 f"({self.prefix}:events); the sharded layout (shards={self.layout.shards}) "
                                 "would not see it: keep shards=0 or move the data to a new prefix")
            if found is None:
                self.r.set(name, self.layout.shards, nx=True)
                found = self.r.get(name)
        except UNAVAILABLE as e:
            raise self._failed("layout check", e) from e
        if found is not None and found != str(self.layout.shards):
            raise StoreError(f"{self._where}: prefix {self.prefix!r} holds data in the layout shards={found} "
                             f"({name}); this store is configured with shards={self.layout.shards}, and every "
                             "key name depends on it: use the recorded value")
        self._layout_ok = True

    # -- the erasure key
    @property
    def _key(self) -> bytes:
        """RECSVC_ERASURE_KEY when set; else one random key kept at `<prefix>:erasure-key`, made by the
        first instance that needs it, so every worker and instance hashes tombstones alike."""
        if self._erasure_key is None:
            name = f"{self.prefix}:erasure-key"
            with self._guard("erasure key"):
                self.r.set(name, secrets.token_hex(32), nx=True)
                value = self.r.get(name)
            if not value:
                raise StoreUnavailable(f"{self._where}: {name} vanished while being read; retrying")
            self._erasure_key = value.encode()
        return self._erasure_key

    # -- keys
    def _cust(self, customer_id: str, part: str) -> str:
        return self.layout.cust_base(customer_id) + part

    def _tomb(self, customer_id: str) -> str:
        """The customer's tombstone key; the keyed hash is remembered for the TOMB_NAMES customers seen
        last (every read and every ingested event needs it)."""
        name = self._tomb_names.get(customer_id)
        if name is None:
            name = self.layout.tomb(customer_id, tombstone_id(self._key, customer_id))
            if len(self._tomb_names) >= TOMB_NAMES:
                self._tomb_names.clear()
            self._tomb_names[customer_id] = name
        return name

    def _ident(self, type_: str, value: str) -> str:
        return self.layout.ident(identifier_key(type_, value))

    def _ident_at(self, key: str) -> str:
        """The ident key of an identifier given as `type:hash` (what the ids hash holds)."""
        return self.layout.ident(key)

    def _ident_tomb(self, key: str) -> str:
        return self.layout.tomb(key, tombstone_id(self._key, "ident:" + key))

    def _stock(self, store_id: str) -> str:
        return f"{self.prefix}:stock:{{{store_id}}}"

    def _stock_version(self, store_id: str) -> str:
        return f"{self.prefix}:stock:{{{store_id}}}:version"

    @contextmanager
    def _guard(self, what: str):
        """Turn connection trouble into StoreUnavailable and open the breaker for a moment."""
        self._check_breaker(what)
        try:
            yield
        except UNAVAILABLE as e:
            raise self._failed(what, e) from e

    def _check_breaker(self, what: str) -> None:
        if time.monotonic() < self._down_until:
            raise StoreUnavailable(f"{self._where} unreachable; {what} not attempted (retrying shortly)")
        if not self._layout_ok:
            self._check_layout()

    def _failed(self, what: str, e: BaseException) -> StoreUnavailable:
        """Open the breaker; the StoreUnavailable to raise (the request path's `_guard` without a
        context manager, which costs a few microseconds a read)."""
        self._down_until = time.monotonic() + self._breaker_s
        return StoreUnavailable(f"{self._where} unreachable during {what}: {e}")

    def _roundtrip(self, commands: list[tuple]) -> list:
        """Send `commands` in one write and read every reply: a non-transactional pipeline without
        redis-py's Pipeline object (a fifth of the cost of the request path's read). One retry on a fresh
        connection, as the client's own retry does (a pooled connection may predate a Redis restart).
        On a Cluster: redis-py's pipeline, which sends each node its commands."""
        if self.cluster:
            pipe = self.r.pipeline(transaction=False)
            for cmd in commands:
                pipe.execute_command(*cmd)
            return pipe.execute()
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

    def _call(self, script, keys: list, args: list):
        """Run a registered script: EVALSHA packed by hiredis and sent on a fast link of its own (a third
        of the CPU of redis-py's Script call for a batch of events; the same one retry on a fresh
        connection), loading the script when Redis does not know it; redis-py's Script when there is
        no fast link."""
        if self._fast_writes is None:
            return script(keys=keys, args=args)
        cmd = ("EVALSHA", script.sha, len(keys), *keys, *args)
        for attempt in (0, 1):
            try:
                return self._fast_writes.send([cmd]).replies()[0]
            except redis.exceptions.ResponseError as e:
                if attempt or not str(e).startswith("NOSCRIPT"):
                    raise
                self.r.script_load(script.script)
        raise AssertionError("unreachable")

    def _call_many(self, calls: list[tuple]) -> list:
        """Run several (script, keys, args) in one round trip per Redis node: one write on the fast link
        (single server), one pipeline per node (Cluster; a call redirected meanwhile is re-run through
        redis-py, which follows the redirection). Each call's keys must share one slot."""
        if len(calls) == 1:
            script, keys, args = calls[0]
            return [self._call(script, keys, args)]
        if self._fast_writes is not None:
            out = self._fast_writes.send([("EVALSHA", s.sha, len(k), *k, *a) for s, k, a in calls]
                                         ).replies(raise_errors=False)
            for i, reply in enumerate(out):
                if isinstance(reply, hiredis.ReplyError):
                    if not str(reply).startswith("NOSCRIPT"):
                        raise reply_error(reply)
                    out[i] = self._call(*calls[i])  # loads the script, runs only this call again
            return out
        if not self.cluster:
            pipe = self.r.pipeline(transaction=False)
            for script, keys, args in calls:
                script(keys=keys, args=args, client=pipe)
            return pipe.execute()
        by_node: dict[str, tuple] = {}
        for i, (_, keys, _) in enumerate(calls):
            node = self.r.get_node_from_key(keys[0])
            by_node.setdefault(node.name, (node, []))[1].append(i)
        out = [None] * len(calls)
        for node, idx in by_node.values():
            pipe = self.r.get_redis_connection(node).pipeline(transaction=False)
            for i in idx:
                script, keys, args = calls[i]
                script(keys=keys, args=args, client=pipe)
            for i, reply in zip(idx, pipe.execute(raise_on_error=False)):
                if isinstance(reply, REDIRECTED):
                    script, keys, args = calls[i]
                    reply = script(keys=keys, args=args)
                elif isinstance(reply, Exception):
                    raise reply
                out[i] = reply
        return out

    # -- the request path
    def get_state(
        self, customer_id: str | None, store_id: str | None
    ) -> tuple[CustomerState, StockView | None]:
        return self.begin_state(customer_id, store_id).result()

    def begin_state(self, customer_id: str | None, store_id: str | None) -> PendingState:
        """Send get_state's one pipelined read now; `.result()` collects it. A request scores items in
        between, so Redis answers while the worker computes instead of while it waits."""
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
            return PendingState(self, customer_id, store_id, None, [])
        self._check_breaker("get_state")
        try:
            if self._fast is None or self.cluster:
                return PendingState(self, customer_id, store_id, None, self._roundtrip(cmds))
            return PendingState(self, customer_id, store_id, self._fast.send(cmds), None)
        except UNAVAILABLE as e:
            raise self._failed("get_state", e) from e

    def _state_from(self, customer_id: str | None, store_id: str | None,
                    res: list) -> tuple[CustomerState, StockView | None]:
        stock = self._stock_view(store_id, res[-1]) if store_id is not None else None
        if customer_id is None:
            return CustomerState(), stock
        raw_events, granted, erased = res[0], res[1], res[2]
        if erased:
            return CustomerState(customer_id=customer_id, erased=True), stock
        consent = None if granted is None else granted == "1"
        return CustomerState(customer_id=customer_id, consent=consent,
                             events=live_events_from_rows(_rows(raw_events))), stock

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

    def resolve_or_create(self, identifiers: Sequence[tuple[str, str]], provenance: Provenance) -> list[str | None]:
        if not identifiers:
            return []
        with self._guard("resolve_or_create"):
            calls, new_ids = [], []
            for type_, value in identifiers:
                key = identifier_key(type_, value)
                new = self._anon_id(key)
                new_ids.append((key, new))
                rec = orjson.dumps(identifier_record(mask_identifier(type_, value), provenance))
                calls.append((self._resolve, [self._ident_at(key), self._ident_tomb(key), self._cust(new, "meta"),
                                              self._cust(new, "ids")],
                              [new, key, rec, self._ttl, *self.layout.cust_affixes(key)]))
            found = self._call_many(calls)
        self._spare(id_ for (_, id_), got in zip(new_ids, found) if got != id_)
        return [r or None for r in found]

    def _anon_id(self, key: str) -> str:
        """A new anonymous profile id in the identifier's bucket (its keys then share the identifier's
        slot). Finding one costs about `shards` crc32s, and most lookups find the identifier known, so
        ids a lookup did not use are kept for the next (never two lookups at once: taken under a lock)."""
        b = self.layout.bucket(key)
        with self._lock:
            spare = self._spare_anon.get(b)
            if spare:
                return spare.pop()
        return self.layout.anon_id(ANON_PREFIX, key)

    def _spare(self, unused: Iterable[str]) -> None:
        with self._lock:
            for anon in unused:
                kept = self._spare_anon.setdefault(self.layout.bucket(anon), [])
                if len(kept) < 4:
                    kept.append(anon)

    def link_identifier(self, customer_id: str, type_: str, value: str,
                        provenance: Provenance | None = None) -> LinkOutcome:
        """Ordered steps, each on one slot: commit the new owner and a journal in the identifier's slot
        (checked against the owner read before it), then the previous owner gives the identifier up
        (an anonymous profile is adopted: its recent events come along), then the customer's record and
        the copies; the journal goes last. A crash leaves the journal; the next link or unlink of the
        identifier completes it first (every step is idempotent), so no step is lost or done twice."""
        key = identifier_key(type_, value)
        prov = provenance or Provenance(at=time.time(), by_type="system")
        rec = orjson.dumps(identifier_record(mask_identifier(type_, value), prov)).decode()
        ident, op = self._ident_at(key), self.layout.ident_op(key)
        with self._guard("link_identifier"):
            for _ in range(5):
                self._complete(key)
                if self.r.exists(self._tomb(customer_id)):
                    return LinkOutcome("erased", None, 0)
                owner = self.r.get(ident) or ""
                journal = orjson.dumps({"k": "link", "c": customer_id, "o": owner, "f": key, "rec": rec,
                                        "n": uuid.uuid4().hex}).decode()
                status, _ = self._call(self._link_commit, [ident, self._ident_tomb(key), op],
                                       [customer_id, owner, journal])
                if status == "already":
                    return LinkOutcome("already", owner, 0)
                if status == "ok":
                    return self._finish_link(orjson.loads(journal), journal)
        raise StoreUnavailable(f"{self._where}: identifier kept changing owner during link_identifier; retry")

    def _finish_link(self, j: dict, journal: str) -> LinkOutcome:
        c, owner, key = j["c"], j["o"], j["f"]
        adopted, rows = "", []
        if owner:
            got = self._call(self._link_release, [self._cust(owner, "ids"), self._cust(owner, "meta"),
                                                  self.layout.adopted(owner), self._cust(owner, "events")],
                             [key, c, self._cap, owner])
            if int(got[0]) == 1:
                adopted, rows = owner, got[1:]
        copied = self._call(self._link_claim, [self._tomb(c), self._cust(c, "ids"), self._cust(c, "events"),
                                               self._cust(c, "evids")],
                            [c, key, j["rec"], adopted, self._cap, self._ttl, int(time.time() * 1000), *rows])
        if int(copied) < 0:  # erased since the commit: the identifier must not lead to it
            self._call(self._del_if_owner, [self._ident_at(key)], [c])
            self.r.set(self._ident_tomb(key), "1")
        self._call(self._del_if_equal, [self.layout.ident_op(key)], [journal])
        if int(copied) < 0:
            return LinkOutcome("erased", None, 0)
        status = "adopted" if adopted else "moved" if owner else "linked"
        return LinkOutcome(status, owner or None, int(copied))

    def unlink_identifier(self, customer_id: str, type_: str, value: str) -> bool:
        """Ordered steps like link_identifier: commit (the identifier goes back to the profile the link
        adopted, or away) with a journal; the customer drops its record and the copied events; the
        profile gets its record back (or, no longer adopted by the customer, the identifier is dropped)."""
        key = identifier_key(type_, value)
        ident, op = self._ident_at(key), self.layout.ident_op(key)
        with self._guard("unlink_identifier"):
            for _ in range(5):
                self._complete(key)
                raw = self.r.hget(self._cust(customer_id, "ids"), key)
                rec = orjson.loads(raw) if raw else {}
                anon = rec.get("adopted") or ""
                back = {k: v for k, v in rec.items() if k != "adopted"}
                back.update(at=time.time(), by_type="system")
                journal = orjson.dumps({"k": "unlink", "c": customer_id, "a": anon, "f": key,
                                        "rec": orjson.dumps(back).decode(), "n": uuid.uuid4().hex}).decode()
                done = self._call(self._unlink_commit, [ident, op], [customer_id, anon, self._ttl, journal])
                if done == "pending":
                    continue
                if int(done) == 0:
                    return False
                self._finish_unlink(orjson.loads(journal), journal)
                return True
        raise StoreUnavailable(f"{self._where}: identifier record kept changing during unlink_identifier; retry")

    def _finish_unlink(self, j: dict, journal: str) -> None:
        c, anon, key = j["c"], j["a"], j["f"]
        self._call(self._unlink_release, [self._cust(c, "ids"), self._cust(c, "events"), self._cust(c, "evids")],
                   [key, anon, self._ttl, self._cap])
        if anon:
            back = self._call(self._unlink_giveback, [self._cust(anon, "meta"), self.layout.adopted(anon),
                                                      self._cust(anon, "ids")],
                              [c, key, j["rec"], self._ttl, anon])
            if int(back) == 0:  # the profile is no longer this customer's: the identifier is nobody's
                self._call(self._del_if_owner, [self._ident_at(key)], [anon])
        self._call(self._del_if_equal, [self.layout.ident_op(key)], [journal])

    def _complete(self, key: str) -> None:
        """Finish a link or unlink of the identifier that a crash (or a concurrent call) left half done."""
        journal = self.r.get(self.layout.ident_op(key))
        if journal:
            j = orjson.loads(journal)
            (self._finish_link if j["k"] == "link" else self._finish_unlink)(j, journal)

    def identifiers(self, customer_id: str) -> list[LinkedIdentifier]:
        with self._guard("identifiers"):
            recs = self.r.hgetall(self._cust(customer_id, "ids"))
        return sorted((linked_from_record(k, orjson.loads(v)) for k, v in recs.items()),
                      key=lambda x: (x.type, x.key))

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
        return _consent(d)

    # -- events
    def append_events(self, events: Sequence[StoredEvent]) -> AppendResult:
        """One script call per bucket of the batch (one for all on the single-server layout), sent in
        one round trip per node; per customer, dedup, stream, recent list and erasure index are atomic."""
        by_customer: dict[str, list[StoredEvent]] = {}
        for e in events:
            by_customer.setdefault(e.customer_id, []).append(e)
        if not by_customer:
            return AppendResult(0, 0, 0)
        head = [self._cap, self._ttl, int(time.time() * 1000), self._dedup_cap, XIDS_TTL_S, self._maxlen,
                EVENTS_SLACK]
        layout = self.layout
        calls: dict[int, tuple] = {}
        dumps, to_dict, row = orjson.dumps, event_to_dict, event_row
        for c, evs in by_customer.items():
            b = layout.bucket(c)
            call = calls.get(b)
            if call is None:
                call = calls[b] = (self._append, [layout.stream(b)], list(head))
            keys, args = call[1], call[2]
            base = layout.cust_base(c)
            keys += (self._tomb(c), base + "events", base + "evids", base + "xids")
            args.append(len(evs))
            for e in evs:  # the stream's JSON object, the recent list's row
                args += (e.event_id, dumps(to_dict(e)), dumps(row(e)))
        with self._guard("append_events"):
            replies = self._call_many(list(calls.values()))
        return AppendResult(*(sum(int(r[i]) for r in replies) for i in range(3)))

    def recent_events(self, customer_id: str, limit: int = EVENTS_CAP) -> list[StoredEvent]:
        if limit <= 0:
            return []
        with self._guard("recent_events"):
            raw = self.r.lrange(self._cust(customer_id, "events"), 0, min(limit, self._cap) - 1)
        return [event_from_row(r, customer_id) for r in _rows(raw)]

    def profile(self, customer_id: str, limit: int = 50) -> CustomerProfile:
        with self._guard("profile"):
            pipe = self.r.pipeline(transaction=False)
            pipe.exists(self._tomb(customer_id))
            pipe.hgetall(self._cust(customer_id, "consent"))
            pipe.hgetall(self._cust(customer_id, "ids"))
            pipe.hgetall(self._cust(customer_id, "meta"))
            pipe.lrange(self._cust(customer_id, "events"), 0, min(max(limit, 1), self._cap) - 1)
            erased, consent, ids, meta, raw = pipe.execute()
        if erased:
            return CustomerProfile(customer_id, erased=True)
        return CustomerProfile(
            customer_id=customer_id, erased=False, anonymous=meta.get("anon") == "1",
            adopted_by=meta.get("adopted_by"), consent=_consent(consent),
            identifiers=tuple(sorted((linked_from_record(k, orjson.loads(v)) for k, v in ids.items()),
                                     key=lambda x: (x.type, x.key))),
            events=tuple(event_from_row(r, customer_id) for r in _rows(raw)) if limit > 0 else ())

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
    def erase(self, customer_id: str) -> int:
        """Tombstone first (a late event is dropped from then on; one that came before is visible to
        the reads that follow), then delete: identifiers, the customer keys, the stream entries found
        through the erasure index, and anonymous profiles the customer adopted (the same person)."""
        with self._guard("erase"):
            self.r.set(self._tomb(customer_id), "1")
            gone, ids = [customer_id], {}
            ids[customer_id] = self.r.hgetall(self._cust(customer_id, "ids"))
            meta = self.r.hgetall(self._cust(customer_id, "meta"))
            for rec in ids[customer_id].values():
                anon = orjson.loads(rec).get("adopted")
                if anon and anon not in gone:
                    self.r.set(self._tomb(anon), "1")
                    gone.append(anon)
                    ids[anon] = self.r.hgetall(self._cust(anon, "ids"))
            pipe = self.r.pipeline(transaction=False)
            for c in gone:
                pipe.lrange(self._cust(c, "xids"), 0, -1)
            xids = pipe.execute()
            pipe = self.r.pipeline(transaction=False)
            scripts = []
            for c, entries in zip(gone, xids):
                for key in ids[c]:
                    scripts.append((self._del_if_owner, [self._ident_at(key)], [c]))
                    pipe.set(self._ident_tomb(key), "1")
                stream = self.layout.stream(self.layout.bucket(c))
                for k in range(0, len(entries), 1000):
                    pipe.xdel(stream, *entries[k:k + 1000])
                for p in ("events", "evids", "xids", "consent", "ids", "meta"):
                    pipe.delete(self._cust(c, p))
                pipe.hdel(self.layout.adopted(c), c)
                pipe.hdel(self.audit_subjects, audit_subject(self._key, c))
            adopter = meta.get("adopted_by")
            if adopter and adopter not in gone:  # an adopted profile: its copies leave the adopter's list
                for key, raw in self.r.hgetall(self._cust(adopter, "ids")).items():
                    rec = orjson.loads(raw)
                    if rec.get("adopted") == customer_id:
                        rec.pop("adopted")
                        scripts.append((self._unadopt, [self._cust(adopter, "ids"), self._cust(adopter, "events"),
                                                        self._cust(adopter, "evids")],
                                        [key, orjson.dumps(rec), self._ttl, self._cap]))
            if scripts:
                self._call_many(scripts)
            pipe.execute()
        return len(gone)

    # -- rate limits and the audit trail
    def incr_counter(self, name: str, by: int, ttl_s: int) -> int:
        with self._guard("incr_counter"):
            pipe = self.r.pipeline(transaction=False)
            key = f"{self.prefix}:rate:{{{name}}}"
            pipe.incrby(key, int(by))
            pipe.expire(key, int(ttl_s))
            return int(pipe.execute()[0])

    def audit_append(self, record: Mapping, customer_id: str | None) -> None:
        """The mapping is written, then the tombstone looked at (erasure writes its tombstone, then drops
        the mapping): whichever comes last, an erased customer keeps no mapping (keys of three slots, so
        no script)."""
        rec = dict(record)
        with self._guard("audit_append"):
            pipe = self.r.pipeline(transaction=False)
            if customer_id is not None:
                subject = rec["subject"] = audit_subject(self._key, customer_id)
                pipe.hset(self.audit_subjects, subject, customer_id)
            pipe.xadd(self.audit_stream, {"a": orjson.dumps(rec)}, maxlen=AUDIT_CAP, approximate=True)
            pipe.execute()
            if customer_id is not None and self.r.exists(self._tomb(customer_id)):
                self.r.hdel(self.audit_subjects, subject)

    def audit_read(self, limit: int = 100, customer_id: str | None = None, where: Mapping | None = None,
                   since: float | None = None) -> list[dict]:
        found: list[dict] = []
        with self._guard("audit_read"):
            subject = None
            if customer_id is not None:
                subject = audit_subject(self._key, customer_id)
                if not self.r.hexists(self.audit_subjects, subject):
                    return []  # never audited, or erased: its entries no longer name it
            last, seen = "+", 0
            while len(found) < limit and seen < AUDIT_SCAN:
                batch = self.r.xrevrange(self.audit_stream, max=last if last == "+" else "(" + last, min="-",
                                         count=min(1000, AUDIT_SCAN - seen))
                if not batch:
                    break
                for entry_id, fields in batch:
                    seen += 1
                    rec = orjson.loads(fields.get("a", "{}"))
                    if audit_matches(rec, subject, where, since):
                        found.append(rec)
                        if len(found) >= limit:
                            break
                last = batch[-1][0]
            subjects = sorted({r["subject"] for r in found if r.get("subject")})
            names = dict(zip(subjects, self.r.hmget(self.audit_subjects, subjects))) if subjects else {}
        return [audit_view(r, names.get(r.get("subject", ""))) for r in found]

    def is_erased(self, customer_id: str) -> bool:
        with self._guard("is_erased"):
            return bool(self.r.exists(self._tomb(customer_id)))

    def ping(self) -> None:
        with self._guard("ping"):
            self.r.ping()

    def close(self) -> None:
        for link in (self._fast, self._fast_writes):
            if link is not None:
                link.close()
        self.r.close()


class PendingState:
    """RedisStore.begin_state's read on its way: `result()` once, or `cancel()` if it is not needed."""

    __slots__ = ("customer_id", "pending", "res", "store", "store_id")

    def __init__(self, store: RedisStore, customer_id: str | None, store_id: str | None, pending, res):
        self.store, self.customer_id, self.store_id, self.pending, self.res = store, customer_id, store_id, pending, res

    def result(self) -> tuple[CustomerState, StockView | None]:
        """(state, stock) as get_state returns them; StoreUnavailable when Redis failed meanwhile."""
        st = self.store
        try:
            if self.res is None:
                pending, self.pending = self.pending, None
                self.res = pending.replies()
            if not self.res:
                return CustomerState(), None
            return st._state_from(self.customer_id, self.store_id, self.res)
        except UNAVAILABLE as e:
            raise st._failed("get_state", e) from e

    def cancel(self) -> None:
        if self.pending is not None:
            self.pending.cancel()
            self.pending = None


def _rows(raw: list) -> list:
    """A recent list's entries (newest first) decoded in one call, oldest first."""
    if not raw:
        return []
    rows = orjson.loads(b"[" + b",".join(raw) + b"]" if type(raw[0]) is bytes else "[" + ",".join(raw) + "]")
    rows.reverse()
    return rows


def _consent(d: Mapping[str, str]) -> Consent | None:
    if not d:
        return None
    return Consent(
        granted=d.get("granted") == "1",
        source=d.get("source"),
        channel=d.get("channel"),
        at=float(d["at"]) if "at" in d else None,
    )

"""RedisStore: live state shared by every worker and instance (key layout in recsvc/state/base.py).

Request-path reads are one pipelined round trip (transaction=False). Every call has the configured
socket timeouts and one immediate retry (a pooled connection may predate a Redis restart); after a
failure the store answers StoreUnavailable at once for `breaker_s` seconds, so a slow or dead Redis
costs one timeout per worker per second instead of one per request, and recovery needs no restart.
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from contextlib import contextmanager
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

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
from recsvc.state.redis_link import link_for

UNAVAILABLE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)
TOMB_NAMES = 4096  # tombstone key names kept per store (a keyed hash costs about a microsecond)
OWN_PARAMETERS = ("prefix", "stream_maxlen")  # recsvc's own URL parameters, not redis-py's


def stream_maxlen(url: str) -> int:
    """`?stream_maxlen=N`: approximate cap of the global event stream (default 0: only trimmed by the
    operator after `recsvc-train export-events`)."""
    for k, v in parse_qsl(urlsplit(url).query):
        if k == "stream_maxlen":
            if not v.isdigit():
                raise StoreError(f"{url}: stream_maxlen must be a whole number of entries (0 = no cap)")
            return int(v)
    return 0

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
    ):
        self.r = client
        self.prefix = prefix
        self._erasure_key = erasure_key  # None: the key shared through Redis (see _key)
        self._dedup_cap = dedup_cap
        self._maxlen = stream_maxlen
        self.stream = f"{prefix}:events"
        self._cap = events_cap
        self._ttl = ttl_s
        self._breaker_s = breaker_s
        self._down_until = 0.0
        self._where = where
        self._stock_cache: dict[str, tuple[str, StockView]] = {}
        self._tomb_names: dict[str, str] = {}
        self._lock = threading.Lock()
        self._fast = link_for(client)  # the request path's own connections (None: redis-py's pool)
        self._fast_writes = link_for(client)  # the same for event ingestion's script (other connections)
        self._append = self.r.register_script(lua.APPEND)
        self._resolve = self.r.register_script(lua.RESOLVE_OR_CREATE)
        self._link = self.r.register_script(lua.LINK)
        self._unlink = self.r.register_script(lua.UNLINK)
        self._unadopt = self.r.register_script(lua.UNADOPT)
        self._del_if_owner = self.r.register_script(lua.DEL_IF_OWNER)
        self._audit = self.r.register_script(lua.AUDIT)
        self.audit_stream = f"{prefix}:audit"
        self.audit_subjects = f"{prefix}:audit:subjects"

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
        kw.setdefault("stream_maxlen", stream_maxlen(url))
        return cls(client, prefix=prefix, where=f"redis at {p.hostname or p.path}:{p.port or 6379}", **kw)

    def __repr__(self) -> str:
        return f"RedisStore({self._where}, prefix={self.prefix!r})"

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
        return f"{self.prefix}:cust:{{{customer_id}}}:{part}"

    def _tomb(self, customer_id: str) -> str:
        """The customer's tombstone key; the keyed hash is remembered for the TOMB_NAMES customers seen
        last (every read and every ingested event needs it)."""
        name = self._tomb_names.get(customer_id)
        if name is None:
            name = f"{self.prefix}:tomb:{{{tombstone_id(self._key, customer_id)}}}"
            if len(self._tomb_names) >= TOMB_NAMES:
                self._tomb_names.clear()
            self._tomb_names[customer_id] = name
        return name

    def _ident(self, type_: str, value: str) -> str:
        return f"{self.prefix}:ident:{{{identifier_key(type_, value)}}}"

    def _ident_at(self, key: str) -> str:
        """The ident key of an identifier given as `type:hash` (what the ids hash holds)."""
        return f"{self.prefix}:ident:{{{key}}}"

    def _ident_tomb(self, key: str) -> str:
        return f"{self.prefix}:tomb:{{{tombstone_id(self._key, 'ident:' + key)}}}"

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

    def _failed(self, what: str, e: BaseException) -> StoreUnavailable:
        """Open the breaker; the StoreUnavailable to raise (the request path's `_guard` without a
        context manager, which costs a few microseconds a read)."""
        self._down_until = time.monotonic() + self._breaker_s
        return StoreUnavailable(f"{self._where} unreachable during {what}: {e}")

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
            if self._fast is None:
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
            pipe = self.r.pipeline(transaction=False)
            for type_, value in identifiers:
                key = identifier_key(type_, value)
                new = ANON_PREFIX + uuid.uuid4().hex[:20]
                rec = orjson.dumps(identifier_record(mask_identifier(type_, value), provenance))
                self._resolve(keys=[self._ident_at(key), self._ident_tomb(key), self._cust(new, "meta"),
                                    self._cust(new, "ids")],
                              args=[new, key, rec, self._ttl, self.prefix], client=pipe)
            return pipe.execute()

    def link_identifier(self, customer_id: str, type_: str, value: str,
                        provenance: Provenance | None = None) -> LinkOutcome:
        key = identifier_key(type_, value)
        prov = provenance or Provenance(at=time.time(), by_type="system")
        rec = orjson.dumps(identifier_record(mask_identifier(type_, value), prov))
        with self._guard("link_identifier"):
            owner = self.r.get(self._ident_at(key)) or ""
            for _ in range(5):  # optimistic: the script refuses when the owner changed since the read
                o = owner or customer_id
                status, owner_now, copied = self._link(
                    keys=[self._ident_at(key), self._cust(customer_id, "ids"), self._cust(customer_id, "events"),
                          self._cust(customer_id, "evids"), self._tomb(customer_id), self._ident_tomb(key),
                          f"{self.prefix}:adopted", self._cust(o, "ids"), self._cust(o, "events"),
                          self._cust(o, "meta")],
                    args=[customer_id, owner, key, rec, self._cap, self._ttl, int(time.time() * 1000)])
                if status != "retry":
                    return LinkOutcome(status, owner_now or None, int(copied))
                owner = owner_now
        raise StoreUnavailable(f"{self._where}: identifier kept changing owner during link_identifier; retry")

    def unlink_identifier(self, customer_id: str, type_: str, value: str) -> bool:
        key = identifier_key(type_, value)
        with self._guard("unlink_identifier"):
            for _ in range(5):
                raw = self.r.hget(self._cust(customer_id, "ids"), key)
                rec = orjson.loads(raw) if raw else {}
                anon = rec.get("adopted") or ""
                back = {k: v for k, v in rec.items() if k != "adopted"}
                back.update(at=time.time(), by_type="system")
                p = anon or customer_id
                done = self._unlink(
                    keys=[self._ident_at(key), self._cust(customer_id, "ids"), self._cust(customer_id, "events"),
                          self._cust(customer_id, "evids"), f"{self.prefix}:adopted", self._cust(p, "ids"),
                          self._cust(p, "meta")],
                    args=[customer_id, key, anon, orjson.dumps(back), self._ttl, self._cap])
                if done >= 0:
                    return done == 1
        raise StoreUnavailable(f"{self._where}: identifier record kept changing during unlink_identifier; retry")

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
        """One script call for the whole batch (dedup, stream, recent list, erasure index: atomic)."""
        by_customer: dict[str, list[StoredEvent]] = {}
        for e in events:
            by_customer.setdefault(e.customer_id, []).append(e)
        if not by_customer:
            return AppendResult(0, 0, 0)
        keys = [self.stream]
        args: list = [self._cap, self._ttl, int(time.time() * 1000), self._dedup_cap, XIDS_TTL_S, self._maxlen,
                      EVENTS_SLACK]
        dumps, to_dict, row = orjson.dumps, event_to_dict, event_row
        for c, evs in by_customer.items():
            base = f"{self.prefix}:cust:{{{c}}}:"
            keys += (self._tomb(c), base + "events", base + "evids", base + "xids")
            args.append(len(evs))
            for e in evs:  # the stream's JSON object, the recent list's row
                args += (e.event_id, dumps(to_dict(e)), dumps(row(e)))
        with self._guard("append_events"):
            acc, dup, gone = self._call(self._append, keys, args)
        return AppendResult(int(acc), int(dup), int(gone))

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
            for c, entries in zip(gone, xids):
                for key in ids[c]:
                    self._del_if_owner(keys=[self._ident_at(key)], args=[c], client=pipe)
                    pipe.set(self._ident_tomb(key), "1")
                for k in range(0, len(entries), 1000):
                    pipe.xdel(self.stream, *entries[k:k + 1000])
                pipe.delete(*(self._cust(c, p) for p in ("events", "evids", "xids", "consent", "ids", "meta")))
                pipe.hdel(f"{self.prefix}:adopted", c)
                pipe.hdel(self.audit_subjects, audit_subject(self._key, c))
            adopter = meta.get("adopted_by")
            if adopter and adopter not in gone:  # an adopted profile: its copies leave the adopter's list
                for key, raw in self.r.hgetall(self._cust(adopter, "ids")).items():
                    rec = orjson.loads(raw)
                    if rec.get("adopted") == customer_id:
                        rec.pop("adopted")
                        self._unadopt(keys=[self._cust(adopter, "ids"), self._cust(adopter, "events"),
                                            self._cust(adopter, "evids")],
                                      args=[key, orjson.dumps(rec), self._ttl, self._cap], client=pipe)
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
        rec = dict(record)
        subject = ""
        tomb = self.audit_stream
        with self._guard("audit_append"):
            if customer_id is not None:
                subject = rec["subject"] = audit_subject(self._key, customer_id)
                tomb = self._tomb(customer_id)
            self._audit(keys=[self.audit_stream, self.audit_subjects, tomb],
                        args=[AUDIT_CAP, orjson.dumps(rec), subject, customer_id or ""])

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

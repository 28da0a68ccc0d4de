"""Where experiments, assignments, impressions and reports live: Redis (shared, survives restarts) or
this process (the embedded `memory://` store: tests and `recsvc demo`; gone at exit).

Redis key layout (`<prefix>` is the live-state store's, `?prefix=` of RECSVC_STORE_URL, default
`recsvc`; `recsvc-train experiments report` reads the same keys, and a test checks they agree):

    <prefix>:exp:{registry}:defs      hash experiment_id -> definition JSON (status, share history)
    <prefix>:exp:{registry}:version   counter bumped by every definition change; workers reload on change
    <prefix>:exp:{<id>}:assign        hash unit pseudonym -> variant: the first assignment, kept (HSETNX)
    <prefix>:exp:{<id>}:shown         stream, one entry per list served in the experiment: rid, u (unit
                                      pseudonym), a (pseudonyms of the unit's other ids), v, ch, st, ts,
                                      it (JSON array of item ids)
    <prefix>:exp:{<id>}:report        the last report computed (JSON); kept after the experiment stops
    <prefix>:events                   the live-state event stream (recsvc/state/base.py; in the sharded
                                      layout one per bucket, all read), read for attribution between the
                                      start and the end + attribution window

A unit pseudonym is the salted SHA-256 of the resolved customer id (or of the identifier key of an
anonymous device), never the id. Sizes: `assign` ~70 bytes per customer; `shown` ~100 bytes + the item
ids per list served. Once an experiment stops, `assign` and `shown` expire after the attribution
window + RETAIN_AFTER_STOP_S (the report stays).
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Protocol

import orjson

from recsvc.errors import StoreUnavailable

RETAIN_AFTER_STOP_S = 90 * 86400
PAGE = 5000

ASSIGN = """
local found = false
for i = 2, #ARGV do
  local v = redis.call('HGET', KEYS[1], ARGV[i])
  if v then found = v break end
end
local v = found or ARGV[1]
for i = 2, #ARGV do redis.call('HSETNX', KEYS[1], ARGV[i], v) end
return v
"""

PUT_DEF = """
if ARGV[3] == '1' and redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('INCR', KEYS[2])
return 1
"""


def defs_key(prefix: str) -> str:
    return f"{prefix}:exp:{{registry}}:defs"


def version_key(prefix: str) -> str:
    return f"{prefix}:exp:{{registry}}:version"


def assign_key(prefix: str, experiment_id: str) -> str:
    return f"{prefix}:exp:{{{experiment_id}}}:assign"


def shown_key(prefix: str, experiment_id: str) -> str:
    return f"{prefix}:exp:{{{experiment_id}}}:shown"


def report_key(prefix: str, experiment_id: str) -> str:
    return f"{prefix}:exp:{{{experiment_id}}}:report"


def events_key(prefix: str) -> str:
    return f"{prefix}:events"


class ExperimentBackend(Protocol):
    """Every method raises StoreUnavailable when the backend cannot be reached."""

    def definitions(self) -> dict[str, dict]: ...

    def version(self) -> int: ...

    def put_definition(self, definition: dict, only_if_new: bool = False) -> bool:
        """Store (create or replace) a definition and bump the version; False when only_if_new and it
        exists."""

    def assigned(self, experiment_id: str, units: Sequence[str]) -> list[str | None]: ...

    def assign(self, experiment_id: str, units: Sequence[str], proposed: str) -> str:
        """The variant of the first of `units` already assigned, else `proposed`; every unit without an
        assignment gets it. Atomic: two instances racing get the same answer."""

    def record(self, experiment_id: str, impression: dict) -> None: ...

    def impressions(self, experiment_id: str) -> Iterator[dict]: ...

    def events(self, since: float, until: float | None, customers: set[str] | None) -> Iterator[dict]:
        """Live events accepted in [since, until] (None: up to now) for attribution."""

    def save_report(self, experiment_id: str, report: dict) -> None: ...

    def saved_report(self, experiment_id: str) -> dict | None: ...

    def retire(self, experiment_id: str, after_s: float) -> None:
        """Let assignments and impressions expire after `after_s` (the report stays)."""


class MemoryBackend:
    """In this process only; events come from the state store's recent lists (the embedded store keeps
    the newest events of each customer), so impressions keep the raw customer id here (never in Redis)."""

    keeps_customer_ids = True

    def __init__(self, state_store=None):
        self._state = state_store
        self._lock = threading.Lock()
        self._defs: dict[str, dict] = {}
        self._version = 0
        self._assign: dict[str, dict[str, str]] = {}
        self._shown: dict[str, list[dict]] = {}
        self._reports: dict[str, dict] = {}

    def __repr__(self) -> str:
        return "MemoryBackend()"

    def definitions(self) -> dict[str, dict]:
        with self._lock:
            return {k: dict(v) for k, v in self._defs.items()}

    def version(self) -> int:
        return self._version

    def put_definition(self, definition: dict, only_if_new: bool = False) -> bool:
        with self._lock:
            eid = definition["experiment_id"]
            if only_if_new and eid in self._defs:
                return False
            self._defs[eid] = dict(definition)
            self._version += 1
            return True

    def assigned(self, experiment_id: str, units: Sequence[str]) -> list[str | None]:
        with self._lock:
            a = self._assign.get(experiment_id, {})
            return [a.get(u) for u in units]

    def assign(self, experiment_id: str, units: Sequence[str], proposed: str) -> str:
        with self._lock:
            a = self._assign.setdefault(experiment_id, {})
            v = next((a[u] for u in units if u in a), proposed)
            for u in units:
                a.setdefault(u, v)
            return v

    def record(self, experiment_id: str, impression: dict) -> None:
        with self._lock:
            self._shown.setdefault(experiment_id, []).append(impression)

    def impressions(self, experiment_id: str) -> Iterator[dict]:
        with self._lock:
            rows = list(self._shown.get(experiment_id, ()))
        return iter(rows)

    def events(self, since: float, until: float | None, customers: set[str] | None) -> Iterator[dict]:
        from recsvc.state.base import event_to_dict

        if self._state is None or not customers:
            return iter(())
        out = []
        for c in sorted(customers):
            for e in self._state.recent_events(c):
                if e.event.ts >= since and (until is None or e.event.ts <= until):
                    out.append(event_to_dict(e))
        return iter(out)

    def save_report(self, experiment_id: str, report: dict) -> None:
        with self._lock:
            self._reports[experiment_id] = report

    def saved_report(self, experiment_id: str) -> dict | None:
        with self._lock:
            return self._reports.get(experiment_id)

    def retire(self, experiment_id: str, after_s: float) -> None:
        """Nothing to expire: the process's lifetime bounds it."""


class RedisBackend:
    """On the live-state Redis (the same client and prefix as the RedisStore)."""

    keeps_customer_ids = False

    def __init__(self, client, prefix: str = "recsvc", where: str = "redis"):
        import redis

        self.r = client
        self.prefix = prefix
        self._where = where
        self._unavailable = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)
        self._assign = client.register_script(ASSIGN)
        self._put = client.register_script(PUT_DEF)

    def __repr__(self) -> str:
        return f"RedisBackend({self._where}, prefix={self.prefix!r})"

    @classmethod
    def of(cls, store) -> RedisBackend:
        """On a RedisStore's client and prefix."""
        return cls(store.r, store.prefix, where=repr(store))

    @contextmanager
    def _guard(self, what: str):
        try:
            yield
        except self._unavailable as e:
            raise StoreUnavailable(f"{self._where} unreachable during {what}: {e}") from e

    def definitions(self) -> dict[str, dict]:
        with self._guard("experiment definitions"):
            raw = self.r.hgetall(defs_key(self.prefix))
        return {k: orjson.loads(v) for k, v in raw.items()}

    def version(self) -> int:
        with self._guard("experiments version"):
            return int(self.r.get(version_key(self.prefix)) or 0)

    def put_definition(self, definition: dict, only_if_new: bool = False) -> bool:
        with self._guard("store experiment"):
            done = self._put(keys=[defs_key(self.prefix), version_key(self.prefix)],
                             args=[definition["experiment_id"], orjson.dumps(definition), "1" if only_if_new else "0"])
        return bool(done)

    def assigned(self, experiment_id: str, units: Sequence[str]) -> list[str | None]:
        if not units:
            return []
        with self._guard("experiment assignment"):
            return self.r.hmget(assign_key(self.prefix, experiment_id), list(units))

    def assign(self, experiment_id: str, units: Sequence[str], proposed: str) -> str:
        with self._guard("experiment assignment"):
            return self._assign(keys=[assign_key(self.prefix, experiment_id)], args=[proposed, *units])

    def record(self, experiment_id: str, impression: dict) -> None:
        fields = {k: (orjson.dumps(v) if isinstance(v, (list, dict)) else str(v))
                  for k, v in impression.items() if v is not None}
        with self._guard("record impression"):
            self.r.xadd(shown_key(self.prefix, experiment_id), fields)

    def impressions(self, experiment_id: str) -> Iterator[dict]:
        key = shown_key(self.prefix, experiment_id)
        start = "-"
        while True:
            with self._guard("read impressions"):
                page = self.r.xrange(key, min=start, max="+", count=PAGE)
            for entry_id, fields in page:
                yield fields
            if len(page) < PAGE:
                return
            start = "(" + page[-1][0]

    def events(self, since: float, until: float | None, customers: set[str] | None) -> Iterator[dict]:
        """The event streams (one, or one per bucket in the sharded layout) between two times, merged in
        arrival order (entry ids are arrival times in ms: a day of slack either side keeps late-arriving
        events, whose own `ts` is filtered by the join)."""
        from recsvc.state.redis_layout import event_streams

        start = str(max(0, int((since - 86400) * 1000)))
        end = "+" if until is None else str(int((until + 86400) * 1000))
        with self._guard("read events"):
            keys = event_streams(self.r, self.prefix)
        def tagged(n: int, key: str):
            for entry_id, fields in self._entries(key, start, end):
                yield _entry_order(entry_id), n, fields

        for _, _, fields in heapq.merge(*(tagged(n, key) for n, key in enumerate(keys))):
            raw = fields.get("e")
            if raw:
                yield orjson.loads(raw)

    def _entries(self, key: str, start: str, end: str) -> Iterator[tuple[str, dict]]:
        while True:
            with self._guard("read events"):
                page = self.r.xrange(key, min=start, max=end, count=PAGE)
            yield from page
            if len(page) < PAGE:
                return
            start = "(" + page[-1][0]

    def save_report(self, experiment_id: str, report: dict) -> None:
        with self._guard("save report"):
            self.r.set(report_key(self.prefix, experiment_id), orjson.dumps(report))

    def saved_report(self, experiment_id: str) -> dict | None:
        with self._guard("read report"):
            raw = self.r.get(report_key(self.prefix, experiment_id))
        return orjson.loads(raw) if raw else None

    def retire(self, experiment_id: str, after_s: float) -> None:
        with self._guard("retire experiment"):
            pipe = self.r.pipeline(transaction=False)
            pipe.expire(assign_key(self.prefix, experiment_id), int(after_s))
            pipe.expire(shown_key(self.prefix, experiment_id), int(after_s))
            pipe.execute()


def _entry_order(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def backend_for(state_store) -> ExperimentBackend:
    """Redis when live state is on Redis (shared by every worker and instance), else this process."""
    from recsvc.state.redis import RedisStore

    if isinstance(state_store, RedisStore):
        return RedisBackend.of(state_store)
    return MemoryBackend(state_store)

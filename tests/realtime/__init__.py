"""Helpers for the real-time tests: events in the contract's shape, and a redis-server of the test's own
on a free port (with or without an fsync-always append-only file) that a test may stop, kill -9 and
restart under a running service."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
import uuid

import redis

from tests.service import free_port

CHANNELS = ("web", "app", "store", "call_center")


def event(customer: str | dict, item: str, kind: str = "view", channel: str = "web", event_id: str | None = None,
          **extra) -> dict:
    who = {"customer_id": customer} if isinstance(customer, str) else customer
    e = {"event_id": event_id or f"t-{uuid.uuid4().hex}", "customer": who, "item_id": item, "event": kind,
         "channel": channel, "timestamp": "2026-11-23T10:00:00Z"}
    e.update(extra)
    return e


def rec_body(customer: str | None, channel: str, store_id: str | None = None, n: int = 10, **extra) -> dict:
    body = {"context": {"channel": channel, **({"store_id": store_id} if store_id else {})}, "n": n, **extra}
    if customer is not None:
        body["customer"] = {"customer_id": customer}
    return body


def ids_of(js: dict) -> list[str]:
    return [x["item_id"] for x in js["items"]]


def id_pattern(s: str) -> re.Pattern:
    """s not glued to other id characters (so c42 is not found inside c420 or a hex hash)."""
    return re.compile(r"(?<![A-Za-z0-9])" + re.escape(s) + r"(?![A-Za-z0-9])")


def dump_redis(client: redis.Redis, match: str | None = None) -> list[tuple[str, str]]:
    """(key, text of key and value) for every key of the server (or matching `match`), read by type:
    what an erasure must leave no trace in. A key of a type it cannot read fails the test."""
    out = []
    read = {"string": client.get, "hash": client.hgetall, "list": lambda x: client.lrange(x, 0, -1),
            "set": client.smembers, "zset": lambda x: client.zrange(x, 0, -1, withscores=True),
            "stream": client.xrange}
    for k in client.scan_iter(match=match, count=1000):
        k = k.decode() if isinstance(k, bytes) else k
        t = client.type(k)
        t = t.decode() if isinstance(t, bytes) else t
        if t == "none":  # expired or deleted between SCAN and TYPE
            continue
        assert t in read, f"key {k} of type {t}: the erasure scan cannot read it"
        out.append((k, f"{k}\n{read[t](k)}"))
    return out


def traces(text: str, needles: list[str]) -> list[str]:
    """The needles found in `text`: hashes and long values as substrings, short ids not glued to other id
    characters (so c42 is not found inside c420 or a hex hash)."""
    return [n for n in needles if (n in text if len(n) >= 16 else id_pattern(n).search(text))]


class RedisServer:
    """A redis-server on a free loopback port in its own folder; `aof=True` is the durable setting
    (appendonly yes, appendfsync always: a write is on disk before Redis answers it)."""

    def __init__(self, workdir: str, aof: bool = False, port: int | None = None, extra: tuple[str, ...] = ()):
        self.port = port or free_port()
        self.dir = workdir
        self.aof = aof
        self.extra = extra
        self.proc: subprocess.Popen | None = None
        os.makedirs(workdir, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if self.aof else ["--appendonly", "no"]
        self.proc = subprocess.Popen(
            [shutil.which("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--dir", self.dir, *persistence, *self.extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, start_new_session=True)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 15
        try:
            while time.monotonic() < deadline:
                try:
                    client.ping()
                    return self
                except (redis.exceptions.ConnectionError, redis.exceptions.BusyLoadingError):
                    time.sleep(0.05)
        finally:
            client.close()
        self.kill()
        raise RuntimeError(f"redis-server on port {self.port} did not start")

    def client(self, **kw) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True, **kw)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=15)

    def kill(self) -> None:
        """kill -9: no shutdown save, no flush beyond what appendfsync already did."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=15)


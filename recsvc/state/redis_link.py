"""The request path's Redis connection: one pipelined read per recommendation, sent at once and
collected later, so the caller scores items while Redis answers; and, on a Link of its own, the event
ingestion script (RedisStore._call: one EVALSHA of several hundred arguments per batch).

redis-py's pool does bookkeeping on every borrow and return (a poll of the socket, observability
counters, locks): about two thirds of the CPU of a small pipelined read. Here each connection is a
plain socket with a hiredis reader, taken from a small free list; the handshake (AUTH, SELECT,
CLIENT SETNAME) is the one redis-py would send. Only plain TCP URLs with RESP2 are handled this way
(`link_for` returns None for TLS, unix sockets or other options: the caller keeps redis-py then).

A connection never serves two reads at once: one whose replies were not all read (an exception
between send and read) is closed, never handed out again, so replies cannot reach the wrong request.
"""

from __future__ import annotations

import os
import socket
import threading

import hiredis
import redis
from redis._parsers.base import BaseParser  # the error-reply -> exception table redis-py uses

# redis-py connection options this module implements, the ones that change nothing on the wire for
# its reads, and the values the others must have (anything else: redis-py keeps the connection)
HANDLED = frozenset(("host", "port", "db", "username", "password", "socket_timeout", "socket_connect_timeout",
                     "client_name", "decode_responses"))
NEUTRAL = frozenset(("himport_registry", "maint_notifications_pool_handler", "maint_notifications_config",
                     "orig_host_address", "orig_socket_timeout", "orig_socket_connect_timeout", "retry",
                     "health_check_interval", "retry_on_timeout", "retry_on_error", "socket_read_size",
                     "driver_info", "legacy_responses", "socket_keepalive", "socket_keepalive_options"))
REQUIRED = {"protocol": (None, 2, "2"), "encoding": ("utf-8",), "encoding_errors": ("strict",),
            "credential_provider": (None,), "redis_connect_func": (None,)}
FREE_KEPT = 16  # idle connections kept per process (a threaded server may use more at once)


def pack(commands: list[tuple]) -> bytes:
    """RESP encoding of several commands (str, bytes and int arguments), by hiredis."""
    if len(commands) == 1:
        return hiredis.pack_command(commands[0])
    return b"".join([hiredis.pack_command(cmd) for cmd in commands])


class _Conn:
    __slots__ = ("buf", "pid", "reader", "sock", "unread")

    def __init__(self, sock: socket.socket, decode: bool):
        self.sock = sock
        self.reader = hiredis.Reader(encoding="utf-8") if decode else hiredis.Reader()
        self.buf = bytearray(65536)
        self.pid = os.getpid()
        self.unread = 0

    def send(self, payload: bytes, replies: int) -> None:
        self.unread = replies
        self.sock.sendall(payload)

    def read(self, raise_errors: bool = True) -> list:
        """Every reply of the last send; ResponseError (after reading them all) if one is an error
        (raise_errors=False: errors are left in the list, as hiredis.ReplyError)."""
        out = []
        reader, sock, buf = self.reader, self.sock, self.buf
        while len(out) < self.unread:
            r = reader.gets()
            if r is False:
                n = sock.recv_into(buf)
                if n == 0:
                    raise redis.exceptions.ConnectionError("Redis closed the connection")
                reader.feed(buf, 0, n)
                continue
            out.append(r)
        self.unread = 0
        if not raise_errors:
            return out
        for r in out:
            if isinstance(r, hiredis.ReplyError):
                raise reply_error(r)
        return out

    def close(self) -> None:
        self.unread = -1  # never reused
        try:
            self.sock.close()
        except OSError:
            pass


class Link:
    """Connections to one Redis for the request path's pipelined reads."""

    def __init__(self, host: str, port: int, db: int = 0, username: str | None = None,
                 password: str | None = None, timeout: float | None = None, connect_timeout: float | None = None,
                 client_name: str | None = None, decode: bool = True):
        self.address = (host, port)
        self.timeout = timeout
        self.connect_timeout = connect_timeout if connect_timeout is not None else timeout
        self.decode = decode
        hello = []
        if password is not None:
            hello.append(("AUTH", username, password) if username else ("AUTH", password))
        if db:
            hello.append(("SELECT", db))
        if client_name:
            hello.append(("CLIENT", "SETNAME", client_name))
        self._hello = (pack(hello), len(hello)) if hello else None
        self._free: list[_Conn] = []
        self._lock = threading.Lock()

    def _connect(self) -> _Conn:
        sock = socket.create_connection(self.address, timeout=self.connect_timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(self.timeout)
            conn = _Conn(sock, self.decode)
            if self._hello is not None:
                conn.send(*self._hello)
                try:
                    conn.read()
                except redis.exceptions.ResponseError as e:
                    raise redis.exceptions.ConnectionError(f"Redis refused the handshake: {e}") from None
        except BaseException:
            sock.close()
            raise
        return conn

    def _take(self) -> _Conn | None:
        with self._lock:
            while self._free:
                conn = self._free.pop()
                if conn.pid == os.getpid():
                    return conn
        return None

    def _give_back(self, conn: _Conn) -> None:
        if conn.unread != 0 or conn.pid != os.getpid():
            conn.close()
            return
        with self._lock:
            if len(self._free) < FREE_KEPT:
                self._free.append(conn)
                return
        conn.close()

    def send(self, commands: list[tuple]) -> Pending:
        """Send the commands in one write; `.replies()` on the result reads them. A stale pooled
        connection (Redis restarted since) gets one retry on a fresh one, as redis-py's retry does."""
        payload = pack(commands)
        conn = self._take()
        if conn is not None:
            try:
                conn.send(payload, len(commands))
                return Pending(self, conn, payload, len(commands), retried=False)
            except OSError:
                conn.close()
        conn = self._connect()
        try:
            conn.send(payload, len(commands))
        except BaseException:
            conn.close()
            raise
        return Pending(self, conn, payload, len(commands), retried=True)

    def close(self) -> None:
        with self._lock:
            free, self._free = self._free, []
        for conn in free:
            conn.close()


class Pending:
    """Replies on their way; read them once with `replies()`."""

    __slots__ = ("conn", "count", "link", "payload", "retried")

    def __init__(self, link: Link, conn: _Conn, payload: bytes, count: int, retried: bool):
        self.link, self.conn, self.payload, self.count, self.retried = link, conn, payload, count, retried

    def replies(self, raise_errors: bool = True) -> list:
        conn = self.conn
        try:
            out = conn.read(raise_errors)
        except (redis.exceptions.ConnectionError, OSError):
            conn.close()
            if self.retried:
                raise
            conn = self.link._connect()  # the pooled connection was stale: once more on a fresh one
            try:
                conn.send(self.payload, self.count)
                out = conn.read(raise_errors)
            except BaseException:
                conn.close()
                raise
        except BaseException:
            conn.close()
            raise
        self.link._give_back(conn)
        return out

    def cancel(self) -> None:
        """The replies are not wanted: the connection is closed (it must not carry them to another read)."""
        self.conn.close()


def reply_error(reply) -> redis.exceptions.RedisError:
    """The exception redis-py would raise for an error reply, where it says Redis is unavailable
    (LOADING after a restart, MASTERDOWN...: ConnectionError subclasses, so callers treat them as an
    outage); any other error stays a ResponseError with the full text (NOSCRIPT checks rely on it)."""
    text = str(reply)
    mapped = BaseParser.parse_error(text)
    if isinstance(mapped, redis.exceptions.ConnectionError):
        return mapped
    return redis.exceptions.ResponseError(text)


def link_for(client: redis.Redis) -> Link | None:
    """A Link with the client's connection settings, or None when they need redis-py (TLS, unix
    socket, RESP3, credential providers, other encodings, a Cluster client...)."""
    pool = getattr(client, "connection_pool", None)
    if pool is None:  # redis.cluster.RedisCluster: redis-py routes every command by slot
        return None
    kw = pool.connection_kwargs
    if pool.connection_class is not redis.connection.Connection or not set(kw) <= HANDLED | NEUTRAL | set(REQUIRED):
        return None
    if any(k in kw and kw[k] not in allowed for k, allowed in REQUIRED.items()):
        return None
    return Link(host=kw.get("host", "localhost"), port=int(kw.get("port", 6379)), db=int(kw.get("db", 0) or 0),
                username=kw.get("username"), password=kw.get("password"), timeout=kw.get("socket_timeout"),
                connect_timeout=kw.get("socket_connect_timeout"), client_name=kw.get("client_name"),
                decode=bool(kw.get("decode_responses", False)))

"""EventLog: the embedded store's durable record, an append-only JSON-lines file.

`InMemoryStore` writes every change of a customer's live state here (accepted events, consent,
identifier links and unlinks, anonymous profiles, erasure tombstones) and fsyncs before it answers,
so a 202 for an event means the event is on disk; at start the store replays the file. One record per
line, each a JSON object with a type `t` (`ev`, `consent`, `anon`, `link`, `unlink`, `erase`).

Erasure rewrites the file without the erased customer's records (a temp file, fsync, `os.replace`,
fsync of the folder), then appends the tombstone record, which holds a keyed hash only. Appends
open the file for each batch, so a writer never keeps writing into a file another process replaced;
a lock file (`<log>.lock`, fcntl) orders the writers of several processes on one machine.

A crash can leave a torn last line; the next open cuts it off (its write was never acknowledged).
"""

from __future__ import annotations

import fcntl
import os
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import orjson

from recsvc.errors import RecsvcError

KEY_SUFFIX = ".erasure-key"


class EventLogError(RecsvcError):
    """The event log cannot be read or written (corrupt line, unwritable folder)."""

    code = "event_log_error"


class EventLog:
    def __init__(self, path: str):
        self.path = os.path.abspath(path)
        folder = os.path.dirname(self.path)
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as e:
            raise EventLogError(f"event log {self.path}: cannot create its folder ({e}); "
                                "set RECSVC_EVENT_LOG to a writable path") from e
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"EventLog({self.path!r})"

    @contextmanager
    def _locked(self):
        """This process's threads, then other processes on the same file (fcntl lock file)."""
        with self._lock:
            fd = os.open(self.path + ".lock", os.O_CREAT | os.O_RDWR, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # closing releases the flock

    # -- reading
    def records(self) -> Iterator[dict]:
        """Every record, oldest first (a torn last line from a crash is cut off first)."""
        with self._locked():
            lines = self._read_lines()
        for n, line in enumerate(lines, 1):
            try:
                rec = orjson.loads(line)
            except orjson.JSONDecodeError as e:
                raise EventLogError(f"event log {self.path}, line {n}: not JSON ({e}); move the file "
                                    "aside to start empty, or fix that line") from None
            if not isinstance(rec, dict) or "t" not in rec:
                raise EventLogError(f"event log {self.path}, line {n}: not a record (no `t` field)")
            yield rec

    def _read_lines(self) -> list[bytes]:
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return []
        if data and not data.endswith(b"\n"):
            cut = data.rfind(b"\n") + 1
            with open(self.path, "r+b") as f:
                f.truncate(cut)
                f.flush()
                os.fsync(f.fileno())
            data = data[:cut]
        return [x for x in data.split(b"\n") if x.strip()]

    # -- writing
    def append(self, records: Iterable[dict]) -> None:
        """Write the records and fsync: when this returns they survive a crash of the machine."""
        data = b"".join(orjson.dumps(r) + b"\n" for r in records)
        if not data:
            return
        with self._locked():
            self._write(data)

    def _write(self, data: bytes) -> None:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as e:
            raise EventLogError(f"event log {self.path}: write failed ({e})") from e

    def rewrite(self, keep: Callable[[dict], bool], then: Iterable[dict] = ()) -> int:
        """Drop the records `keep` refuses (erasure), then append `then`; returns how many were dropped."""
        with self._locked():
            lines = self._read_lines()
            kept, dropped = [], 0
            for line in lines:
                if keep(orjson.loads(line)):
                    kept.append(line)
                else:
                    dropped += 1
            if dropped:
                tmp = self.path + ".rewrite"
                with open(tmp, "wb") as f:
                    f.write(b"".join(x + b"\n" for x in kept))
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.path)
                dfd = os.open(os.path.dirname(self.path), os.O_RDONLY)
                try:
                    os.fsync(dfd)
                finally:
                    os.close(dfd)
            data = b"".join(orjson.dumps(r) + b"\n" for r in then)
            if data:
                self._write(data)
        return dropped

    # -- the erasure key kept beside the log when RECSVC_ERASURE_KEY is unset
    def erasure_key(self) -> bytes:
        """The key of the tombstones' keyed hash, made once (32 random bytes, mode 0600) beside the log:
        replayed tombstones must hash the same way after a restart."""
        path = self.path + KEY_SUFFIX
        with self._locked():
            try:
                with open(path, "rb") as f:
                    key = f.read().strip()
                if key:
                    return key
            except FileNotFoundError:
                pass
            key = secrets.token_hex(32).encode()
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, key + b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)
            return key

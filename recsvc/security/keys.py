"""API keys: the token format, the keys file, and each worker's view of it.

A key is `rk_<id>_<secret>`: `id` is 12 public hex characters (it names the key in `recsvc keys list`,
logs and the audit, and finds its record in O(1)); `secret` is 32 random bytes, base64url. The keys file
(`RECSVC_KEYS_FILE`, JSON) holds, per key, its id, name, role, bindings (store, channels), optional
rate limit, creation and revocation times, and `HMAC-SHA256(keys secret, whole token)` — never the
token. The HMAC's own key comes from `RECSVC_KEYS_SECRET`, or from `<keys file>.secret` (made once,
mode 600) when that is unset: a copy of the keys file alone lets nobody test a guess.

Why a keyed hash and not a slow one (scrypt, argon2): a slow hash protects secrets people choose,
which can be guessed; a 256-bit random secret cannot, so slowness buys nothing and would cost every
request a verification (or a cache of raw keys), and would let anyone who knows a key id burn the
server's CPU with wrong secrets. HMAC-SHA256 costs about a microsecond, so every request is
verified afresh, compared in constant time (`hmac.compare_digest`).

Writes (`create`, `revoke`) take an exclusive lock on `<keys file>.lock`, write a temporary file, fsync
it and `os.replace` it into place. Workers stat the file at most every `CHECK_S` seconds and re-read it
when its inode, size or mtime changed, so a revocation reaches every worker within about a second.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
import threading
import time
from dataclasses import dataclass

from recsvc.errors import RecsvcError

ROLES = ("storefront", "clerk", "analyst", "admin")
CHANNELS = ("web", "app", "store", "call_center")
FORMAT = "recsvc-keys/1"
TOKEN = re.compile(r"^rk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
TOKEN_LEN = 3 + 12 + 1 + 43
CHECK_S = 0.25  # how often a worker looks at the keys file's metadata
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@:-]{0,63}$")
ID_MAX = 128


class KeyError_(RecsvcError):
    """A keys-file operation that cannot be done as asked (unknown key, bad role, another secret...)."""

    code = "keys_error"
    status = 400


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request comes from: a key's public facts (never its secret)."""

    key_id: str | None
    name: str | None
    role: str
    store_id: str | None = None
    channels: tuple[str, ...] = ()
    rate_limit: int | None = None  # requests per window for this key; None = its role's


# Every request when RECSVC_AUTH=off: no key, no binding, no limit.
AUTH_OFF = Principal(key_id=None, name="(auth off)", role="admin")


def new_token() -> tuple[str, str]:
    """(key id, token) for a new key."""
    kid = secrets.token_hex(6)
    return kid, f"rk_{kid}_{secrets.token_urlsafe(32)}"


def key_id_of(token: str) -> str | None:
    """The id part of a well-formed token (no secret checked), else None."""
    if len(token) != TOKEN_LEN:
        return None
    m = TOKEN.match(token)
    return m.group(1) if m else None


class Hasher:
    """HMAC-SHA256 under one secret, with its inner and outer pads computed once (RFC 2104): hashing a
    token then costs two SHA-256 state copies and two short updates."""

    def __init__(self, secret: bytes):
        key = hashlib.sha256(secret).digest() if len(secret) > 64 else secret
        key = key.ljust(64, b"\0")
        self._inner = hashlib.sha256(bytes(x ^ 0x36 for x in key))
        self._outer = hashlib.sha256(bytes(x ^ 0x5C for x in key))
        self.fingerprint = self.digest("recsvc keys file fingerprint")[:16]

    def digest(self, token: str) -> str:
        inner, outer = self._inner.copy(), self._outer.copy()
        inner.update(token.encode("utf-8", "surrogatepass"))
        outer.update(inner.digest())
        return outer.hexdigest()


def secret_path(keys_file: str) -> str:
    return keys_file + ".secret"


def load_secret(keys_file: str, configured: str | None, create: bool = False) -> bytes | None:
    """RECSVC_KEYS_SECRET when set; else `<keys file>.secret` (created with mode 600 when `create`)."""
    if configured:
        return configured.encode("utf-8")
    path = secret_path(keys_file)
    try:
        with open(path, "rb") as f:
            value = f.read().strip()
        if value:
            return value
    except FileNotFoundError:
        pass
    if not create:
        return None
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    value = secrets.token_hex(32).encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # made meanwhile by another `keys create`
        return load_secret(keys_file, None, create=False)
    with os.fdopen(fd, "wb") as f:
        f.write(value + b"\n")
        f.flush()
        os.fsync(f.fileno())
    return value


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _empty() -> dict:
    return {"format": FORMAT, "hash": "hmac-sha256", "secret_fingerprint": None, "keys": []}


def read_file(path: str) -> dict:
    """The keys file's content (an empty one when the file does not exist)."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return _empty()
    except (OSError, ValueError) as e:
        raise KeyError_(f"{path}: not a readable keys file ({e})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("keys"), list):
        raise KeyError_(f"{path}: not a recsvc keys file (expected format {FORMAT})")
    return data


@contextlib.contextmanager
def _locked(path: str):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".lock", "a+b") as lk:
        fcntl.flock(lk, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lk, fcntl.LOCK_UN)


def _write(path: str, data: dict) -> None:
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".keys-", dir=d)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dfd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def public(rec: dict) -> dict:
    """What `keys list` and GET /v1/keys show of a record: everything but the hash."""
    return {k: rec.get(k) for k in ("id", "name", "role", "store_id", "channels", "rate_limit", "created_at",
                                    "revoked_at")}


def create_key(path: str, secret: str | None, role: str, store_id: str | None = None,
               channels: tuple[str, ...] = (), name: str | None = None,
               rate_limit: int | None = None) -> tuple[dict, str]:
    """Add a key to the file; -> (its public record, the token: shown once, never stored)."""
    if role not in ROLES:
        raise KeyError_(f"unknown role {role!r}: expected one of {', '.join(ROLES)}")
    if role == "clerk" and not store_id:
        raise KeyError_("a clerk key is bound to one store: give --store STORE_ID")
    if store_id is not None and (not store_id or len(store_id) > ID_MAX
                                 or any(ord(c) < 32 or ord(c) == 127 for c in store_id)):
        raise KeyError_("--store: a store id of 1 to 128 printable characters")
    bad = [c for c in channels if c not in CHANNELS]
    if bad:
        raise KeyError_(f"unknown channel {bad[0]!r}: expected {', '.join(CHANNELS)}")
    if role in ("analyst", "admin") and (store_id or channels):
        raise KeyError_(f"an {role} key is not bound to a store or channel")
    if name is not None and not NAME.match(name):
        raise KeyError_("--name: 1 to 64 letters, digits or . _ @ : - (starting with a letter or digit)")
    if rate_limit is not None and not 0 < rate_limit <= 10**9:
        raise KeyError_("--rate-limit: a positive number of requests per window")
    with _locked(path):
        data = read_file(path)
        key = load_secret(path, secret, create=True)
        hasher = Hasher(key)
        fp = data.get("secret_fingerprint")
        if fp and fp != hasher.fingerprint and any(not r.get("revoked_at") for r in data["keys"]):
            raise KeyError_(f"{path} was written with another keys secret (RECSVC_KEYS_SECRET or "
                            f"{secret_path(path)}): its keys would stop working; use the same secret")
        ids = {r["id"] for r in data["keys"]}
        kid, token = new_token()
        while kid in ids:
            kid, token = new_token()
        name = name or f"{role}-{kid}"
        if any(r.get("name") == name and not r.get("revoked_at") for r in data["keys"]):
            raise KeyError_(f"an active key is already named {name!r}; revoke it or choose another --name")
        rec = {"id": kid, "name": name, "role": role, "store_id": store_id, "channels": sorted(set(channels)),
               "rate_limit": rate_limit, "created_at": _now(), "revoked_at": None,
               "hash": hasher.digest(token)}
        data["secret_fingerprint"] = hasher.fingerprint
        data["keys"].append(rec)
        _write(path, data)
    return public(rec), token


def revoke_key(path: str, which: str) -> list[dict]:
    """Revoke the active key with this id or name (all of them, when a name is shared); -> their records."""
    with _locked(path):
        data = read_file(path)
        hits = [r for r in data["keys"] if not r.get("revoked_at") and which in (r.get("id"), r.get("name"))]
        if not hits:
            raise KeyError_(f"no active key with id or name {which!r} in {path}")
        when = _now()
        for r in hits:
            r["revoked_at"] = when
        _write(path, data)
    return [public(r) for r in hits]


def list_keys(path: str) -> list[dict]:
    return [public(r) for r in read_file(path)["keys"]]


@dataclass(frozen=True, slots=True)
class _Entry:
    digest: str
    principal: Principal


class KeyRing:
    """One worker's view of the keys file: active keys by id, re-read when the file changes."""

    def __init__(self, path: str, secret: str | None, on_reload=None):
        self.path = path
        self._secret = secret
        self._on_reload = on_reload
        self._keys: tuple[Hasher | None, dict[str, _Entry]] = (None, {})  # swapped as one reference
        self._sig: tuple | None = ()
        self._next_check = 0.0
        self._lock = threading.Lock()
        self.problem: str | None = None  # why no key can be accepted, when that is so
        self.active = 0
        self.refresh(force=True)

    def _signature(self) -> tuple | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        except OSError as e:  # unreadable: every key refused (below), looked at again at the next check
            return ("error", str(e), time.monotonic())
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def refresh(self, force: bool = False) -> None:
        """Re-read the file when it changed (at most every CHECK_S seconds unless forced)."""
        now = time.monotonic()
        if not force and now < self._next_check:
            return
        with self._lock:
            if not force and now < self._next_check:
                return
            self._next_check = now + CHECK_S
            sig = self._signature()
            if sig == self._sig and not force:
                return
            self._load(sig)

    def _load(self, sig) -> None:
        try:
            data = read_file(self.path)
            secret = load_secret(self.path, self._secret)
        except (KeyError_, OSError) as e:  # a broken file refuses every key rather than the last good set
            self._keys, self._sig, self.active = (None, {}), sig, 0
            self.problem = e.message if isinstance(e, KeyError_) else f"{self.path}: {e}"
            self._reloaded()
            return
        hasher = Hasher(secret) if secret else None
        by_id = {}
        problem = None
        for r in data["keys"]:
            if r.get("revoked_at") or not r.get("hash") or r.get("role") not in ROLES:
                continue
            p = Principal(key_id=r["id"], name=r.get("name"), role=r["role"], store_id=r.get("store_id"),
                          channels=tuple(r.get("channels") or ()), rate_limit=r.get("rate_limit"))
            by_id[r["id"]] = _Entry(r["hash"], p)
        if by_id and hasher is None:
            problem = (f"no keys secret: set RECSVC_KEYS_SECRET or keep {secret_path(self.path)} beside the "
                       "keys file; every key is refused")
            by_id = {}
        elif by_id and data.get("secret_fingerprint") not in (None, hasher.fingerprint):
            problem = (f"{self.path} was written with another keys secret than this server's; every key is "
                       "refused (use the RECSVC_KEYS_SECRET the keys were created with)")
            by_id = {}
        elif not by_id:
            problem = f"no active API key in {self.path}: create one with `recsvc keys create --role ROLE`"
        self._keys, self._sig = (hasher, by_id), sig
        self.active, self.problem = len(by_id), problem
        self._reloaded()

    def _reloaded(self) -> None:
        if self._on_reload is not None:
            self._on_reload(self)

    def verify(self, token: str) -> Principal | None:
        """The key's principal when `token` is an active key, else None (constant-time comparison)."""
        self.refresh()
        if len(token) != TOKEN_LEN:
            return None
        m = TOKEN.match(token)
        if m is None:
            return None
        hasher, by_id = self._keys
        entry = by_id.get(m.group(1))
        if entry is None or hasher is None:
            return None
        if not hmac.compare_digest(hasher.digest(token), entry.digest):
            return None
        return entry.principal

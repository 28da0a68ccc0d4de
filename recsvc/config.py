"""Service configuration: one frozen value read from `RECSVC_*` environment variables.

Every variable, its default and what it does (the README's table is generated from `VARIABLES`):
a bad value stops the service at start with one line naming the variable and what it accepts.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace

from recsvc.errors import RecsvcError

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
DEFAULT_EVENT_LOG = "recsvc-events.jsonl"  # in the working folder, when RECSVC_EVENT_LOG is unset
DEFAULT_KEYS_FILE = "recsvc-keys.json"  # in the working folder, when RECSVC_KEYS_FILE is unset
ROLES = ("storefront", "clerk", "analyst", "admin")
# requests per key per RECSVC_RATE_WINDOW_S, by role (RECSVC_RATE_LIMIT changes any of them)
DEFAULT_RATE_LIMITS = {"storefront": 300000, "clerk": 600, "analyst": 600, "admin": 6000}


class ConfigError(RecsvcError):
    """A `RECSVC_*` variable holds a value the service cannot use."""

    code = "config_error"


@dataclass(frozen=True)
class Config:
    """What the service needs to start. Build it with `Config.from_env()` or directly in tests."""

    models_dir: str = "models"
    model: str = "champion"  # model id, alias or path served at start
    store_url: str = "memory://"
    auth: bool = True  # API keys required on /v1/; off only when set explicitly (warns at start)
    keys_file: str = DEFAULT_KEYS_FILE
    keys_secret: str | None = field(default=None, repr=False)  # HMAC key of the key hashes
    rate_limits: tuple = tuple(sorted(DEFAULT_RATE_LIMITS.items()))  # ((role, requests per window), ...)
    rate_window_s: int = 60
    cors_origins: tuple = ()  # origins allowed to call the API from a browser; () = same origin only
    consent_default: bool = True  # consent of a customer with no recorded choice
    max_per_category: int | None = None  # diversity cap per list; None = no cap
    redis_timeout_ms: int = 250  # connect and read timeout of every Redis call
    max_body_bytes: int = 1 << 20
    log_level: str = "INFO"
    event_log: str | None = None  # embedded store's append-only log; None = not durable (tests)
    erasure_key: str | None = field(default=None, repr=False)  # HMAC key of erasure tombstones
    reload_poll_s: float = 5.0  # how often a worker re-reads the alias it serves; 0 = never
    runtime_dir: str | None = None  # shared by the workers of one gunicorn (reload follow-up)
    experiments_file: str | None = None  # experiments declared at start (JSON or TOML)
    experiments_poll_s: float = 1.0  # how often a worker checks for changed experiments; 0 = every request
    ann_min_items: int | None = None  # catalogue size from which a model's ANN index is used; None = the model's

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides) -> Config:
        """Read every `RECSVC_*` variable (unset or empty = default); keyword overrides win."""
        env = os.environ if env is None else env
        values = {}
        for var, (name, parse, _doc) in VARIABLES.items():
            raw = env.get(var)
            if raw is None or raw.strip() == "":
                continue
            try:
                values[name] = parse(raw.strip())
            except ValueError as e:
                raise ConfigError(f"{var}={raw!r}: {e}") from None
        values.setdefault("event_log", DEFAULT_EVENT_LOG)
        cfg = cls(**values)
        return replace(cfg, **{k: v for k, v in overrides.items() if v is not None}) if overrides else cfg

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def erasure_key_bytes(self) -> bytes | None:
        return self.erasure_key.encode("utf-8") if self.erasure_key else None


def _text(raw: str) -> str:
    return raw


def _switch(raw: str) -> bool:
    v = raw.lower()
    if v in ("on", "true", "1", "yes"):
        return True
    if v in ("off", "false", "0", "no"):
        return False
    raise ValueError("expected on or off")


def _consent(raw: str) -> bool:
    v = raw.lower()
    if v not in ("granted", "denied"):
        raise ValueError("expected granted or denied")
    return v == "granted"


def _int_range(lo: int, hi: int):
    def parse(raw: str) -> int:
        try:
            v = int(raw)
        except ValueError:
            raise ValueError(f"expected a whole number from {lo} to {hi}") from None
        if not lo <= v <= hi:
            raise ValueError(f"expected a whole number from {lo} to {hi}")
        return v

    return parse


def _cap(raw: str) -> int | None:
    if raw.lower() in ("none", "off"):
        return None
    return _int_range(1, 100)(raw)


def _seconds(raw: str) -> float:
    try:
        v = float(raw)
    except ValueError:
        raise ValueError("expected seconds (a number >= 0; 0 turns polling off)") from None
    if not (v >= 0 and v < 86400):
        raise ValueError("expected seconds (a number >= 0; 0 turns polling off)")
    return v


def _check_interval(raw: str) -> float:
    try:
        v = float(raw)
    except ValueError:
        raise ValueError("expected seconds (a number >= 0; 0 checks on every request)") from None
    if not (v >= 0 and v < 3600):
        raise ValueError("expected seconds from 0 (check on every request) to 3600")
    return v


def _event_log(raw: str) -> str | None:
    return None if raw.lower() == "off" else raw


def _secret(raw: str) -> str:
    if len(raw) < 16:
        raise ValueError("expected a secret of at least 16 characters (e.g. `openssl rand -hex 32`)")
    return raw


def _rate_limits(raw: str) -> tuple:
    """`off`, or `role=N,...` (roles not named keep their default; 0 = no limit for that role)."""
    if raw.lower() == "off":
        return tuple((r, 0) for r in ROLES)
    limits = dict(DEFAULT_RATE_LIMITS)
    for part in raw.split(","):
        role, sep, n = part.strip().partition("=")
        role = role.strip().lower()
        if not sep or role not in ROLES or not n.strip().isdigit() or int(n) > 10**9:
            raise ValueError(f"expected role=requests per window, comma-separated (roles: {', '.join(ROLES)}), "
                             "or off")
        limits[role] = int(n)
    return tuple(sorted(limits.items()))


def _origins(raw: str) -> tuple:
    out = []
    for o in raw.split(","):
        o = o.strip().rstrip("/")
        if not o:
            continue
        if o != "*" and not re.fullmatch(r"https?://[A-Za-z0-9.\-]+(:\d{1,5})?", o):
            raise ValueError("expected origins like https://shop.example.com[:port], comma-separated, or *")
        out.append(o)
    return tuple(out)


def _level(raw: str) -> str:
    v = raw.upper()
    if v not in LOG_LEVELS:
        raise ValueError(f"expected one of {', '.join(LOG_LEVELS)}")
    return v


def _store_url(raw: str) -> str:
    if not raw.startswith(("memory://", "redis://", "rediss://", "unix://")):
        raise ValueError("expected memory:// or redis://host:port/db[?prefix=NAME]")
    return raw


# variable -> (Config field, parser, what it does)
VARIABLES: dict[str, tuple[str, object, str]] = {
    "RECSVC_MODELS_DIR": ("models_dir", _text, "model registry folder (default `models`)"),
    "RECSVC_MODEL": ("model", _text, "model id, alias or path to serve (default `champion`)"),
    "RECSVC_STORE_URL": (
        "store_url",
        _store_url,
        "live state: `memory://` (default) or `redis://host:port/db?prefix=recsvc`",
    ),
    "RECSVC_AUTH": (
        "auth",
        _switch,
        "`on` (default): every /v1/ request needs `Authorization: Bearer <key>`; `off` accepts anyone "
        "and logs a warning at start",
    ),
    "RECSVC_KEYS_FILE": (
        "keys_file",
        _text,
        f"API keys (keyed hashes only) written by `recsvc keys create` (default `{DEFAULT_KEYS_FILE}` in the "
        "working folder); re-read by every worker within a second of a change",
    ),
    "RECSVC_KEYS_SECRET": (
        "keys_secret",
        _secret,
        "secret key (16+ characters) of the HMAC that hashes API keys; unset: generated once into "
        "`<keys file>.secret` (mode 600); set it in production so the key hashes and their key live apart",
    ),
    "RECSVC_RATE_LIMIT": (
        "rate_limits",
        _rate_limits,
        "requests per key per window by role, e.g. `clerk=300,storefront=100000` (others keep their "
        "default: " + ", ".join(f"{k} {v}" for k, v in DEFAULT_RATE_LIMITS.items()) + "; 0 = unlimited); "
        "`off`: no limits",
    ),
    "RECSVC_RATE_WINDOW_S": (
        "rate_window_s",
        _int_range(1, 86400),
        "length of the rate-limit window in seconds (default 60)",
    ),
    "RECSVC_CORS_ORIGINS": (
        "cors_origins",
        _origins,
        "browser origins allowed to call the API (comma-separated, e.g. `https://shop.example.com`; `*` = any); "
        "default none: same origin only",
    ),
    "RECSVC_CONSENT_DEFAULT": (
        "consent_default",
        _consent,
        "`granted` (default) or `denied`: consent of a customer with no recorded choice",
    ),
    "RECSVC_MAX_PER_CATEGORY": (
        "max_per_category",
        _cap,
        "at most this many items per category (default: no cap)",
    ),
    "RECSVC_REDIS_TIMEOUT_MS": (
        "redis_timeout_ms",
        _int_range(1, 60000),
        "connect and read timeout of each Redis call in ms (default 250)",
    ),
    "RECSVC_MAX_BODY_BYTES": (
        "max_body_bytes",
        _int_range(1024, 1 << 30),
        "largest request body accepted, larger gets 413 (default 1 MiB)",
    ),
    "RECSVC_LOG_LEVEL": ("log_level", _level, "DEBUG, INFO (default), WARNING or ERROR"),
    "RECSVC_EVENT_LOG": (
        "event_log",
        _event_log,
        (
            "memory store: append-only event log, fsynced before each 202 and replayed at start "
            f"(default `{DEFAULT_EVENT_LOG}` in the working folder; `off`: events are not durable)"
        ),
    ),
    "RECSVC_ERASURE_KEY": (
        "erasure_key",
        _secret,
        (
            "secret key (16+ characters) of the keyed hash in erasure tombstones; unset: generated once and "
            "kept in Redis (`<prefix>:erasure-key`) or beside the event log; set it in production"
        ),
    ),
    "RECSVC_RELOAD_POLL_S": (
        "reload_poll_s",
        _seconds,
        "seconds between checks of the served alias; 0 = off (default 5)",
    ),
    "RECSVC_RUNTIME_DIR": (
        "runtime_dir",
        _text,
        "folder shared by one server's workers (set by gunicorn.conf.py)",
    ),
    "RECSVC_EXPERIMENTS_FILE": (
        "experiments_file",
        _text,
        "experiments declared at start (`.json` or `.toml`); created when not stored yet",
    ),
    "RECSVC_EXPERIMENTS_POLL_S": (
        "experiments_poll_s",
        _check_interval,
        "seconds between checks for experiments created, changed or stopped elsewhere; 0 = every request "
        "(default 1)",
    ),
    "RECSVC_ANN_MIN_ITEMS": (
        "ann_min_items",
        _int_range(1, 10**9),
        "catalogue size from which a model's approximate (HNSW) index is used instead of exact scoring; "
        "default: the model's own `scoring.ann.min_items` (200,000 unless training said otherwise)",
    ),
}

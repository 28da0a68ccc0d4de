"""Service configuration: one frozen value read from `RECSVC_*` environment variables.

Every variable, its default and what it does (the README's table is generated from `VARIABLES`):
a bad value stops the service at start with one line naming the variable and what it accepts.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace

from recsvc.errors import RecsvcError

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class ConfigError(RecsvcError):
    """A `RECSVC_*` variable holds a value the service cannot use."""

    code = "config_error"


@dataclass(frozen=True)
class Config:
    """What the service needs to start. Build it with `Config.from_env()` or directly in tests."""

    models_dir: str = "models"
    model: str = "champion"  # model id, alias or path served at start
    store_url: str = "memory://"
    auth: bool = False  # API keys arrive with the security issue; until then `on` only warns
    keys_file: str | None = None
    consent_default: bool = True  # consent of a customer with no recorded choice
    max_per_category: int | None = None  # diversity cap per list; None = no cap
    redis_timeout_ms: int = 250  # connect and read timeout of every Redis call
    max_body_bytes: int = 1 << 20
    log_level: str = "INFO"
    event_log: str | None = None  # embedded append-only event log (real-time issue)
    reload_poll_s: float = 5.0  # how often a worker re-reads the alias it serves; 0 = never
    runtime_dir: str | None = None  # shared by the workers of one gunicorn (reload follow-up)

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
        cfg = cls(**values)
        return replace(cfg, **{k: v for k, v in overrides.items() if v is not None}) if overrides else cfg

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


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
    "RECSVC_AUTH": ("auth", _switch, "`on` or `off`: API keys (not implemented yet; `off` warns at start)"),
    "RECSVC_KEYS_FILE": ("keys_file", _text, "hashed API keys written by `recsvc keys create`"),
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
    "RECSVC_EVENT_LOG": ("event_log", _text, "path of the embedded append-only event log"),
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
}

"""Structured logs: one JSON object per line on stderr, for the service and (via gunicorn.conf.py)
gunicorn itself. Request lines carry request_id, endpoint, channel, status, latency and strategy;
never raw identifiers (emails, phones, cards): only the internal customer id, when the caller gave it.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time

import orjson

# attributes every LogRecord has; anything else passed with `extra=` goes into the JSON object
_STANDARD = set(vars(logging.LogRecord("x", 0, "x", 0, "x", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        d = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for k, v in record.__dict__.items():
            if k not in _STANDARD and not k.startswith("_"):
                d[k] = v
        if record.exc_info:
            d["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(d, default=str).decode()


class RedactIdentifiers(logging.Filter):
    """For gunicorn's own lines (its DEBUG log names each request's path): the one path that carries an
    identifier value, DELETE /v1/customers/{id}/identifiers/{type}/{value}, is logged with the value
    masked."""

    PATH = re.compile(r"(/identifiers/[^/?\s\"]+/)[^?\s\"]+")

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        if "/identifiers/" in msg:
            record.msg, record.args = self.PATH.sub(r"\1***", msg), ()
        return True


def configure(level: str = "INFO", stream=None) -> None:
    """Send the `recsvc` loggers to `stream` (stderr) as JSON lines. Idempotent: one handler only."""
    root = logging.getLogger("recsvc")
    root.setLevel(level)
    root.propagate = False
    for h in list(root.handlers):
        if getattr(h, "_recsvc", False):
            root.removeHandler(h)
    h = logging.StreamHandler(stream or sys.stderr)
    h._recsvc = True  # type: ignore[attr-defined]
    h.setFormatter(JsonFormatter())
    root.addHandler(h)


def gunicorn_logconfig(level: str = "INFO") -> dict:
    """logging.config dict for gunicorn's error and access logs in the same JSON shape."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "recsvc.logging.JsonFormatter"}},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
        },
        "loggers": {
            "gunicorn.error": {"handlers": ["stderr"], "level": level, "propagate": False},
            "gunicorn.access": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        },
    }


class AccessLog:
    """One JSON line per request, written with one os.write: below PIPE_BUF that is atomic, so lines
    of several workers never interleave, and it skips logging's record machinery (about 3 us a line
    instead of 30 on the request path). Same shape as the other lines (ts, level, logger, msg)."""

    def __init__(self, enabled: bool = True, fd: int = 2):
        self.enabled = enabled
        self.fd = fd

    def write(self, msg: str, fields: dict) -> None:
        if not self.enabled:
            return
        line = orjson.dumps(
            {"ts": round(time.time(), 3), "level": "INFO", "logger": "recsvc.access", "msg": msg, **fields},
            default=str,
        )
        try:
            os.write(self.fd, line + b"\n")
        except OSError:  # a closed stderr must not fail the request
            self.enabled = False

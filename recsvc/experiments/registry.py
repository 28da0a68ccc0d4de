"""The experiments the service knows: declared in a file (RECSVC_EXPERIMENTS_FILE, JSON or TOML) and/or
through the admin endpoints, persisted in the backend (Redis: shared by every worker and instance).

Workers cache the definitions and re-read them when the backend's version counter moved, checking it at
most every `poll_s` seconds (0: on every request), so a stop reaches every instance within `poll_s`.
A file's experiments are created when absent; one already stored keeps its stored state (a stop or a
share change made through the API is not undone by a restart), and a file entry that differs from it
is logged, not applied.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import tomllib
from collections.abc import Callable

from recsvc.errors import StoreUnavailable
from recsvc.experiments.backend import ExperimentBackend
from recsvc.experiments.definition import (
    Experiment,
    ExperimentConflict,
    ExperimentError,
    InvalidExperiment,
    UnknownExperiment,
    parse_experiment,
    stopped,
    with_changes,
)

log = logging.getLogger("recsvc.experiments")
SERVICE_FIELDS = ("created_at", "share_history", "start", "status", "stopped_at")  # not compared with the file


class ExperimentsFileError(ExperimentError):
    code = "experiments_file_error"
    status = 500


def read_experiments_file(path: str, now: float | None = None) -> list[Experiment]:
    """`{"experiments": [...]}` in JSON, or `[[experiments]]` tables in TOML (by extension)."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ExperimentsFileError(f"RECSVC_EXPERIMENTS_FILE={path}: cannot read it ({e.strerror})") from None
    try:
        doc = tomllib.loads(raw.decode("utf-8")) if path.endswith(".toml") else json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        kind = "TOML" if path.endswith(".toml") else "JSON"
        raise ExperimentsFileError(f"{path}: not valid {kind} ({e})") from None
    entries = doc.get("experiments") if isinstance(doc, dict) else doc
    if not isinstance(entries, list):
        raise ExperimentsFileError(f"{path}: expected a list under `experiments`")
    out, ids = [], set()
    for k, entry in enumerate(entries):
        exp = parse_experiment(entry, source=f"{os.path.basename(path)} experiments[{k}]", now=now)
        if exp.experiment_id in ids:
            raise ExperimentsFileError(f"{path}: experiment {exp.experiment_id!r} is declared twice")
        ids.add(exp.experiment_id)
        out.append(exp)
    return out


class ExperimentRegistry:
    def __init__(self, backend: ExperimentBackend, poll_s: float = 1.0,
                 clock: Callable[[], float] = time.time,
                 on_change: Callable[[tuple[Experiment, ...]], None] | None = None):
        self.backend = backend
        self.poll_s = poll_s
        self.clock = clock
        self._on_change = on_change
        self._cache: tuple[Experiment, ...] = ()
        self._version = -1
        self._next_check = 0.0
        self._lock = threading.Lock()

    # -- the request path
    def current(self) -> tuple[Experiment, ...]:
        """Every known experiment (cached; re-read when the version moved, checked every poll_s).
        Backend trouble keeps the cached list (a poll failure is retried next interval)."""
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + self.poll_s
            try:
                self.refresh()
            except StoreUnavailable as e:
                log.warning("experiments not refreshed (%s); using the cached definitions", e.message)
        return self._cache

    def running(self, now: float) -> tuple[Experiment, ...]:
        """Experiments running now, oldest start first (a request takes the first it is eligible for)."""
        return tuple(e for e in self.current() if e.is_active(now))

    def refresh(self, force: bool = False) -> None:
        version = self.backend.version()
        if version == self._version and not force:
            return
        with self._lock:
            defs = self.backend.definitions()
            exps = []
            for eid, d in defs.items():
                try:
                    exps.append(parse_experiment(d, source=f"stored experiment {eid}"))
                except InvalidExperiment as e:
                    log.error("stored experiment %s ignored: %s", eid, e.message)
            self._cache = tuple(sorted(exps, key=lambda e: (e.start, e.experiment_id)))
            self._version = version
        if self._on_change is not None:
            self._on_change(self._cache)

    # -- administration (always reads the backend, never the cache)
    def list(self) -> list[Experiment]:
        self.refresh()
        return list(self._cache)

    def get(self, experiment_id: str) -> Experiment:
        d = self.backend.definitions().get(experiment_id)
        if d is None:
            raise UnknownExperiment(f"no experiment {experiment_id!r}; GET /v1/experiments lists them")
        return parse_experiment(d, source=f"stored experiment {experiment_id}")

    def create(self, exp: Experiment) -> Experiment:
        if not self.backend.put_definition(exp.as_dict(), only_if_new=True):
            raise ExperimentConflict(
                f"experiment {exp.experiment_id!r} exists; PUT /v1/experiments/{exp.experiment_id} changes "
                f"its shares or end, or choose another id")
        self.refresh(force=True)
        return exp

    def update(self, experiment_id: str, changes: dict) -> Experiment:
        exp = self.get(experiment_id)
        if exp.status == "stopped":
            raise ExperimentConflict(f"experiment {experiment_id!r} is stopped; start a new one")
        new = with_changes(exp, changes, self.clock())
        self.backend.put_definition(new.as_dict())
        self.refresh(force=True)
        return new

    def stop(self, experiment_id: str) -> Experiment:
        exp = self.get(experiment_id)
        if exp.status == "stopped":
            return exp
        new = stopped(exp, self.clock())
        self.backend.put_definition(new.as_dict())
        self.refresh(force=True)
        return new

    def load_file(self, path: str) -> list[Experiment]:
        """Create the file's experiments that the backend does not hold yet."""
        exps = read_experiments_file(path, now=self.clock())
        stored = self.backend.definitions()
        for exp in exps:
            if exp.experiment_id not in stored:
                self.backend.put_definition(exp.as_dict(), only_if_new=True)
                log.info("experiment %s created from %s", exp.experiment_id, path)
                continue
            have = parse_experiment(stored[exp.experiment_id])
            declared = {k: v for k, v in exp.as_dict().items() if k not in SERVICE_FIELDS}
            kept = {k: v for k, v in have.as_dict().items() if k not in SERVICE_FIELDS}
            if declared != kept:
                log.warning("experiment %s in %s differs from the stored one; the stored one is kept "
                            "(change it with PUT /v1/experiments/%s)", exp.experiment_id, path, exp.experiment_id)
        self.refresh(force=True)
        return exps

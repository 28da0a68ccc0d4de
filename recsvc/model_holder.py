"""The model a worker serves, and how it changes without a failed or mixed request.

A request reads `holder.model` once and uses that object to the end, so a swap never mixes two
models in one answer. A new model is resolved, checksummed, memory-mapped and ranked once (a warm-up
that fails on a broken artifact and fills the per-model caches) BEFORE the reference is swapped;
a refused model leaves the previous one serving and its reason in `last_error` (shown by /readyz).

Two ways a worker changes model, both on request boundaries (no threads):
- `POST /v1/models/reload` (optional `{"model": ...}`) reloads in the worker that got the request and
  writes the chosen ref to `<runtime_dir>/served-model`, which the other workers of the same gunicorn
  follow at their next poll;
- every `poll_s` seconds a worker re-reads the alias it serves (and that file), so a `champion`
  moved by `recsvc-train models promote` reaches every worker and every instance.

Workers of one gunicorn share three small files in `runtime_dir` besides `served-model`:
- `refused-models` (JSON, ref + target -> reason): a refusal is decided, and logged, by one worker;
  its siblings adopt it without loading the model again, and /readyz of every worker says why;
- `last-good-model`: the folder last served; a worker that starts (or is respawned after a crash)
  while its alias points at a broken model serves that one instead of nothing;
- `.model.lock` (fcntl): one worker loads at a time, so the refusal is checked and logged once.

Experiment variants may serve other models (`challenger`, a model id): `keep(refs)` loads each once
(verified, memory-mapped, warmed up like the champion) beside the served one, a ref that designates
the served model shares it, and the same poll follows their aliases with the same refuse-and-keep rule.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import tempfile
import threading
import time
from contextlib import contextmanager

from recsvc.artifact.read import LoadedModel, load_model
from recsvc.artifact.registry import Registry
from recsvc.core import Context, CustomerState, RankOptions
from recsvc.core.ranking import rank
from recsvc.errors import ArtifactError, RegistryError

log = logging.getLogger("recsvc.model")

OVERRIDE_FILE = "served-model"
REFUSED_FILE = "refused-models"
LAST_GOOD_FILE = "last-good-model"
LOCK_FILE = ".model.lock"
MAX_REFUSALS = 16  # refusals remembered in REFUSED_FILE (newest)
MAX_EXTRA_MODELS = 4  # models kept beside the served one for experiment variants
SERVED = None  # marker in `_extra`: the ref designates the served model
BROKEN_MODEL = (ValueError, IndexError, KeyError, TypeError, ArithmeticError, AttributeError)


def warm_up(model: LoadedModel) -> None:
    """Rank once anonymously and once for a known customer: a model whose arrays do not fit together
    fails here, not on a customer's request; the per-model caches are filled before the swap."""
    try:
        rank(model, CustomerState(), Context(channel="web"), RankOptions(n=10))
        if model.n_customers:
            cid = str(model.customer_ids[0])
            rank(model, CustomerState(customer_id=cid), Context(channel="store"), RankOptions(n=10))
        if model.kind == "factors":
            _ = model.gramian
        _ = model.in_stock_anywhere
    except BROKEN_MODEL as e:
        raise ArtifactError(f"{model.model_id}: ranking with it fails ({type(e).__name__}: {e})") from e


def _refusal_key(ref: str, target: str) -> str:
    return f"{ref}\n{target}"


class ModelHolder:
    def __init__(
        self, models_dir: str, ref: str, poll_s: float = 5.0, runtime_dir: str | None = None, on_swap=None,
        ann_min_items: int | None = None,
    ):
        self.registry = Registry(models_dir)
        self.configured_ref = ref
        self.poll_s = poll_s
        self.runtime_dir = runtime_dir
        self.model: LoadedModel | None = None
        self.ref: str = ref  # the ref the served model came from
        self.target: str | None = None  # what that ref pointed at when loaded (model id or path)
        self.loaded_at: float | None = None
        self.last_error: str | None = None
        self._failed: tuple[str, str] | None = None  # (ref, target) refused last: not retried until it moves
        self._next_poll = 0.0
        self._lock = threading.Lock()
        self._on_swap = on_swap
        self.ann_min_items = ann_min_items  # overrides the models' scoring.ann.min_items (None: keep it)
        self._extra: dict[str, tuple[str, LoadedModel | None]] = {}  # ref -> (target, model or SERVED)

    # -- loading
    def _target_of(self, ref: str) -> str:
        """What `ref` designates now (an alias's content, else the ref itself): cheap, no listing."""
        try:
            return self.registry.alias(ref) or ref
        except (OSError, ValueError):
            return ref

    def load(self, ref: str) -> LoadedModel:
        """Resolve, verify and warm up a model without serving it. ArtifactError/RegistryError if unfit."""
        try:
            path = self.registry.resolve(ref)
        except (OSError, ValueError) as e:
            raise RegistryError(f"model {ref!r}: {e}") from None
        model = self._load_model(path)
        warm_up(model)
        return model

    def _load_model(self, path: str) -> LoadedModel:
        model = load_model(path, verify=True)
        model.ann_min_items = self.ann_min_items
        return model

    def start(self) -> None:
        """Load the configured model; a failure is logged and kept for /readyz, not raised. A worker
        of a running server falls back on the model its siblings served last (`last-good-model`)."""
        ref = self._desired_ref()
        try:
            self.swap_to(ref, share=False, adopt=True)
        except (ArtifactError, RegistryError):
            self._serve_last_good(ref)

    def swap_to(
        self, ref: str, share: bool = True, wait: bool = True, adopt: bool = False
    ) -> tuple[str | None, str, bool] | None:
        """Load `ref` fully, then swap. Returns (previous id, new id, changed); None when wait=False and
        another thread or worker is already loading. share: tell sibling workers to follow. adopt: take
        a sibling's refusal of the same ref and target as this worker's, without loading it again.
        A refusal raises ArtifactError/RegistryError after one log line (ref, model, reason)."""
        if not self._lock.acquire(blocking=wait):
            return None
        try:
            with self._workers_lock(wait) as got:
                if not got:
                    return None
                target = self._target_of(ref)
                old = self.model
                if old is not None and ref == self.ref and target == self.target:
                    if share:
                        self._write_override(ref)
                    return old.model_id, old.model_id, False
                known = self._refusals().get(_refusal_key(ref, target)) if adopt else None
                if known is not None:
                    self._failed = (ref, target)
                    self.last_error = known["error"]
                    raise ArtifactError(known["error"])
                try:
                    model = self.load(ref)
                except (ArtifactError, RegistryError) as e:
                    self._refused(ref, target, e)
                    raise
                self.model, self.ref, self.target = model, ref, target
                self.loaded_at = time.time()
                self.last_error = None
                self._failed = None
                self._loaded_fine(ref, target, model)
                if share:
                    self._write_override(ref)
        finally:
            self._lock.release()
        old_id = old.model_id if old is not None else None
        if self._on_swap is not None:
            self._on_swap(old_id, model.model_id)
        log.info(
            "serving model %s (from %s)",
            model.model_id,
            ref,
            extra={"model_id": model.model_id, "previous_model_id": old_id},
        )
        return old_id, model.model_id, old_id != model.model_id

    def _refused(self, ref: str, target: str, e: ArtifactError | RegistryError) -> None:
        """Keep the reason (this worker's /readyz, and its siblings' through REFUSED_FILE) and log it once."""
        self._failed = (ref, target)
        self.last_error = f"{ref}: {e.message}"
        serving = self.model.model_id if self.model is not None else None
        log.error(
            "model %s refused, %s: %s",
            ref if target == ref else f"{ref} -> {target}",
            f"still serving {serving}" if serving else "no model served yet (not ready)",
            e.message,
            extra={"ref": ref, "refused_model": target, "model_id": serving, "reason": e.message},
        )
        if self.runtime_dir:
            refusals = self._refusals()
            refusals.pop(_refusal_key(ref, target), None)
            refusals[_refusal_key(ref, target)] = {"error": self.last_error, "at": time.time()}
            self._write_shared(REFUSED_FILE, json.dumps(dict(list(refusals.items())[-MAX_REFUSALS:])))

    def _loaded_fine(self, ref: str, target: str, model: LoadedModel) -> None:
        if not self.runtime_dir:
            return
        refusals = self._refusals()
        if refusals.pop(_refusal_key(ref, target), None) is not None:  # loaded after all (POST reload)
            self._write_shared(REFUSED_FILE, json.dumps(refusals))
        self._write_shared(LAST_GOOD_FILE, model.path + "\n")

    def _serve_last_good(self, ref: str) -> None:
        """Nothing loaded and `ref` refused: serve the model the siblings served last, if any."""
        if self.model is not None or not self.runtime_dir:
            return
        try:
            with open(os.path.join(self.runtime_dir, LAST_GOOD_FILE), encoding="utf-8") as f:
                path = f.read().strip()
            model = self._load_model(path)
            warm_up(model)
        except FileNotFoundError:
            return
        except (OSError, ArtifactError) as e:
            log.error("the last good model cannot be served either: %s", getattr(e, "message", e))
            return
        with self._lock:
            if self.model is not None:
                return
            # self.ref/target stay those of the refused ref: the poll retries only once it moves
            self.model, self.ref, self.target = model, ref, self._failed[1] if self._failed else ref
            self.loaded_at = time.time()
        if self._on_swap is not None:
            self._on_swap(None, model.model_id)
        log.warning(
            "serving the last good model %s while %s is refused",
            model.model_id,
            ref,
            extra={"model_id": model.model_id, "ref": ref},
        )

    def reload(self, ref: str | None = None) -> tuple[str | None, str, bool]:
        """POST /v1/models/reload: `ref`, or back to the configured one; siblings follow."""
        return self.swap_to(ref or self.configured_ref, share=True)

    # -- following changes made elsewhere
    def poll(self, now: float) -> None:
        """Called on request boundaries; does real work at most once per poll interval."""
        if now < self._next_poll:
            return
        if self.poll_s <= 0:
            if self.model is not None:
                self._next_poll = float("inf")
                return
            self._next_poll = now + 1.0
        else:
            self._next_poll = now + (self.poll_s if self.model is not None else min(self.poll_s, 1.0))
        ref = self._desired_ref()
        target = self._target_of(ref)
        if self.runtime_dir:
            self._see_siblings_refusals()
        moved = self.model is None or ref != self.ref or target != self.target
        if moved and self._failed != (ref, target):
            try:
                if self.swap_to(ref, share=False, wait=False, adopt=True) is None:
                    self._next_poll = now  # a sibling is loading: look again at the next request
            except (ArtifactError, RegistryError):
                pass  # logged once by whichever worker refused it; kept in last_error
        if self._extra:
            self._follow_extras()

    def _see_siblings_refusals(self) -> None:
        """A refusal by a sibling (a POST reload it got) shows in this worker's /readyz too; a refusal
        this worker remembers that a sibling has since loaded fine (and so dropped) is tried again."""
        refusals = self._refusals()
        if self._failed is not None and _refusal_key(*self._failed) not in refusals:
            self._failed = None
        if refusals:
            newest = max(refusals.values(), key=lambda r: r.get("at", 0))
            if newest.get("at", 0) > (self.loaded_at or 0):
                self.last_error = newest["error"]

    def _refusals(self) -> dict:
        if not self.runtime_dir:
            return {}
        try:
            with open(os.path.join(self.runtime_dir, REFUSED_FILE), encoding="utf-8") as f:
                d = json.load(f)
            return d if isinstance(d, dict) else {}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            log.warning("cannot read %s: %s", REFUSED_FILE, e)
            return {}

    @contextmanager
    def _workers_lock(self, wait: bool):
        """Exclusive among the workers sharing runtime_dir (yields False when busy and not waiting)."""
        if not self.runtime_dir:
            yield True
            return
        try:
            fd = os.open(os.path.join(self.runtime_dir, LOCK_FILE), os.O_CREAT | os.O_RDWR, 0o600)
        except OSError as e:
            log.warning("cannot open %s (workers load without coordination): %s", LOCK_FILE, e)
            yield True
            return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)  # releases the flock

    # -- models of experiment variants
    def model_for(self, ref: str | None) -> LoadedModel | None:
        """The model a variant serves: the served one for None, for the served ref or for a ref that
        designates it; else the one `keep` loaded; None when `ref` was never kept or failed to load."""
        served = self.model
        if ref is None or ref == self.ref or served is None:
            return served
        hit = self._extra.get(ref)
        if hit is None:
            return None
        return hit[1] if hit[1] is not SERVED else served

    def keep(self, refs) -> dict[str, str]:
        """Load the models `refs` designate (once; those already kept stay), drop the ones no longer
        asked for. Returns {ref: reason} for refs that cannot be served."""
        wanted = [r for r in dict.fromkeys(refs) if r and r != self.ref]
        errors: dict[str, str] = {}
        if len(wanted) > MAX_EXTRA_MODELS:
            for r in wanted[MAX_EXTRA_MODELS:]:
                errors[r] = f"at most {MAX_EXTRA_MODELS} models besides the served one"
            wanted = wanted[:MAX_EXTRA_MODELS]
        extra = {r: v for r, v in self._extra.items() if r in wanted}
        for r in wanted:
            if r in extra:
                continue
            try:
                extra[r] = self._load_extra(r)
            except (ArtifactError, RegistryError) as e:
                errors[r] = e.message
                log.error("experiment model %s cannot be served: %s", r, e.message)
        self._extra = extra
        return errors

    def _load_extra(self, ref: str) -> tuple[str, LoadedModel | None]:
        target = self._target_of(ref)
        served = self.model
        if served is not None and target in (self.target, served.model_id):
            return target, SERVED
        model = self.load(ref)
        if served is not None and model.model_id == served.model_id:
            return target, SERVED
        log.info("experiment model %s loaded (from %s)", model.model_id, ref, extra={"model_id": model.model_id})
        return target, model

    def _follow_extras(self) -> None:
        """An alias of a kept model moved (or the served model changed): load the new one first; a
        refused one leaves the previous one serving, like the champion."""
        extra = dict(self._extra)
        changed = False
        for ref, (target, model) in self._extra.items():
            now_target = self._target_of(ref)
            shares = model is SERVED
            still_shares = self.model is not None and now_target in (self.target, self.model.model_id)
            if now_target == target and shares == still_shares:
                continue
            try:
                extra[ref] = self._load_extra(ref)
                changed = True
            except (ArtifactError, RegistryError) as e:
                log.error("experiment model %s refused, still serving the previous one: %s", ref, e.message)
        if changed:
            self._extra = extra

    def _desired_ref(self) -> str:
        if self.runtime_dir:
            try:
                with open(os.path.join(self.runtime_dir, OVERRIDE_FILE), encoding="utf-8") as f:
                    ref = f.read().strip()
                if ref:
                    return ref
            except FileNotFoundError:
                pass
            except OSError as e:
                log.warning("cannot read %s: %s", OVERRIDE_FILE, e)
        return self.configured_ref

    def _write_shared(self, name: str, text: str) -> None:
        """Replace runtime_dir/name atomically (readers see the old or the new content, never a part)."""
        try:
            fd, tmp = tempfile.mkstemp(dir=self.runtime_dir, prefix=".shared-")
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, os.path.join(self.runtime_dir, name))
        except OSError as e:
            log.warning("cannot write %s (sibling workers will not see it): %s", name, e)

    def _write_override(self, ref: str) -> None:
        if not self.runtime_dir:
            return
        path = os.path.join(self.runtime_dir, OVERRIDE_FILE)
        try:
            if ref == self.configured_ref:
                if os.path.exists(path):
                    os.unlink(path)
                return
            fd, tmp = tempfile.mkstemp(dir=self.runtime_dir, prefix=".served-")
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(ref + "\n")
            os.replace(tmp, path)
        except OSError as e:
            log.warning("other workers will not follow the reload (cannot write %s: %s)", path, e)

    # -- views
    def summary(self) -> dict:
        m = self.model
        if m is None:
            return {}
        man = m.manifest
        return {
            "model_id": m.model_id,
            "learner": man.learner,
            "created_at": man.created_at,
            "format_version": man.format_version,
            "scoring": man.scoring.get("kind"),
            "params": man.params,
            "seed": man.seed,
            "data": man.data,
            "metrics": man.metrics,
            "libraries": man.libraries,
            "items": m.n_items,
            "customers": m.n_customers,
            "ref": self.ref,
            "path": m.path,
            "loaded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.loaded_at or 0)),
        }

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
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time

from recsvc.artifact.read import LoadedModel, load_model
from recsvc.artifact.registry import Registry
from recsvc.core import Context, CustomerState, RankOptions
from recsvc.core.ranking import rank
from recsvc.errors import ArtifactError, RegistryError

log = logging.getLogger("recsvc.model")

OVERRIDE_FILE = "served-model"
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


class ModelHolder:
    def __init__(
        self, models_dir: str, ref: str, poll_s: float = 5.0, runtime_dir: str | None = None, on_swap=None
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
        model = load_model(path, verify=True)
        warm_up(model)
        return model

    def start(self) -> None:
        """Load the configured model; a failure is logged and kept for /readyz, not raised."""
        try:
            self.swap_to(self._desired_ref(), share=False)
        except (ArtifactError, RegistryError) as e:
            self.last_error = e.message
            log.error("no model served yet: %s", e.message)

    def swap_to(self, ref: str, share: bool = True, wait: bool = True) -> tuple[str | None, str, bool] | None:
        """Load `ref` fully, then swap. Returns (previous id, new id, changed); None when wait=False and
        another thread is already loading. share: tell sibling workers to follow."""
        if not self._lock.acquire(blocking=wait):
            return None
        try:
            target = self._target_of(ref)
            old = self.model
            if old is not None and ref == self.ref and target == self.target:
                if share:
                    self._write_override(ref)
                return old.model_id, old.model_id, False
            try:
                model = self.load(ref)
            except (ArtifactError, RegistryError) as e:
                self._failed = (ref, target)
                self.last_error = f"{ref}: {e.message}"
                raise
            self.model, self.ref, self.target = model, ref, target
            self.loaded_at = time.time()
            self.last_error = None
            self._failed = None
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
        if self.model is not None and ref == self.ref and target == self.target:
            return
        if self._failed == (ref, target):
            return
        try:
            self.swap_to(ref, share=False, wait=False)
        except (ArtifactError, RegistryError) as e:
            log.error(
                "model %s refused, still serving %s: %s",
                ref,
                self.model.model_id if self.model else "nothing",
                e.message,
            )

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

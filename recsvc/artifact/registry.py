"""The model registry: model folders plus alias files replaced atomically (os.replace).

`aliases/<name>` holds one model id; `aliases/<name>.history` keeps the ids it pointed to before,
newest last, so `rollback` can step back without guessing.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Any

from recsvc.artifact.manifest import MANIFEST, Manifest
from recsvc.artifact.write import TMP_PREFIX
from recsvc.errors import ArtifactError, PromotionRefused, RegistryError  # noqa: F401 (re-exported)

ALIASES = "aliases"
CHAMPION = "champion"


def _atomic_write(path: str, text: str) -> None:
    d = os.path.dirname(path)
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".alias-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


@dataclass
class Registry:
    models_dir: str

    def alias_path(self, name: str) -> str:
        return os.path.join(self.models_dir, ALIASES, name)

    def model_ids(self) -> list[str]:
        if not os.path.isdir(self.models_dir):
            return []
        out = []
        for n in os.listdir(self.models_dir):
            if n.startswith((TMP_PREFIX, ".")) or n == ALIASES:
                continue
            if os.path.isfile(os.path.join(self.models_dir, n, MANIFEST)):
                out.append(n)
        return sorted(out)

    def aliases(self) -> dict[str, str]:
        d = os.path.join(self.models_dir, ALIASES)
        if not os.path.isdir(d):
            return {}
        out = {}
        for n in sorted(os.listdir(d)):
            if n.startswith(".") or n.endswith(".history"):
                continue
            with open(os.path.join(d, n), encoding="utf-8") as f:
                out[n] = f.read().strip()
        return out

    def alias(self, name: str) -> str | None:
        try:
            with open(self.alias_path(name), encoding="utf-8") as f:
                return f.read().strip() or None
        except FileNotFoundError:
            return None

    def resolve(self, ref: str) -> str:
        """A model id, an alias or a path -> the model folder. RegistryError if none fits."""
        if not ref:
            raise RegistryError("no model given")
        if os.path.isfile(os.path.join(ref, MANIFEST)) and (os.sep in ref or ref.startswith(".")):
            return os.path.abspath(ref)
        if ref in self.model_ids():
            return os.path.join(self.models_dir, ref)
        target = self.alias(ref)
        if target:
            p = os.path.join(self.models_dir, target)
            if not os.path.isfile(os.path.join(p, MANIFEST)):
                raise RegistryError(f"alias {ref!r} points to {target}, which is not in {self.models_dir}")
            return p
        if os.path.isfile(os.path.join(ref, MANIFEST)):
            return os.path.abspath(ref)
        raise RegistryError(f"no model or alias {ref!r} in {self.models_dir} (see `recsvc-train models list`)")

    def manifest(self, ref: str) -> Manifest:
        return Manifest.read(self.resolve(ref))

    def set_alias(self, name: str, model_id: str) -> str | None:
        """Point `name` at model_id; returns the id it pointed to before (kept in its history)."""
        if model_id not in self.model_ids():
            raise RegistryError(f"no model {model_id!r} in {self.models_dir}")
        before = self.alias(name)
        if before and before != model_id:
            hist = self.alias_path(name) + ".history"
            with open(hist, "a", encoding="utf-8") as f:
                f.write(before + "\n")
                f.flush()
                os.fsync(f.fileno())
        _atomic_write(self.alias_path(name), model_id + "\n")
        return before

    def promote(self, ref: str, metric: str = "ndcg", tolerance: float = 0.02, force: bool = False,
                alias: str = CHAMPION) -> dict[str, Any]:
        """Make `ref` the champion unless it is worse than the current one beyond `tolerance`
        (relative) overall or on any channel both models were evaluated on."""
        cand = Manifest.read(self.resolve(ref))
        current_id = self.alias(alias)
        verdict = {"model_id": cand.model_id, "previous": current_id, "regressions": []}
        if current_id and current_id != cand.model_id and current_id in self.model_ids():
            cur = Manifest.read(os.path.join(self.models_dir, current_id))
            verdict["regressions"] = compare_metrics(cur.metrics, cand.metrics, metric, tolerance)
            if verdict["regressions"] and not force:
                worst = "; ".join(r["where"] + f" {r['champion']:.4f} -> {r['candidate']:.4f}"
                                  for r in verdict["regressions"])
                raise PromotionRefused(
                    f"{cand.model_id} is worse than champion {current_id} on {metric}@k beyond "
                    f"{tolerance:.0%}: {worst} (use --force to promote anyway)",
                    details=verdict["regressions"])
        self.set_alias(alias, cand.model_id)
        return verdict

    def rollback(self, alias: str = CHAMPION) -> tuple[str, str]:
        """Point the alias back at the model it held before. Returns (from, to)."""
        hist = self.alias_path(alias) + ".history"
        try:
            with open(hist, encoding="utf-8") as f:
                past = [x.strip() for x in f if x.strip()]
        except FileNotFoundError:
            past = []
        current = self.alias(alias)
        while past and (past[-1] == current or past[-1] not in self.model_ids()):
            past.pop()
        if not past:
            raise RegistryError(f"nothing to roll back to: {alias} has no earlier model")
        target = past.pop()
        _atomic_write(self.alias_path(alias), target + "\n")
        _atomic_write(hist, "".join(p + "\n" for p in past))
        return current or "", target

    def clean_temp(self) -> None:
        """Remove folders left by publishes that were killed half-way."""
        if os.path.isdir(self.models_dir):
            for n in os.listdir(self.models_dir):
                if n.startswith(TMP_PREFIX):
                    pid = n.rsplit("-", 1)[-1]
                    if pid.isdigit() and _pid_alive(int(pid)):
                        continue
                    shutil.rmtree(os.path.join(self.models_dir, n), ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def _metric(block: dict, metric: str) -> float | None:
    if not isinstance(block, dict):
        return None
    for k, v in block.items():
        if (k == metric or k.split("@")[0] == metric) and isinstance(v, (int, float)):
            return float(v)
    return None


def compare_metrics(champion: dict, candidate: dict, metric: str, tolerance: float) -> list[dict]:
    """Regressions of candidate vs champion, overall and per channel (relative tolerance)."""
    out = []
    pairs = [("overall", champion.get("overall"), candidate.get("overall"))]
    for ch, block in (champion.get("per_channel") or {}).items():
        pairs.append((f"channel {ch}", block, (candidate.get("per_channel") or {}).get(ch)))
    for where, a, b in pairs:
        va, vb = _metric(a or {}, metric), _metric(b or {}, metric)
        if va is None or vb is None:
            continue
        if vb < va * (1 - tolerance) - 1e-12:
            out.append({"where": where, "field": where, "reason": f"{metric} regressed",
                        "champion": va, "candidate": vb})
    return out


def diff_manifests(a: Manifest, b: Manifest) -> dict[str, Any]:
    """What differs between two models: params, data and metrics (flattened)."""
    def flat(d: Any, pre: str = "") -> dict[str, Any]:
        if isinstance(d, dict):
            out: dict[str, Any] = {}
            for k, v in d.items():
                out.update(flat(v, f"{pre}.{k}" if pre else str(k)))
            return out
        return {pre: d}

    out = {}
    for section in ("learner", "params", "data", "metrics", "libraries"):
        fa, fb = flat(getattr(a, section)), flat(getattr(b, section))
        for k in sorted(set(fa) | set(fb)):
            if fa.get(k) != fb.get(k):
                out[f"{section}.{k}" if k else section] = [fa.get(k), fb.get(k)]
    return json.loads(json.dumps(out, default=str))

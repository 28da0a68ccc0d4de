"""Publish a model folder atomically: write aside, checksum, manifest last, verify, rename."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from typing import Any

import numpy as np

from recsvc.artifact.manifest import FLAT_ON_DISK, MANIFEST, OPTIONAL_ARRAYS, REQUIRED_ARRAYS, Manifest
from recsvc.errors import ArtifactError

TMP_PREFIX = ".tmp-"


def sha256_file(path: str, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                return h.hexdigest()
            h.update(b)


def _check_arrays(arrays: dict[str, np.ndarray], kind: str) -> None:
    missing = [n for n in REQUIRED_ARRAYS if n not in arrays]
    if missing:
        raise ArtifactError(f"model arrays missing: {', '.join(missing)}")
    need = {"factors": ("item_factors", "customer_factors"), "neighbours": ("neighbours", "neighbour_scores")}
    missing = [n for n in need.get(kind, ()) if n not in arrays]
    if missing:
        raise ArtifactError(f"scoring kind {kind!r} needs arrays {', '.join(missing)}")
    spec = {**REQUIRED_ARRAYS, **OPTIONAL_ARRAYS}
    for name, a in arrays.items():
        if name not in spec:
            raise ArtifactError(f"unknown model array {name!r}")
        kinds, ndim = spec[name]
        if a.dtype.kind not in kinds or a.ndim != ndim or a.dtype == object:
            raise ArtifactError(f"array {name}: dtype {a.dtype} ndim {a.ndim}, want kind {kinds} ndim {ndim}")
        if a.dtype.kind == "f" and not np.isfinite(a).all() and name not in ("item_price",):
            raise ArtifactError(f"array {name} holds NaN or infinity: the learner diverged")
    for ids in ("item_ids", "customer_ids", "store_ids"):
        a = arrays[ids]
        if len(a) > 1 and not bool(np.all(a[1:] > a[:-1])):
            raise ArtifactError(f"{ids} must be sorted and unique (serving looks ids up by bisection)")
    n_items, n_cust = len(arrays["item_ids"]), len(arrays["customer_ids"])
    for name in ("item_title", "item_category", "item_price", "item_valid_from", "item_valid_to",
                 "item_locales", "item_channels", "pop_global", "item_factors", "item_bias",
                 "neighbours", "neighbour_scores"):
        if name in arrays and arrays[name].shape[0] != n_items:
            raise ArtifactError(f"array {name} has {arrays[name].shape[0]} rows for {n_items} items")
    for name in ("customer_factors", "customer_segment"):
        if name in arrays and arrays[name].shape[0] != n_cust:
            raise ArtifactError(f"array {name} has {arrays[name].shape[0]} rows for {n_cust} customers")
    if len(arrays["hist_indptr"]) != n_cust + 1:
        raise ArtifactError("hist_indptr must have one entry per customer plus one")


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def library_versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0], "numpy": np.__version__}
    for mod in ("scipy", "implicit", "lightfm", "pandas", "pyarrow", "recsvc"):
        m = sys.modules.get(mod)
        v = getattr(m, "__version__", None) if m else None
        if v:
            out[mod] = str(v)
    return out


def write_model(models_dir: str, manifest: Manifest, arrays: dict[str, np.ndarray],
                extra_files: dict[str, Any] | None = None) -> str:
    """Write the model under models_dir/<model_id>/ and return that path.

    Arrays go to a hidden temp folder first; the manifest (with every file's sha256) is written last
    and the folder is renamed into place only once it loads back cleanly. A crash at any point
    leaves the registry as it was (a stale temp folder is ignored and cleaned on the next publish).
    `extra_files` are small JSON documents (e.g. the evaluation report) listed and checksummed too.
    """
    _check_arrays(arrays, manifest.scoring.get("kind", ""))
    os.makedirs(models_dir, exist_ok=True)
    final = os.path.join(models_dir, manifest.model_id)
    if os.path.exists(final):
        raise ArtifactError(f"model {manifest.model_id} already exists in {models_dir}: model ids are immutable")
    tmp = os.path.join(models_dir, f"{TMP_PREFIX}{manifest.model_id}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        files: dict[str, str] = {}
        for name, a in sorted(arrays.items()):
            fn = f"{name}.npy"
            path = os.path.join(tmp, fn)
            with open(path, "wb") as f:
                a = np.ascontiguousarray(a)
                np.save(f, a.reshape(-1) if name in FLAT_ON_DISK else a, allow_pickle=False)
                f.flush()
                os.fsync(f.fileno())
            files[fn] = sha256_file(path)
        for fn, doc in sorted((extra_files or {}).items()):
            path = os.path.join(tmp, fn)
            with open(path, "w", encoding="utf-8") as f:
                json.dump(doc, f, indent=2, sort_keys=True, default=str)
                f.flush()
                os.fsync(f.fileno())
            files[fn] = sha256_file(path)
        manifest.files = files
        if not manifest.libraries:
            manifest.libraries = library_versions()
        mpath = os.path.join(tmp, MANIFEST)
        with open(mpath, "w", encoding="utf-8") as f:
            json.dump(manifest.to_json(), f, indent=2, sort_keys=True, default=str)
            f.flush()
            os.fsync(f.fileno())
        _fsync_dir(tmp)
        from recsvc.artifact.read import load_model

        load_model(tmp)  # verify checksums and shapes before anyone can see it
        os.rename(tmp, final)
        _fsync_dir(models_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final

"""Load a model folder: verify it, then memory-map every array so workers share the pages."""

from __future__ import annotations

import os
from functools import cached_property

import numpy as np

from recsvc.artifact.manifest import CHANNELS, FLAT_ON_DISK, OPTIONAL_ARRAYS, REQUIRED_ARRAYS, Manifest
from recsvc.errors import ArtifactError


def _lookup(sorted_ids: np.ndarray, key: str) -> int:
    """Row of `key` in a sorted id array, or -1: bisection over the mmapped array, no dict per worker."""
    n = sorted_ids.shape[0]
    if n == 0 or not isinstance(key, str) or len(key) > sorted_ids.dtype.itemsize // 4:
        return -1
    i = int(np.searchsorted(sorted_ids, key))
    if i < n and sorted_ids[i] == key:
        return i
    return -1


class LoadedModel:
    """A verified, memory-mapped model. Read-only; one instance is shared by all requests of a worker."""

    def __init__(self, path: str, manifest: Manifest, arrays: dict[str, np.ndarray]):
        self.path = path
        self.manifest = manifest
        self.model_id = manifest.model_id
        # plain ndarray views over the mmapped buffers: same shared pages, no per-index memmap overhead
        arrays = {k: np.asarray(v) for k, v in arrays.items()}
        self.arrays = arrays
        for name in (*REQUIRED_ARRAYS, *OPTIONAL_ARRAYS):
            setattr(self, name, arrays.get(name))
        self.kind: str = manifest.scoring["kind"]
        self.n_items = int(self.item_ids.shape[0])
        self.n_customers = int(self.customer_ids.shape[0])
        self.channel_index = {c: k for k, c in enumerate(CHANNELS)}
        self.cache: dict = {}  # derived masks the core keeps per model (dies with the model on reload)
        # catalogue size from which the approximate index is used (None: the manifest's scoring.ann)
        self.ann_min_items: int | None = None

    # -- id maps (external string ids <-> artifact rows, never exposed outside the core)
    def item_index(self, item_id: str) -> int:
        return _lookup(self.item_ids, item_id)

    def customer_index(self, customer_id: str) -> int:
        return _lookup(self.customer_ids, customer_id)

    def store_index(self, store_id: str) -> int:
        return _lookup(self.store_ids, store_id)

    def locale_index(self, locale: str) -> int:
        return self._name_index("locale_names", locale)

    def category_index(self, category: str) -> int:
        return self._name_index("category_names", category)

    def segment_index(self, segment: str) -> int:
        return self._name_index("segment_names", segment)

    def _name_index(self, array: str, name: str | None) -> int:
        if not name:
            return -1
        return self._name_maps[array].get(name, -1)

    @cached_property
    def _name_maps(self) -> dict[str, dict[str, int]]:
        return {a: {str(v): k for k, v in enumerate(getattr(self, a))}
                for a in ("locale_names", "category_names", "segment_names")}

    def history(self, customer_idx: int) -> tuple[np.ndarray, np.ndarray]:
        """(item rows, flag bits) of the customer's training history."""
        if customer_idx < 0:
            return np.empty(0, np.int32), np.empty(0, np.uint8)
        a, b = int(self.hist_indptr[customer_idx]), int(self.hist_indptr[customer_idx + 1])
        return self.hist_items[a:b], self.hist_flags[a:b]

    def stock_of(self, store_idx: int) -> tuple[np.ndarray, np.ndarray]:
        if store_idx < 0:
            return np.empty(0, np.int32), np.empty(0, np.int32)
        a, b = int(self.stock_indptr[store_idx]), int(self.stock_indptr[store_idx + 1])
        return self.stock_items[a:b], self.stock_qty[a:b]

    # -- derived, computed once per worker
    @cached_property
    def gramian(self) -> np.ndarray:
        """YᵀY of the item factors (float64), the fixed part of every ALS fold-in solve."""
        y = np.asarray(self.item_factors, dtype=np.float64)
        return y.T @ y

    @cached_property
    def has_item_bias(self) -> bool:
        return self.item_bias is not None and bool(np.any(self.item_bias != 0))

    @cached_property
    def in_stock_anywhere(self) -> np.ndarray:
        m = np.zeros(self.n_items, dtype=bool)
        if len(self.stock_items):
            m[self.stock_items[self.stock_qty > 0]] = True
        return m

    @cached_property
    def channel_unrestricted(self) -> bool:
        return bool(np.all(self.item_channels))

    @cached_property
    def validity_unrestricted(self) -> bool:
        from recsvc.artifact.manifest import NO_DATE_FROM, NO_DATE_TO

        return bool(np.all(self.item_valid_from <= NO_DATE_FROM) and np.all(self.item_valid_to >= NO_DATE_TO))


def load_model(path: str, verify: bool = True) -> LoadedModel:
    """Verify the manifest and checksums, then mmap each array (allow_pickle=False: loading runs no code)."""
    from recsvc.artifact.write import sha256_file

    path = os.path.abspath(path)
    if not os.path.isdir(path):
        raise ArtifactError(f"{path}: no such model folder")
    manifest = Manifest.read(path)
    arrays: dict[str, np.ndarray] = {}
    spec = {**REQUIRED_ARRAYS, **OPTIONAL_ARRAYS}
    for fn, digest in manifest.files.items():
        fp = os.path.join(path, fn)
        if os.path.basename(fn) != fn or not os.path.isfile(fp):
            raise ArtifactError(f"{manifest.model_id}: file {fn} listed in the manifest is missing")
        if verify and sha256_file(fp) != str(digest).removeprefix("sha256:").lower():
            raise ArtifactError(f"{manifest.model_id}: checksum of {fn} does not match the manifest (corrupt copy?)")
        if fn.endswith(".npy"):
            name = fn[:-4]
            if name not in spec:
                continue
            try:
                arrays[name] = np.load(fp, mmap_mode="r", allow_pickle=False)
            except ValueError:  # zero-size arrays cannot be memory-mapped
                arrays[name] = np.load(fp, allow_pickle=False)
            except Exception as e:  # noqa: BLE001 - any numpy failure means a bad file
                raise ArtifactError(f"{manifest.model_id}: {fn} is not a loadable array ({e})") from None
    missing = [n for n in REQUIRED_ARRAYS if n not in arrays]
    if missing:
        raise ArtifactError(f"{manifest.model_id}: missing arrays {', '.join(missing)}")
    kind = manifest.scoring["kind"]
    need = {"factors": ("item_factors", "customer_factors"), "neighbours": ("neighbours", "neighbour_scores")}
    missing = [n for n in need.get(kind, ()) if n not in arrays]
    if missing:
        raise ArtifactError(f"{manifest.model_id}: scoring kind {kind} needs {', '.join(missing)}")
    n_items = int(arrays["item_ids"].shape[0])
    for name in FLAT_ON_DISK:
        a = arrays.get(name)
        if a is not None and a.ndim == 1:
            if (n_items == 0 and len(a)) or (n_items and len(a) % n_items):
                raise ArtifactError(f"{manifest.model_id}: array {name} has {len(a)} entries, not a whole "
                                    f"number of lists for {n_items} items")
            arrays[name] = a.reshape(n_items, len(a) // n_items if n_items else 0)
    for name, a in arrays.items():
        kinds, ndim = spec[name]
        if a.dtype.kind not in kinds or a.ndim != ndim:
            raise ArtifactError(f"{manifest.model_id}: array {name} has dtype {a.dtype}, ndim {a.ndim}")
    return LoadedModel(path, manifest, arrays)

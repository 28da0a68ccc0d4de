"""The manifest: what a model folder holds, how it was made, how good it is."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any

from recsvc.errors import ArtifactError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
CHANNELS = ("web", "app", "store", "call_center")

# name -> (dtype kind, ndim). Every model has these, whatever the learner.
REQUIRED_ARRAYS: dict[str, tuple[str, int]] = {
    "item_ids": ("U", 1),
    "item_title": ("U", 1),
    "item_category": ("i", 1),
    "category_names": ("U", 1),
    "item_price": ("f", 1),
    "item_valid_from": ("i", 1),
    "item_valid_to": ("i", 1),
    "locale_names": ("U", 1),
    "item_locales": ("b", 2),
    "item_channels": ("b", 2),
    "pop_global": ("f", 1),
    "customer_ids": ("U", 1),
    "customer_segment": ("i", 1),
    "segment_names": ("U", 1),
    "hist_indptr": ("i", 1),
    "hist_items": ("i", 1),
    "hist_flags": ("u", 1),
    "store_ids": ("U", 1),
    "pop_store_items": ("i", 2),
    "pop_store_scores": ("f", 2),
    "pop_locale_items": ("i", 2),
    "pop_locale_scores": ("f", 2),
    "pop_segment_items": ("i", 2),
    "pop_segment_scores": ("f", 2),
    "stock_indptr": ("i", 1),
    "stock_items": ("i", 1),
    "stock_qty": ("i", 1),
}
# present depending on the learner's scoring kind
OPTIONAL_ARRAYS: dict[str, tuple[str, int]] = {
    "item_factors": ("f", 2),
    "customer_factors": ("f", 2),
    "item_bias": ("f", 1),
    "neighbours": ("i", 2),
    "neighbour_scores": ("f", 2),
    "hist_weights": ("f", 1),  # training confidence per history entry: fold-in starts from it
    # large catalogues: the HNSW index over the item factors (faiss.serialize_index bytes, no pickle),
    # read zero-copy by recsvc.core.ann; its settings are the manifest's scoring.ann
    "ann_index": ("u", 1),
}
# Neighbour lists are (items, K) in memory but stored flat, (items * K,) row-major, and reshaped at load
# (K = size / items): the only 2-D float arrays with one row per item on disk are then the item factors,
# which tools that find a model's factors by shape rely on. Older artifacts with 2-D files still load.
FLAT_ON_DISK = ("neighbours", "neighbour_scores")
SCORING_KINDS = ("factors", "neighbours", "popularity")

# hist_flags bits: what the customer did with the item in the training data
SEEN, PURCHASED, RETURNED, DECLINED = 1, 2, 4, 8
NO_DATE_FROM = -(2**62)
NO_DATE_TO = 2**62


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def new_model_id(learner: str, fingerprint: str, params: dict[str, Any], when: dt.datetime | None = None) -> str:
    """`<learner>-<UTC YYYYMMDDTHHMMSSZ>-<6 hex of data+params hash>`: sortable, immutable, traceable."""
    when = when or utcnow()
    h = hashlib.sha256((fingerprint + json.dumps(params, sort_keys=True, default=str)).encode()).hexdigest()
    return f"{learner}-{when.strftime('%Y%m%dT%H%M%SZ')}-{h[:6]}"


@dataclass
class Manifest:
    """manifest.json as an object. `scoring` tells serving how to score (kind, fold-in parameters)."""

    model_id: str
    learner: str
    created_at: str
    params: dict[str, Any]
    seed: int
    scoring: dict[str, Any]
    data: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    libraries: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        d = {
            "format_version": self.format_version,
            "model_id": self.model_id,
            "learner": self.learner,
            "created_at": self.created_at,
            "params": self.params,
            "seed": self.seed,
            "scoring": self.scoring,
            "libraries": self.libraries,
            "data": self.data,
            "metrics": self.metrics,
            "files": self.files,
        }
        d.update(self.extra)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any], where: str = "manifest.json") -> Manifest:
        if not isinstance(d, dict):
            raise ArtifactError(f"{where}: not a JSON object")
        version = d.get("format_version")
        if version != FORMAT_VERSION:
            raise ArtifactError(
                f"{where}: format_version {version!r} is not supported (this recsvc reads {FORMAT_VERSION}); "
                "retrain with this version or serve it with the recsvc that wrote it"
            )
        missing = [k for k in ("model_id", "learner", "created_at", "params", "scoring", "files") if k not in d]
        if missing:
            raise ArtifactError(f"{where}: missing {', '.join(missing)}")
        if d["scoring"].get("kind") not in SCORING_KINDS:
            raise ArtifactError(f"{where}: scoring.kind must be one of {SCORING_KINDS}")
        known = {f for f in cls.__dataclass_fields__ if f != "extra"}
        return cls(
            **{k: d[k] for k in known if k in d and k != "seed"},
            seed=int(d.get("seed", 0)),
            extra={k: v for k, v in d.items() if k not in known},
        )

    @classmethod
    def read(cls, model_dir: str) -> Manifest:
        path = os.path.join(model_dir, MANIFEST)
        try:
            with open(path, encoding="utf-8") as f:
                d = json.load(f)
        except FileNotFoundError:
            raise ArtifactError(f"{model_dir}: no {MANIFEST}") from None
        except (OSError, ValueError) as e:
            raise ArtifactError(f"{path}: unreadable ({e})") from None
        return cls.from_json(d, where=path)

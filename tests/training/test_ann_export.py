"""Training ships an approximate index with factor models from `[ann] min_items` items (a low threshold
here), and serving ranks through it; below the threshold no index is built."""

from __future__ import annotations

import json
import os
from dataclasses import replace

import numpy as np
import pytest

from recsvc.artifact import load_model
from recsvc.core import Context, CustomerState, RankOptions, ann, rank
from training import pipeline
from training.config import AnnConfig, TrainConfig, load_config
from training.errors import ConfigError
from training.export import ann_index_arrays
from training.synth import synth


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> str:
    d = str(tmp_path_factory.mktemp("ann") / "data")
    synth(d, customers=300, items=150, stores=2, events=6000, seed=5)
    return d


def test_a_catalogue_over_the_threshold_ships_its_index(data_dir, tmp_path):
    cfg = replace(TrainConfig(), ann=AnnConfig(min_items=100))
    models = str(tmp_path / "models")
    mid, _ = pipeline.fit(data_dir, models, cfg, rejects_path=str(tmp_path / "r.csv"))
    folder = os.path.join(models, mid)
    with open(os.path.join(folder, "manifest.json"), encoding="utf-8") as f:
        man = json.load(f)
    assert "ann_index.npy" in man["files"]
    spec = man["scoring"]["ann"]
    assert spec["min_items"] == 100 and spec["kind"] == "hnsw" and spec["m"] == ann.DEFAULT_M
    model = load_model(folder)
    assert ann.index_of(model) is not None
    cid = str(model.customer_ids[0])
    r = rank(model, CustomerState(cid), Context("web"), RankOptions(n=10))
    assert r.personalised and ann.counts(model)["ann"] == 1
    exact = load_model(folder)
    exact.ann_min_items = 10**6
    e = rank(exact, CustomerState(cid), Context("web"), RankOptions(n=10))
    assert len({o.item_id for o in r.offers} & {o.item_id for o in e.offers}) >= 9


def test_below_the_threshold_no_index_is_built():
    y = np.random.default_rng(0).normal(size=(50, 8)).astype(np.float32)
    arrays = {"item_factors": y, "item_bias": np.zeros(50, np.float32)}
    settings = {"min_items": 51, "m": 16, "ef_construction": 40, "ef_search": 64}
    assert ann_index_arrays(arrays, "factors", settings) is None
    blob, spec = ann_index_arrays(arrays, "factors", {**settings, "min_items": 50})
    assert blob.dtype == np.uint8 and spec["bias_column"] is False  # an all-zero bias adds no column
    assert ann_index_arrays(arrays, "neighbours", {**settings, "min_items": 0}) is None


def test_the_config_file_sets_the_index(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("[ann]\nmin_items = 5000\nm = 16\n", encoding="utf-8")
    cfg = load_config(str(p))
    assert cfg.ann == AnnConfig(min_items=5000, m=16)
    p.write_text("[ann]\nm = 0\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="ann.m must be a positive integer"):
        load_config(str(p))

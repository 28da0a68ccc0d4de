"""The service's ANN threshold (Config.ann_min_items, from RECSVC_ANN_MIN_ITEMS) reaches every model
the holder loads, and the core's choice between the index and exact scoring follows it."""

from __future__ import annotations

import numpy as np
import pytest

from recsvc.artifact import load_model
from recsvc.artifact.manifest import Manifest, utcnow
from recsvc.artifact.registry import Registry
from recsvc.artifact.write import write_model
from recsvc.core import Context, CustomerState, RankOptions, ann, rank
from recsvc.errors import ArtifactError
from recsvc.model_holder import ModelHolder, warm_up
from tests.modelkit import build_arrays


def write_indexed_model(models_dir: str) -> str:
    arrays = build_arrays(n_items=400, n_customers=10, k=8)
    arrays["ann_index"] = ann.build_index(arrays["item_factors"])
    man = Manifest(model_id="als-indexed", learner="als", created_at=utcnow().isoformat(), params={}, seed=0,
                   scoring={"kind": "factors", "foldin": {"regularization": 0.1, "alpha": 1.0},
                            "event_weights": {"view": 1.0, "purchase": 8.0}, "ann": {"min_items": 300}})
    write_model(models_dir, man, arrays)
    Registry(models_dir).set_alias("champion", man.model_id)
    return man.model_id


def test_the_holder_passes_the_threshold_to_every_model(tmp_path):
    models = str(tmp_path / "models")
    write_indexed_model(models)
    default = ModelHolder(models, "champion").load("champion")
    assert default.ann_min_items is None and ann.index_of(default) is not None  # manifest: 300 <= 400 items
    raised = ModelHolder(models, "champion", ann_min_items=1000).load("champion")
    assert raised.ann_min_items == 1000 and ann.index_of(raised) is None
    for model, path in ((default, "ann"), (raised, "exact")):
        before = ann.counts(model)[path]
        r = rank(model, CustomerState("c00001"), Context("web"), RankOptions(n=5))
        assert r.personalised and ann.counts(model)[path] == before + 1
    ids = [[o.item_id for o in rank(m, CustomerState("c00001"), Context("web"), RankOptions(n=5)).offers]
           for m in (default, raised)]
    assert ids[0] == ids[1] and len(np.unique(ids[0])) == 5


def test_an_index_that_does_not_fit_the_model_is_refused(tmp_path):
    arrays = build_arrays(n_items=400, n_customers=10, k=8)
    arrays["ann_index"] = ann.build_index(arrays["item_factors"][:300])  # another catalogue's
    man = Manifest(model_id="als-misfit", learner="als", created_at=utcnow().isoformat(), params={}, seed=0,
                   scoring={"kind": "factors", "foldin": {"regularization": 0.1, "alpha": 1.0},
                            "event_weights": {"view": 1.0}, "ann": {"min_items": 300}})
    write_model(str(tmp_path), man, arrays)
    with pytest.raises(ArtifactError, match="ann_index holds 300 vectors"):
        warm_up(load_model(str(tmp_path / "als-misfit")))

"""`fit` end to end on seeded synthetic data: what it publishes is what it computed, ranks as serving
ranks, and is evaluated under the same rules for the model and the baselines.

One session fixture runs the default fit once (the real pipeline; `write_model` is wrapped only to
keep a reference to the arrays it was given).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import pytest
import scipy.sparse as sp

from recsvc.artifact import load_model
from recsvc.artifact.manifest import CHANNELS, PURCHASED, RETURNED, Manifest
from recsvc.artifact.registry import Registry
from recsvc.artifact.write import TMP_PREFIX
from recsvc.core.eligibility import history_exclusions
from recsvc.core.foldin import fold_in, merge_weights
from training import pipeline
from training.__main__ import main
from training.config import TrainConfig, with_overrides
from training.errors import ConfigError
from training.evaluate import recommender_for
from training.learners.base import Factors
from training.synth import synth

STAGES = ("read", "weight", "split", "train", "evaluate", "final")


@dataclass
class Published:
    data: str
    models: str
    model_id: str
    arrays: dict
    manifest: Manifest
    extra_files: dict
    stale_temp: str

    @property
    def path(self) -> str:
        return os.path.join(self.models, self.model_id)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> str:
    d = str(tmp_path_factory.mktemp("pipeline") / "data")
    synth(d, customers=400, items=150, stores=3, events=9000, seed=11)
    return d


@pytest.fixture(scope="session")
def published(data_dir, tmp_path_factory) -> Published:
    models = str(tmp_path_factory.mktemp("pipeline-models"))
    # a folder left by a publisher that died (its pid is gone): the next publish must clear it
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    stale = os.path.join(models, f"{TMP_PREFIX}als-20260101T000000Z-000000-{dead}")
    os.makedirs(stale)
    seen: dict = {}
    real = pipeline.write_model

    def keep_a_reference(models_dir, manifest, arrays, extra_files=None):
        seen.update(manifest=manifest, arrays=arrays, extra_files=extra_files)
        return real(models_dir, manifest, arrays, extra_files=extra_files)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pipeline, "write_model", keep_a_reference)
        mid, verdict = pipeline.fit(data_dir, models, TrainConfig(),
                                    rejects_path=str(tmp_path_factory.mktemp("rejects") / "r.csv"))
    assert verdict == {}
    return Published(data_dir, models, mid, seen["arrays"], seen["manifest"], seen["extra_files"] or {}, stale)


@pytest.fixture(scope="session")
def prepared(data_dir, tmp_path_factory):
    cfg = TrainConfig()
    p = pipeline.prepare(data_dir, cfg, pipeline.Stages(),
                         rejects_path=str(tmp_path_factory.mktemp("rejects") / "r.csv"))
    return cfg, p, pipeline.split(p, cfg)


# ---------------------------------------------------------------- what is published
def test_every_published_array_equals_the_one_computed(published):
    m = load_model(published.path)
    assert set(m.arrays) == set(published.arrays)
    for name, a in published.arrays.items():
        b = m.arrays[name]
        assert b.dtype == np.asarray(a).dtype and b.shape == np.asarray(a).shape, name
        np.testing.assert_array_equal(b, a, err_msg=name)
    as_json = json.loads(json.dumps(published.manifest.to_json(), default=str))  # tuples become lists
    assert m.manifest.to_json() == as_json
    assert sorted(m.manifest.files) == sorted([f"{n}.npy" for n in published.arrays] + ["evaluation.json"])


def test_the_manifest_records_stages_parameters_and_how_it_was_evaluated(published):
    man = Manifest.read(published.path)
    assert man.learner == "als" and man.scoring["kind"] == "factors"
    assert set(STAGES) <= set(man.extra["stages"]) and all(v >= 0 for v in man.extra["stages"].values())
    p = man.params
    # 15 sweeps in all: most on the training split, the last ones on every interaction
    assert p["iterations"] == 15 and p["warm_start_after"] == 15 - p["evaluation"]["final_iterations"]
    assert p["exact_customer_solve"] is True
    assert man.scoring["foldin"] == {"regularization": p["regularization"], "alpha": p["alpha"]}
    met = man.metrics
    assert met["exclude"] == "purchased" and met["split"]["holdout"] == "temporal"
    assert {"ndcg@10", "map@10", "precision@10", "recall@10", "hit_rate@10", "coverage@10"} <= set(met["overall"])
    assert set(met["per_channel"]) <= set(CHANNELS) and len(met["per_channel"]) >= 2
    assert set(met["per_group"]) == {"store_dominant", "online_dominant", "both", "light", "heavy"}
    assert set(met["baselines"]) == {"popularity", "repurchase+popularity"}
    lo, hi = met["overall"]["ci95"]["ndcg@10"]
    assert lo <= met["overall"]["ndcg@10"] <= hi
    assert man.data["counts"]["interactions"] == 9000 and man.data["counts"]["rejects"] == 0


def test_the_default_learner_beats_popularity_on_synthetic_tastes(published):
    met = Manifest.read(published.path).metrics
    assert met["overall"]["ndcg@10"] > met["baselines"]["popularity"]["overall"]["ndcg@10"]


def test_published_customer_rows_are_what_serving_folds_in(published):
    """The evaluation fit may skip the exact customer solve; the published model never does."""
    m = load_model(published.path)
    f = m.manifest.scoring["foldin"]
    checked = 0
    for c in range(m.n_customers):
        a, b = int(m.hist_indptr[c]), int(m.hist_indptr[c + 1])
        items, w = merge_weights(m.hist_items[a:b], m.hist_weights[a:b], np.empty(0, np.int64), np.empty(0))
        if len(items) == 0:
            assert not np.any(m.customer_factors[c])
            continue
        v = fold_in(m.item_factors, m.gramian, items, w, f["regularization"], f["alpha"])
        np.testing.assert_allclose(v, m.customer_factors[c], rtol=2e-3, atol=2e-4)
        checked += 1
        if checked == 60:
            break
    assert checked == 60


def test_the_publish_cleared_a_dead_publishers_folder(published):
    assert not os.path.exists(published.stale_temp)
    assert Registry(published.models).model_ids() == [published.model_id]


# ---------------------------------------------------------------- offline ranking == batch == API
def read_csv(path: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        out.setdefault(r["customer_id"], []).append((int(r["rank"]), r["item_id"]))
    return {c: [i for _, i in sorted(v)] for c, v in out.items()}


def exclusion_csr(arrays: dict, eligible: np.ndarray) -> sp.csr_matrix:
    """Per customer: purchased/returned history items plus every item not offered in the context."""
    n_c, n_i = len(arrays["customer_ids"]), len(arrays["item_ids"])
    hist = sp.csr_matrix((arrays["hist_flags"], arrays["hist_items"], arrays["hist_indptr"]), shape=(n_c, n_i))
    bought = hist.copy()
    bought.data = ((bought.data & (PURCHASED | RETURNED)) != 0).astype(np.float32)
    off = sp.csr_matrix(np.broadcast_to(~eligible, (n_c, n_i)).astype(np.float32))
    ex = (bought + off).tocsr()
    ex.eliminate_zeros()
    return ex


@pytest.mark.parametrize("channel", ["web", "store"])
def test_offline_top_n_equals_the_recommend_csv(published, tmp_path, channel, capsys):
    a = published.arrays
    at = int(Manifest.read(published.path).data["trained_until"]) - 86400 * 30  # some seasonal items closed
    eligible = (a["item_channels"][:, CHANNELS.index(channel)] & (a["item_valid_from"] <= at)
                & (at < a["item_valid_to"]))
    assert 0 < eligible.sum() < len(eligible)  # the context really restricts something
    f = Factors(kind="factors", item_factors=a["item_factors"], customer_factors=a["customer_factors"])
    n_c = len(a["customer_ids"])
    history = sp.csr_matrix((a["hist_weights"], a["hist_items"], a["hist_indptr"]), shape=(n_c, len(a["item_ids"])))
    rec = recommender_for(f, history, 10, exclusion_csr(a, eligible), fallback_scores=a["pop_global"])
    rows = rec(np.arange(n_c))
    offline = {str(a["customer_ids"][c]): [str(a["item_ids"][r]) for r in rows[c] if r >= 0] for c in range(n_c)}

    out = str(tmp_path / "recs.csv")
    assert main(["-q", "recommend", "--model", published.model_id, "--models-dir", published.models, "--all",
                 "--n", "10", "--channel", channel, "--at", str(at), "--exclude", "purchased", "--out", out]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == out
    batch = read_csv(out)
    assert batch == offline
    cold = [c for c in range(n_c) if not np.any(a["customer_factors"][c])]
    assert cold and len(batch) == n_c  # the fallback path is compared too


# ---------------------------------------------------------------- one exclusion rule everywhere
@pytest.mark.parametrize("mode", ["seen", "purchased", "none"])
def test_the_evaluation_excludes_exactly_what_serving_excludes(prepared, mode):
    _, _, s = prepared
    ex = pipeline._exclusion(s.train, mode)
    flags = sp.csr_matrix(s.train.flags)
    for c in range(flags.shape[0]):
        a, b = flags.indptr[c], flags.indptr[c + 1]
        want = np.sort(history_exclusions(flags.indices[a:b], flags.data[a:b], mode))
        got = np.array([], np.int64) if ex is None else np.sort(ex.indices[ex.indptr[c]:ex.indptr[c + 1]])
        np.testing.assert_array_equal(got, want)


def test_models_and_baselines_are_held_to_the_same_exclusion(prepared):
    cfg, p, s = prepared
    purchased = pipeline.evaluate_factors(p, s, None, cfg, None)
    # with purchases excluded, "repurchase first" has nothing of its own to offer: it is popularity
    assert purchased["repurchase+popularity"]["overall"] == purchased["popularity"]["overall"]
    none = pipeline.evaluate_factors(p, s, None, cfg, None, exclude_mode="none")
    assert none["repurchase+popularity"]["overall"] != none["popularity"]["overall"]
    assert {r["exclude"] for r in purchased.values()} == {"purchased"}
    assert {r["exclude"] for r in none.values()} == {"none"}
    cfg_none = with_overrides(cfg, eval_exclude="none")
    assert pipeline.evaluate_factors(p, s, None, cfg_none, None)["popularity"]["overall"] == none["popularity"]["overall"]


def test_an_unknown_exclusion_is_a_config_error():
    with pytest.raises(ConfigError, match="evaluation.exclude must be one of seen, purchased, none"):
        with_overrides(TrainConfig(), eval_exclude="everything")


def test_refitting_the_same_data_within_a_second_gets_a_new_id(data_dir, tmp_path, monkeypatch):
    import datetime as dt

    from training import export

    frozen = dt.datetime(2026, 11, 23, 10, 0, 0, tzinfo=dt.UTC)
    monkeypatch.setattr(export, "utcnow", lambda: frozen)
    cfg = with_overrides(TrainConfig(), learner="popularity")
    models = str(tmp_path / "models")
    ids = [pipeline.fit(data_dir, models, cfg, rejects_path=str(tmp_path / "r.csv"))[0] for _ in range(3)]
    assert [i.split("-")[1] for i in ids] == ["20261123T100000Z", "20261123T100001Z", "20261123T100002Z"]
    assert Registry(models).model_ids() == ids  # sorted by creation
    assert Manifest.read(os.path.join(models, ids[2])).created_at.startswith("2026-11-23T10:00:02")

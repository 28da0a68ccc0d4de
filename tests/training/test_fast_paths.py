"""The training job's shortcuts give the answers of the plain computation.

- a split's matrix built on the full matrix (`base=`: its id maps, lookups and pair order) equals one
  built from scratch;
- the evaluation's lists are the same on one thread or several;
- the bootstrap's resamples, shared between models evaluated on the same customers, are those a
  one-off draw makes;
- the interactions file read while the CLI starts (`training.prefetch`) is used only if unchanged;
- the training CLI keeps every core for its learners even under OMP_NUM_THREADS=1.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from training import evaluate as ev
from training import prefetch
from training.config import TrainConfig
from training.io import load_dataset
from training.learners.base import cpu_threads, get_learner
from training.matrix import build_matrix
from training.split import default_cutoff, temporal_split
from training.synth import synth
from training.weighting import WeightConfig, event_weights


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("fast") / "d")
    synth(d, customers=600, items=150, stores=3, events=12_000, seed=11)
    return d, load_dataset(d, max_reject_share=0.0)


def test_a_split_built_on_the_full_matrix_equals_one_built_from_scratch(synthetic):
    _, ds = synthetic
    inter = ds.interactions
    w = event_weights(inter, WeightConfig(), now=float(inter["ts"].max()))
    full = build_matrix(ds, w)
    ts = inter["ts"].to_numpy()
    rows = ~temporal_split(ts, default_cutoff(ts))
    fast = build_matrix(ds, w, rows=rows, base=full)
    plain = build_matrix(ds, w, rows=rows, customer_ids=full.customer_ids, item_ids=full.item_ids)
    for a, b in ((fast.confidence, plain.confidence), (fast.flags, plain.flags)):
        assert a.dtype == b.dtype and a.shape == b.shape and a.has_sorted_indices
        np.testing.assert_array_equal(a.indptr, b.indptr)
        np.testing.assert_array_equal(a.indices, b.indices)
        np.testing.assert_array_equal(a.data, b.data)
    assert 0 < fast.confidence.nnz < full.confidence.nnz


def test_the_evaluation_lists_do_not_depend_on_the_threads(synthetic):
    _, ds = synthetic
    inter = ds.interactions
    w = event_weights(inter, WeightConfig(), now=float(inter["ts"].max()))
    m = build_matrix(ds, w)
    f = get_learner("als", {"tune": "off", "factors": 8, "iterations": 3, "neighbours": 0}).fit(m.confidence)
    rec = ev.recommender_for(f, m.confidence, 10, m.confidence)
    customers = np.arange(m.shape[0])
    one = ev._collect(rec, customers, 10, block=37, threads=1)
    two = ev._collect(rec, customers, 10, block=37, threads=2)
    np.testing.assert_array_equal(one, two)
    assert (one >= 0).any()


def test_shared_bootstrap_resamples_are_a_one_off_draw():
    values = np.random.default_rng(0).random((700, 5))
    rng = np.random.default_rng(4)
    chunk = max(1, (1 << 23) // 700)
    means = []
    for a in range(0, 300, chunk):
        draws = rng.integers(0, 700, size=(min(300, a + chunk) - a, 700))
        means.append(values[draws].mean(axis=1))
    means = np.concatenate(means)
    want = np.percentile(means, [2.5, 97.5], axis=0).T
    for _ in range(2):  # the second call takes the cached resamples
        np.testing.assert_allclose(ev.bootstrap_ci(values, 300, seed=4), want, rtol=1e-12)


def test_the_early_read_is_used_only_while_the_file_is_unchanged(synthetic, tmp_path):
    d, _ = synthetic
    path = os.path.join(d, "interactions.csv")
    prefetch.start(d)
    table = prefetch.take(path)
    assert table is not None and table.table.num_rows == 12_000
    assert prefetch.take(path) is None, "taken once"

    copy = tmp_path / "d"
    shutil.copytree(d, copy)
    prefetch.start(str(copy))
    with open(copy / "interactions.csv", "a", encoding="utf-8") as f:
        f.write("c_late,nope,view,web,2026-01-01T00:00:00Z" + "," * 8 + "\n")
    assert prefetch.take(str(copy / "interactions.csv")) is None, "changed since: read again"
    ds = load_dataset(str(copy), max_reject_share=0.5, rejects_path=str(tmp_path / "r.csv"))
    assert ds.n_rows == 12_001


def test_a_fit_reads_its_file_once_when_prefetched(synthetic, tmp_path, monkeypatch):
    from training import io, pipeline

    d, _ = synthetic
    reads = []
    real = io._read
    monkeypatch.setattr(io, "_read", lambda p: reads.append(os.path.basename(p)) or real(p))
    prefetch.start(d)
    cfg = TrainConfig(learner="popularity")
    pipeline.fit(d, str(tmp_path / "models"), cfg, rejects_path=str(tmp_path / "r.csv"))
    assert reads.count("interactions.csv") == 1


def test_the_learners_get_every_core_whatever_omp_num_threads_says(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert cpu_threads(0) == len(os.sched_getaffinity(0))
    assert cpu_threads(3) == 3

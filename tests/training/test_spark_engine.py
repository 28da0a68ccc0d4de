"""`recsvc-train fit --engine spark`: the same data, config and artifact as the default engine.

One local Spark session for the module (start-up ~10-20 s); the same ~20k-event synthetic data is
trained by both engines with the same explicit ALS parameters. Tolerance for "comparable quality":
NDCG@10 of the Spark model within 0.05 (absolute) of the default engine's, on the same held-out set
(the baselines, computed by each engine from its own aggregates, must agree exactly).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from recsvc.artifact import load_model
from training import pipeline
from training.config import load_config
from training.engines import spark as engine
from training.io import load_dataset
from training.synth import synth

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning"),
]
NDCG_TOLERANCE = 0.05
CONFIG = """
seed = 0
[learners.als]
factors = 16
regularization = 5.0
alpha = 4.0
iterations = 15
"""


@pytest.fixture(scope="module")
def spark():
    s = engine.session("local[2]", {"spark.sql.shuffle.partitions": "4", "spark.driver.memory": "1g"})
    yield s
    s.stop()


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> str:
    d = str(tmp_path_factory.mktemp("spark") / "data")
    synth(d, customers=1000, items=300, stores=4, events=20000, seed=5)
    return d


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    p = tmp_path_factory.mktemp("cfg") / "als.toml"
    p.write_text(CONFIG)
    return load_config(str(p))


@pytest.fixture(scope="module")
def trained(spark, data, cfg, tmp_path_factory):
    """{engine: (models dir, loaded model, manifest json, evaluation.json)}"""
    out = {}
    for name in ("implicit", "spark"):
        models = str(tmp_path_factory.mktemp(f"models-{name}"))
        if name == "spark":
            mid, _ = engine.fit(data, models, cfg, alias="champion", spark=spark)
        else:
            mid, _ = pipeline.fit(data, models, cfg, alias="champion")
        path = os.path.join(models, mid)
        with open(os.path.join(path, "manifest.json")) as f:
            man = json.load(f)
        with open(os.path.join(path, "evaluation.json")) as f:
            evaluation = json.load(f)
        out[name] = (models, load_model(path), man, evaluation)
    return out


def test_quality_is_comparable_on_the_same_held_out_set(trained):
    (_, _, imp, imp_ev), (_, _, spk, spk_ev) = trained["implicit"], trained["spark"]
    assert spk["metrics"]["split"]["cutoff"] == imp["metrics"]["split"]["cutoff"]
    assert spk["metrics"]["customers"] == imp["metrics"]["customers"]
    # the baselines see the same training popularity, exclusions and held-out set on both engines
    for name in ("popularity", "repurchase+popularity"):
        flat = {m: v for m, v in imp_ev[name]["overall"].items() if m != "ci95"}
        assert {m: spk_ev[name]["overall"][m] for m in flat} == pytest.approx(flat, rel=1e-6, abs=1e-9)
    a, b = imp["metrics"]["overall"]["ndcg@10"], spk["metrics"]["overall"]["ndcg@10"]
    print(f"ndcg@10 implicit {a:.4f} spark {b:.4f}")
    assert b > 0.5 * spk["metrics"]["baselines"]["popularity"]["overall"]["ndcg@10"]
    assert abs(a - b) <= NDCG_TOLERANCE, (a, b)


def test_the_artifact_is_the_same_format_with_the_same_data_arrays(trained):
    (_, mi, imp, _), (_, ms, spk, _) = trained["implicit"], trained["spark"]
    assert spk["format_version"] == imp["format_version"] and spk["learner"] == imp["learner"] == "als"
    assert spk["scoring"]["kind"] == imp["scoring"]["kind"] == "factors"
    assert set(spk["scoring"]["foldin"]) == set(imp["scoring"]["foldin"])
    assert spk["data"]["counts"] == imp["data"]["counts"]
    assert spk["data"]["fingerprint"] == imp["data"]["fingerprint"]
    assert set(spk["files"]) == set(imp["files"])
    ai, as_ = mi.arrays, ms.arrays
    assert set(ai) == set(as_)
    for name in ai:
        assert ai[name].dtype == as_[name].dtype, name
        assert ai[name].shape == as_[name].shape, name
    # everything but the learned numbers is the same data: ids, catalogue, history, stock, popularity
    for name in ai:
        if name in ("item_factors", "customer_factors", "neighbours", "neighbour_scores"):
            continue
        if ai[name].dtype.kind == "f":
            np.testing.assert_allclose(as_[name], ai[name], rtol=2e-5, atol=1e-6, err_msg=name)
        else:
            np.testing.assert_array_equal(as_[name], ai[name], err_msg=name)
    assert np.isfinite(as_["customer_factors"]).all() and np.abs(as_["item_factors"]).sum() > 0


def test_the_service_loads_the_spark_model_and_answers(trained, make_app):
    models, model, man, _ = trained["spark"]
    app = make_app(models_dir=models)
    assert app.extensions["recsvc"].holder.model.model_id == man["model_id"]
    customer = str(model.arrays["customer_ids"][int(np.argmax(np.diff(model.arrays["hist_indptr"])))])
    r = app.test_client().post("/v1/recommendations", json={
        "customer": {"customer_id": customer}, "context": {"channel": "web"}, "n": 5})
    assert r.status_code == 200, r.get_data(as_text=True)
    js = r.get_json()
    assert js["model_id"] == man["model_id"] and js["personalised"] is True
    assert len(js["items"]) == 5


def test_rejects_are_the_same_rows_fields_and_reasons(spark, data, tmp_path):
    d = tmp_path / "bad"
    shutil.copytree(data, d)
    inter = pd.read_csv(d / "interactions.csv", dtype=str, keep_default_na=False)
    bad = inter.iloc[:8].copy()
    bad.loc[bad.index[0], "event"] = "teleport"
    bad.loc[bad.index[1], "timestamp"] = "yesterday"
    bad.loc[bad.index[2], "item_id"] = "no-such-item"
    bad.loc[bad.index[3], "quantity"] = "-2"
    bad.loc[bad.index[4], "customer_id"] = ""
    bad.loc[bad.index[5], "timestamp"] = "1790000000000"
    bad.loc[bad.index[6], "channel"] = "fax"
    bad.loc[bad.index[7], "value"] = "lots"
    dup = inter.iloc[[100]].copy()  # repeats an event id further down
    inter = pd.concat([inter, bad.assign(event_id=[f"x{i}" for i in range(8)]), dup], ignore_index=True)
    inter.to_csv(d / "interactions.csv", index=False)
    pd_path, sp_path = str(tmp_path / "pandas.csv"), str(tmp_path / "spark.csv")
    ds = load_dataset(str(d), rejects_path=pd_path)
    spark.conf.set("spark.sql.files.maxPartitionBytes", "256k")  # several partitions: lines across splits
    try:
        sd = engine.load(spark, str(d), rejects_path=sp_path)
    finally:
        spark.conf.unset("spark.sql.files.maxPartitionBytes")
    try:
        assert sd.rows.rdd.getNumPartitions() > 1
        assert (sd.n_valid, sd.n_rows, sd.n_rejects) == (len(ds.interactions), ds.n_rows, ds.n_rejects) \
            == (len(inter) - 9, len(inter), 9)
        a = pd.read_csv(pd_path, dtype=str, keep_default_na=False)
        b = pd.read_csv(sp_path, dtype=str, keep_default_na=False)
        pd.testing.assert_frame_equal(a, b)
        assert "duplicate event_id (first at line 102)" in set(b["reason"])
    finally:
        sd.rows.unpersist()


def test_without_java_the_cli_says_so_in_one_line(data, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"}
    env["PATH"] = os.path.dirname(sys.executable)  # the venv only: no java
    r = subprocess.run([sys.executable, "-m", "training", "fit", "--engine", "spark", "--data", data,
                        "--models-dir", str(tmp_path)], capture_output=True, text=True, env=env, timeout=120,
                       check=False)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        "recsvc-train fit: error: --engine spark needs Java 17 or later (no java on PATH and no JAVA_HOME)"]


def test_without_pyspark_the_cli_says_so_in_one_line(data, tmp_path):
    code = ("import sys; sys.modules['pyspark'] = None; from training.__main__ import main; "
            f"sys.exit(main(['fit', '--engine', 'spark', '--data', {data!r}, '--models-dir', {str(tmp_path)!r}]))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        "recsvc-train fit: error: --engine spark needs pyspark: pip install 'recsvc[spark]'"]


def test_the_default_engine_never_imports_pyspark(data, tmp_path):
    code = ("import sys; from training.__main__ import main; "
            f"rc = main(['-q', 'fit', '--no-evaluate', '--data', {data!r}, '--models-dir', {str(tmp_path)!r}]); "
            "assert 'pyspark' not in sys.modules and 'training.engines.spark' not in sys.modules; sys.exit(rc)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr


def test_a_data_uri_is_read_through_spark_with_the_same_result(spark, data, monkeypatch):
    """A path that is not a local folder (hdfs://, s3a://: here file:// taken as remote): inputs are
    found through Hadoop's FileSystem, the side tables read by Spark, the same rows come out."""
    monkeypatch.setattr(engine, "_is_local", lambda path: False)
    ds = load_dataset(data)
    sd = engine.load(spark, "file://" + os.path.abspath(data))
    try:
        assert (sd.n_valid, sd.n_rows, sd.n_rejects) == (len(ds.interactions), ds.n_rows, 0)
        pd.testing.assert_frame_equal(sd.catalog.reset_index(drop=True), ds.catalog.reset_index(drop=True),
                                      check_dtype=False)
        assert len(sd.customers) == len(ds.customers) and len(sd.stock) == len(ds.stock)
        assert len(sd.fingerprint) == 64 and sd.fingerprint != ds.fingerprint  # metadata, not bytes
    finally:
        sd.rows.unpersist()


def test_a_folder_of_parquet_part_files_is_read_and_rejects_name_the_part_file_and_its_line(spark, data, tmp_path):
    """interactions.parquet as Spark writes it (a folder of part files, here each split over several
    partitions): every row is read, and a reject names its part file and its row in that file."""
    d = tmp_path / "parts"
    shutil.copytree(data, d)
    inter = pd.read_csv(d / "interactions.csv", dtype=str, keep_default_na=False)
    os.remove(d / "interactions.csv")
    half = len(inter) // 2
    inter.loc[5, "event"] = "teleport"  # part 0, row 6
    inter.loc[half + 7, "timestamp"] = "yesterday"  # part 1, row 8
    inter.loc[half + 9, "event_id"] = inter.loc[10, "event_id"]  # part 1, row 10: first in part 0, row 11
    (d / "interactions.parquet").mkdir()
    for i, part in enumerate((inter.iloc[:half], inter.iloc[half:])):
        part.to_parquet(d / "interactions.parquet" / f"part-{i:05d}.parquet", index=False, row_group_size=1000)
    path = str(tmp_path / "rejects.csv")
    spark.conf.set("spark.sql.files.maxPartitionBytes", "64k")
    try:
        sd = engine.load(spark, str(d), rejects_path=path)
    finally:
        spark.conf.unset("spark.sql.files.maxPartitionBytes")
    try:
        assert sd.rows.rdd.getNumPartitions() > 2
        assert (sd.n_rows, sd.n_valid, sd.n_rejects) == (len(inter), len(inter) - 3, 3)
        got = pd.read_csv(path, dtype=str, keep_default_na=False)
        p0, p1 = "interactions.parquet/part-00000.parquet", "interactions.parquet/part-00001.parquet"
        assert got[["file", "line", "field", "reason"]].values.tolist() == [
            [p0, "6", "event", f"unknown event (allowed: {', '.join(engine.EVENTS)})"],
            [p1, "8", "timestamp", "not ISO-8601 or integer epoch seconds"],
            [p1, "10", "event_id", f"duplicate event_id (first at {p0} line 11)"],
        ]
        assert got["value"].tolist() == ["teleport", "yesterday", inter.loc[10, "event_id"]]
    finally:
        sd.rows.unpersist()


def test_the_cli_passes_spark_master_and_spark_conf_to_the_session(data, tmp_path):
    models = str(tmp_path / "models")
    r = subprocess.run([sys.executable, "-m", "training", "-q", "fit", "--engine", "spark", "--no-evaluate",
                        "--data", data, "--models-dir", models, "--rejects", str(tmp_path / "rejects.csv"),
                        "--spark-master", "local[1]", "--spark-conf", "spark.default.parallelism=3",
                        "--spark-conf", "spark.driver.memory=1g"],
                       capture_output=True, text=True, timeout=600, check=False)
    assert r.returncode == 0, r.stderr
    with open(os.path.join(models, r.stdout.strip().splitlines()[-1], "manifest.json")) as f:
        man = json.load(f)
    assert (man["engine"], man["spark_master"], man["spark_default_parallelism"]) == ("spark", "local[1]", 3)


def test_a_malformed_spark_conf_is_refused_in_one_line(data, tmp_path):
    r = subprocess.run([sys.executable, "-m", "training", "fit", "--engine", "spark", "--data", data,
                        "--models-dir", str(tmp_path), "--spark-conf", "spark.executor.memory"],
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        "recsvc-train fit: error: --spark-conf expects KEY=VALUE, got 'spark.executor.memory'"]

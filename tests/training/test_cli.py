"""The `recsvc-train` contract (CONTRACT.md section 2): every command has --help, exits 0 on success
and non-zero with a one-line reason on error; `fit` prints the model id last; the registry commands
guard promotion; the generator is deterministic through the command line.

Commands run in-process through `training.__main__.main` (the console script's entry point); the
installed scripts themselves are started once each.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from recsvc.artifact.manifest import Manifest
from recsvc.artifact.registry import Registry
from training.__main__ import main, parser

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
SYNTH = ["--customers", "300", "--items", "120", "--stores", "3", "--events", "6000"]


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    """Run every command from a scratch folder: default rejects files land there, not in the repo."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> str:
    d = str(tmp_path_factory.mktemp("cli") / "data")
    assert main(["-q", "synth", "--out", d, *SYNTH, "--seed", "5"]) == 0
    return d


def run(argv: list[str], capsys) -> tuple[int, list[str], list[str]]:
    rc = main(["-q", *argv])
    cap = capsys.readouterr()
    return rc, cap.out.strip().splitlines(), cap.err.strip().splitlines()


def fails(argv: list[str], capsys) -> str:
    """Run a command that must fail; returns its one-line reason (the last stderr line)."""
    rc, _, err = run(argv, capsys)
    assert rc != 0, f"{argv} succeeded"
    assert err, "no reason printed"
    assert err[-1].startswith(f"recsvc-train {argv[0]}: error: "), err
    return err[-1]


def usage_error(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


def fit_ok(argv: list[str], capsys) -> str:
    rc, out, err = run(["fit", *argv], capsys)
    assert rc == 0, err
    return out[-1]


# ---------------------------------------------------------------- help and entry points
def command_paths() -> list[list[str]]:
    paths = [[]]

    def walk(p: argparse.ArgumentParser, prefix: list[str]) -> None:
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    paths.append(prefix + [name])
                    walk(sub, prefix + [name])

    walk(parser(), [])
    return paths


def test_the_help_test_covers_every_command():
    names = {" ".join(p) for p in command_paths()}
    assert {"synth", "convert", "fit", "evaluate", "recommend", "models", "models list", "models show",
            "models diff", "models promote", "models rollback"} <= names


@pytest.mark.parametrize("cmd", command_paths(), ids=lambda p: " ".join(p) or "recsvc-train")
def test_every_command_has_help(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main([*cmd, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: recsvc-train" + "".join(f" {c}" for c in cmd))


@pytest.mark.parametrize("how", ["script", "module"])
def test_the_installed_command_runs(how):
    script = os.path.join(os.path.dirname(sys.executable), "recsvc-train")
    cmd = [script] if how == "script" else [sys.executable, "-m", "training"]
    p = subprocess.run(cmd + ["fit", "--help"], capture_output=True, text=True, timeout=120, check=False)
    assert p.returncode == 0, p.stderr
    assert "--data" in p.stdout and "--learner" in p.stdout
    p = subprocess.run(cmd + ["fit", "--data", "/nonexistent/recsvc-data"], capture_output=True, text=True,
                       timeout=120, check=False)
    assert p.returncode == 1
    assert p.stderr.strip().splitlines()[-1] == \
        "recsvc-train fit: error: /nonexistent/recsvc-data: no such data directory"


# ---------------------------------------------------------------- generator and converters
def test_synth_is_deterministic_through_the_command_line(tmp_path, capsys):
    counts = []
    for name, seed in (("a", "7"), ("b", "7"), ("c", "8")):
        rc, out, _ = run(["synth", "--out", str(tmp_path / name), *SYNTH, "--seed", seed, "--format", "parquet"],
                         capsys)
        assert rc == 0
        counts.append(json.loads(out[-1]))
    assert counts[0] == counts[1] and counts[0]["interactions"] == 6000
    files = sorted(os.listdir(tmp_path / "a"))
    assert "interactions.parquet" in files and files == sorted(os.listdir(tmp_path / "b"))
    match, mismatch, errors = filecmp.cmpfiles(tmp_path / "a", tmp_path / "b", files, shallow=False)
    assert match == files and not mismatch and not errors
    assert not filecmp.cmp(tmp_path / "a" / "interactions.parquet", tmp_path / "c" / "interactions.parquet",
                           shallow=False)


@pytest.mark.parametrize("source, folder, counts", [
    ("movielens", "ml-tiny", {"interactions": 5, "items": 3, "customers": 3}),
    ("hm", "hm-tiny", {"interactions": 6, "items": 4, "units": 7, "customers": 3}),
])
def test_convert(tmp_path, capsys, source, folder, counts):
    rc, out, _ = run(["convert", source, os.path.join(FIXTURES, folder), "--out", str(tmp_path / "d")], capsys)
    assert rc == 0 and json.loads(out[-1]) == counts
    assert os.path.isfile(tmp_path / "d" / "interactions.csv")


def test_convert_names_the_missing_file(tmp_path, capsys):
    assert "no transactions.csv" in fails(["convert", "hm", str(tmp_path), "--out", str(tmp_path / "d")], capsys)


# ---------------------------------------------------------------- fit
def test_fit_prints_the_model_id_last_and_publishes_it(data, tmp_path, capsys):
    models = str(tmp_path / "models")
    mid = fit_ok(["--data", data, "--models-dir", models], capsys)
    assert mid.startswith("als-") and os.path.isfile(os.path.join(models, mid, "manifest.json"))
    rc, out, _ = run(["models", "list", "--models-dir", models], capsys)
    assert rc == 0 and any(line.startswith(mid) for line in out)
    rc, out, _ = run(["models", "show", mid, "--models-dir", models], capsys)
    assert rc == 0 and json.loads("\n".join(out))["model_id"] == mid


def test_models_dir_comes_from_the_environment(data, tmp_path, capsys, monkeypatch):
    models = str(tmp_path / "env-models")
    monkeypatch.setenv("RECSVC_MODELS_DIR", models)
    mid = fit_ok(["--data", data, "--learner", "popularity"], capsys)
    assert Registry(models).model_ids() == [mid]


def test_until_trains_on_the_past_only(data, tmp_path, capsys):
    models = str(tmp_path / "models")
    mid = fit_ok(["--data", data, "--models-dir", models, "--learner", "popularity", "--until", "2026-09-01"],
                 capsys)
    man = Manifest.read(os.path.join(models, mid))
    until = pd.Timestamp("2026-09-01", tz="UTC").timestamp()
    ts = pd.to_datetime(pd.read_csv(os.path.join(data, "interactions.csv"), usecols=["timestamp"])["timestamp"])
    assert man.data["trained_until"] < until
    assert man.data["counts"]["interactions"] == int((ts < pd.Timestamp("2026-09-01", tz="UTC")).sum()) < 6000


def test_fit_evaluates_under_the_exclusion_it_is_given(data, tmp_path, capsys):
    models = str(tmp_path / "models")
    mid = fit_ok(["--data", data, "--models-dir", models, "--learner", "popularity", "--exclude", "none"], capsys)
    met = Manifest.read(os.path.join(models, mid)).metrics
    assert met["exclude"] == "none" and met["split"]["holdout"] == "temporal"
    assert set(met["baselines"]) == {"popularity", "repurchase+popularity"}
    assert "invalid choice: 'all'" in usage_error(["fit", "--data", data, "--exclude", "all"], capsys)


def copy_data(src: str, dst: str, change) -> str:
    shutil.copytree(src, dst)
    path = os.path.join(dst, "interactions.csv")
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    change(df).to_csv(path, index=False)
    return dst


def test_missing_data_dir(tmp_path, capsys):
    reason = fails(["fit", "--data", str(tmp_path / "nope"), "--models-dir", str(tmp_path / "m")], capsys)
    assert reason.endswith("nope: no such data directory")


def test_missing_column(data, tmp_path, capsys):
    d = copy_data(data, str(tmp_path / "d"), lambda df: df.drop(columns=["channel"]))
    reason = fails(["fit", "--data", d, "--models-dir", str(tmp_path / "m")], capsys)
    assert "interactions.csv: missing required column 'channel'" in reason


def test_too_many_rejects(data, tmp_path, capsys):
    def spoil(df):
        df.loc[df.index % 10 == 0, "event"] = "teleport"  # 10% > the default 5%
        return df

    d = copy_data(data, str(tmp_path / "d"), spoil)
    reason = fails(["fit", "--data", d, "--models-dir", str(tmp_path / "m")], capsys)
    assert "600 of 6000 interaction rows rejected (10.0% > 5.0%)" in reason
    rejects = pd.read_csv(tmp_path / "rejects-d.csv", dtype=str)
    assert len(rejects) == 600 and set(rejects["field"]) == {"event"}
    assert Registry(str(tmp_path / "m")).model_ids() == []
    # the share is configurable
    assert fit_ok(["--data", d, "--models-dir", str(tmp_path / "m"), "--learner", "popularity",
                   "--max-reject-share", "0.2"], capsys).startswith("popularity-")


def test_unknown_learner(data, tmp_path, capsys):
    assert "invalid choice: 'nope'" in usage_error(["fit", "--data", data, "--learner", "nope"], capsys)
    cfg = tmp_path / "c.toml"
    cfg.write_text('learner = "nope"\n')
    assert "unknown learner 'nope'" in fails(["fit", "--data", data, "--config", str(cfg)], capsys)
    assert "unknown nope" in fails(["evaluate", "--data", data, "--holdout-fraction", "0.2",
                                    "--learners", "als,nope"], capsys)


def test_config_errors_name_the_key(data, tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[learners.als]\nfactorz = 8\n')
    assert "unknown parameter(s) factorz" in fails(["fit", "--data", data, "--config", str(cfg)], capsys)
    cfg.write_text('colour = "blue"\n')
    assert "unknown keys colour" in fails(["fit", "--data", data, "--config", str(cfg)], capsys)
    cfg.write_text('[evaluation]\nexclude = "all"\n')
    assert "evaluation.exclude must be one of" in fails(["fit", "--data", data, "--config", str(cfg)], capsys)


# ---------------------------------------------------------------- registry commands
def test_promotion_rollback_and_diff_through_the_command_line(data, tmp_path, capsys):
    m = ["--models-dir", str(tmp_path / "models")]
    reg = Registry(str(tmp_path / "models"))
    a = fit_ok(["--data", data, *m, "--alias", "champion"], capsys)
    assert reg.alias("champion") == a

    # a clearly worse model is published but the champion guard refuses it
    rc, out, err = run(["fit", "--data", data, *m, "--learner", "popularity", "--alias", "champion"], capsys)
    b = next(x for x in reg.model_ids() if x.startswith("popularity-"))
    ndcg = [Manifest.read(os.path.join(reg.models_dir, x)).metrics["overall"]["ndcg@10"] for x in (a, b)]
    assert ndcg[1] < 0.98 * ndcg[0]  # the premise: popularity is worse than ALS on this data
    assert rc == 3 and out == [] and len(err) == 1
    assert err[0].startswith("recsvc-train fit: published, but the champion alias was not moved: ")
    assert reg.alias("champion") == a

    assert f"worse than champion {a}" in fails(["models", "promote", b, *m], capsys)
    assert reg.alias("champion") == a
    rc, out, _ = run(["models", "promote", b, "--force", *m], capsys)
    assert rc == 0 and out == [f"champion -> {b} (was {a})"] and reg.alias("champion") == b

    rc, out, _ = run(["models", "rollback", *m], capsys)
    assert rc == 0 and out == [f"champion -> {a} (was {b})"] and reg.alias("champion") == a
    assert "nothing to roll back to" in fails(["models", "rollback", *m], capsys)

    rc, out, _ = run(["models", "diff", a, b, *m], capsys)
    d = json.loads("\n".join(out))
    assert rc == 0 and d["learner"] == ["als", "popularity"] and d["metrics.overall.ndcg@10"] == ndcg

    rc, out, _ = run(["models", "list", *m], capsys)
    row = next(line for line in out if line.startswith(a))
    assert row.split()[-1] == "champion"

    # a second alias is set without a guard
    c = fit_ok(["--data", data, *m, "--learner", "popularity", "--alias", "challenger"], capsys)
    assert reg.alias("challenger") == c and reg.alias("champion") == a


def test_unknown_model_or_alias(tmp_path, capsys):
    m = ["--models-dir", str(tmp_path / "models")]
    for argv in (["recommend", "--model", "nope", "--all", "--out", str(tmp_path / "r.csv"), *m],
                 ["models", "show", "nope", *m], ["models", "diff", "nope", "champion", *m],
                 ["models", "promote", "nope", *m]):
        assert "no model or alias 'nope'" in fails(argv, capsys)
    assert not os.path.exists(tmp_path / "r.csv")


# ---------------------------------------------------------------- recommend and evaluate
def test_recommend_for_listed_customers(data, tmp_path, capsys):
    models = str(tmp_path / "models")
    mid = fit_ok(["--data", data, "--models-dir", models], capsys)
    who = tmp_path / "who.csv"
    who.write_text("customer_id\nc000001\nsomeone-new\nc000001\n")
    out = str(tmp_path / "recs.csv")
    rc, lines, _ = run(["recommend", "--model", mid, "--models-dir", models, "--customers", str(who), "--n", "5",
                        "--channel", "store", "--out", out], capsys)
    assert rc == 0 and lines[-1] == out
    df = pd.read_csv(out, dtype={"customer_id": str, "item_id": str})
    assert list(df.columns) == ["customer_id", "rank", "item_id", "score"]
    assert df.groupby("customer_id")["rank"].apply(list).to_dict() == {"c000001": [1, 2, 3, 4, 5],
                                                                        "someone-new": [1, 2, 3, 4, 5]}
    assert not os.path.exists(out + ".tmp")
    assert "no such file" in fails(["recommend", "--model", mid, "--models-dir", models, "--customers",
                                    str(tmp_path / "missing.csv"), "--out", out], capsys)


def test_evaluate_writes_a_report(data, tmp_path, capsys):
    rep = tmp_path / "report"
    rc, out, err = run(["evaluate", "--data", data, "--holdout-fraction", "0.2", "--learners", "als,popularity",
                        "--k", "5", "--report", str(rep), "--exclude", "seen"], capsys)
    assert rc == 0, err
    assert out[0].endswith("history excluded from every list: seen")
    assert [line.split()[0] for line in out[2:6]] == ["als", "popularity-learner", "popularity", "repurchase+popularity"]
    assert {"report.json", "report.md", "report.html"} <= set(os.listdir(rep))
    assert any(f.endswith(".png") for f in os.listdir(rep))
    doc = json.loads((rep / "report.json").read_text())
    assert doc["k"] == 5 and {r["exclude"] for r in doc["results"].values()} == {"seen"}

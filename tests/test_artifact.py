"""The model artifact: write -> load round trip, refusal of anything damaged or foreign, atomic publish.

A publish killed half-way (SIGKILL in the middle of writing the arrays, or a failure at any step)
must leave the registry listing exactly what it listed before, with the aliases untouched; the next
publish clears the half-written folder.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from recsvc.artifact import FORMAT_VERSION, load_model, write_model
from recsvc.artifact.manifest import MANIFEST, Manifest
from recsvc.artifact.registry import Registry
from recsvc.artifact.write import TMP_PREFIX, sha256_file
from recsvc.errors import ArtifactError
from tests.modelkit import build_arrays, make_model

ROOT = Path(__file__).resolve().parent.parent


def manifest_for(model_id: str, kind: str = "factors") -> Manifest:
    return Manifest(model_id=model_id, learner="als", created_at="2026-11-23T10:00:00Z",
                    params={"factors": 8, "iterations": 15}, seed=3,
                    scoring={"kind": kind, "foldin": {"regularization": 0.1, "alpha": 1.0}, "event_weights": {}},
                    data={"fingerprint": "f" * 64, "counts": {"items": 60}},
                    metrics={"overall": {"ndcg@10": 0.25}, "per_channel": {"web": {"ndcg@10": 0.3}}})


def rewrite_manifest(model_dir: str, change) -> None:
    path = os.path.join(model_dir, MANIFEST)
    with open(path, encoding="utf-8") as f:
        d = json.load(f)
    change(d)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(d, f)


@pytest.fixture
def published(tmp_path):
    arrays = build_arrays(seed=4)
    path = write_model(str(tmp_path / "models"), manifest_for("als-20261123T100000Z-aaaaaa"), arrays,
                       extra_files={"evaluation.json": {"als": {"overall": {"ndcg@10": 0.25}}}})
    return path, arrays


# ---------------------------------------------------------------- round trip
def test_round_trip_keeps_every_array_and_the_manifest(published):
    path, arrays = published
    m = load_model(path)
    assert set(m.arrays) == set(arrays)
    for name, a in arrays.items():
        b = m.arrays[name]
        assert b.dtype == a.dtype and b.shape == a.shape, name
        np.testing.assert_array_equal(b, a, err_msg=name)
    man = m.manifest
    assert man.model_id == "als-20261123T100000Z-aaaaaa" and man.format_version == FORMAT_VERSION
    assert man.params == {"factors": 8, "iterations": 15} and man.seed == 3
    assert man.metrics["per_channel"]["web"]["ndcg@10"] == 0.3
    assert man.libraries["numpy"] == np.__version__


def test_every_file_is_listed_with_its_sha256_and_nothing_is_pickled(published):
    path, arrays = published
    man = Manifest.read(path)
    on_disk = sorted(f for f in os.listdir(path) if f != MANIFEST)
    assert sorted(man.files) == on_disk == sorted([f"{n}.npy" for n in arrays] + ["evaluation.json"])
    for fn, digest in man.files.items():
        assert sha256_file(os.path.join(path, fn)) == digest
        if fn.endswith(".npy"):
            a = np.load(os.path.join(path, fn), mmap_mode="r", allow_pickle=False)
            assert a.dtype != object
    with open(os.path.join(path, MANIFEST), "rb") as f:
        assert f.read(1) == b"{"


def test_loaded_arrays_are_read_only_memory_maps(published):
    path, _ = published
    m = load_model(path)
    f = m.arrays["item_factors"]
    assert not f.flags.writeable
    with pytest.raises(ValueError):
        f[0, 0] = 1.0


def test_only_the_item_factors_are_2d_float_per_item_on_disk(published):
    """Neighbour lists are stored flat and reshaped at load: a tool that finds a model's factors by
    shape (2-D float, one row per item) finds the item factors, whatever K and the factor count."""
    path, arrays = published
    n_items = len(arrays["item_ids"])
    per_item_2d = []
    for fn in os.listdir(path):
        if fn.endswith(".npy"):
            a = np.load(os.path.join(path, fn), mmap_mode="r", allow_pickle=False)
            if a.ndim == 2 and a.dtype.kind == "f" and a.shape[0] == n_items:
                per_item_2d.append(fn)
    assert per_item_2d == ["item_factors.npy"]
    flat = np.load(os.path.join(path, "neighbours.npy"), mmap_mode="r", allow_pickle=False)
    assert flat.shape == (arrays["neighbours"].size,)
    m = load_model(path)
    assert m.neighbours.shape == arrays["neighbours"].shape and not m.neighbours.flags.writeable


def test_an_artifact_with_2d_neighbour_files_still_loads(published):
    path, arrays = published
    for name in ("neighbours", "neighbour_scores"):
        np.save(os.path.join(path, f"{name}.npy"), arrays[name], allow_pickle=False)
    rewrite_manifest(path, lambda d: d["files"].update(
        {f"{n}.npy": sha256_file(os.path.join(path, f"{n}.npy")) for n in ("neighbours", "neighbour_scores")}))
    m = load_model(path)
    np.testing.assert_array_equal(m.neighbour_scores, arrays["neighbour_scores"])


def test_a_flat_neighbour_file_of_the_wrong_length_is_refused(published):
    path, arrays = published
    np.save(os.path.join(path, "neighbours.npy"), arrays["neighbours"].reshape(-1)[:-1], allow_pickle=False)
    rewrite_manifest(path, lambda d: d["files"].update(
        {"neighbours.npy": sha256_file(os.path.join(path, "neighbours.npy"))}))
    with pytest.raises(ArtifactError, match="not a whole number of lists"):
        load_model(path)


# ---------------------------------------------------------------- refusals on load
def test_a_corrupt_file_is_refused_by_its_checksum(published):
    path, _ = published
    fp = os.path.join(path, "item_factors.npy")
    with open(fp, "r+b") as f:
        f.seek(-1, os.SEEK_END)
        last = f.read(1)
        f.seek(-1, os.SEEK_END)
        f.write(bytes([last[0] ^ 0xFF]))
    with pytest.raises(ArtifactError, match="checksum of item_factors.npy"):
        load_model(path)


def test_a_missing_listed_file_is_refused(published):
    path, _ = published
    os.unlink(os.path.join(path, "customer_ids.npy"))
    with pytest.raises(ArtifactError, match="customer_ids.npy listed in the manifest is missing"):
        load_model(path)


def test_a_missing_required_array_is_refused(published):
    path, _ = published
    os.unlink(os.path.join(path, "pop_global.npy"))
    rewrite_manifest(path, lambda d: d["files"].pop("pop_global.npy"))
    with pytest.raises(ArtifactError, match="missing arrays pop_global"):
        load_model(path)


def test_factors_without_item_factors_are_refused(published):
    path, _ = published
    os.unlink(os.path.join(path, "item_factors.npy"))
    rewrite_manifest(path, lambda d: d["files"].pop("item_factors.npy"))
    with pytest.raises(ArtifactError, match="scoring kind factors needs item_factors"):
        load_model(path)


@pytest.mark.parametrize("version", [FORMAT_VERSION + 1, 0, None, "1"])
def test_another_format_version_is_refused(published, version):
    path, _ = published
    rewrite_manifest(path, lambda d: d.update(format_version=version))
    with pytest.raises(ArtifactError, match="format_version"):
        load_model(path)


def test_a_pickled_array_is_refused_even_with_a_matching_checksum(published):
    path, _ = published
    fp = os.path.join(path, "item_title.npy")
    np.save(fp, np.array(["a", 1, None], dtype=object), allow_pickle=True)
    rewrite_manifest(path, lambda d: d["files"].update({"item_title.npy": sha256_file(fp)}))
    # never unpickled; read.py's zero-size fallback re-raises numpy's own ValueError instead of an
    # ArtifactError (reported: wrap that np.load like the first one)
    with pytest.raises((ArtifactError, ValueError), match="item_title.npy is not a loadable array|allow_pickle=False"):
        load_model(path)


def test_a_wrongly_typed_array_is_refused(published):
    path, _ = published
    fp = os.path.join(path, "hist_indptr.npy")
    np.save(fp, np.zeros(41, np.float64))
    rewrite_manifest(path, lambda d: d["files"].update({"hist_indptr.npy": sha256_file(fp)}))
    with pytest.raises(ArtifactError, match="array hist_indptr has dtype float64"):
        load_model(path)


def test_a_manifest_that_is_not_json_is_refused(published):
    path, _ = published
    with open(os.path.join(path, MANIFEST), "w") as f:
        f.write("{not json")
    with pytest.raises(ArtifactError, match="unreadable"):
        load_model(path)


# ---------------------------------------------------------------- refusals on write
@pytest.mark.parametrize("damage, match", [
    (lambda a: a.pop("pop_global"), "model arrays missing: pop_global"),
    (lambda a: a.update(item_factors=np.full((60, 8), np.nan, np.float32)), "NaN or infinity"),
    (lambda a: a.update(item_ids=a["item_ids"][::-1].copy()), "item_ids must be sorted and unique"),
    (lambda a: a.update(item_price=np.ones(59, np.float32)), "item_price has 59 rows for 60 items"),
    (lambda a: a.update(item_title=np.array(["x"] * 60, dtype=object)), "array item_title"),
    (lambda a: a.update(surprise=np.zeros(3)), "unknown model array 'surprise'"),
])
def test_write_refuses_arrays_serving_could_not_use(tmp_path, damage, match):
    arrays = build_arrays()
    damage(arrays)
    models = str(tmp_path / "models")
    os.makedirs(models)
    with pytest.raises(ArtifactError, match=match):
        write_model(models, manifest_for("als-20261123T100000Z-bbbbbb"), arrays)
    assert Registry(models).model_ids() == []
    assert not any(n.startswith(TMP_PREFIX) for n in os.listdir(models))


def test_model_ids_are_immutable(published):
    path, arrays = published
    with pytest.raises(ArtifactError, match="already exists"):
        write_model(os.path.dirname(path), manifest_for(os.path.basename(path)), arrays)


# ---------------------------------------------------------------- atomic publish
def registry_state(models: str) -> tuple[list[str], dict[str, str], dict[str, bytes]]:
    """(model ids, aliases, bytes of every file under aliases/)."""
    reg = Registry(models)
    d = os.path.join(models, "aliases")
    files = {n: Path(d, n).read_bytes() for n in sorted(os.listdir(d))} if os.path.isdir(d) else {}
    return reg.model_ids(), reg.aliases(), files


@pytest.fixture
def registry(tmp_path):
    """Two models, champion moved once (so it has a history), challenger set."""
    models = str(tmp_path / "models")
    a = make_model(models, seed=1)
    b = make_model(models, seed=2)
    Registry(models).set_alias("challenger", a)
    assert Registry(models).alias("champion") == b
    return models


CHILD = """
import os, sys, time
import numpy as np
from recsvc.artifact import write as w
from recsvc.artifact.manifest import Manifest
from tests.modelkit import build_arrays

models, marker = sys.argv[1], sys.argv[2]
real_save, saved = np.save, []

def save_then_stall(f, a, allow_pickle=False):
    real_save(f, a, allow_pickle=allow_pickle)
    saved.append(1)
    if len(saved) == 5:  # a few arrays on disk, the rest (and the manifest) not yet
        f.flush()
        open(marker, "w").close()
        time.sleep(300)

np.save = save_then_stall
man = Manifest(model_id="als-20261123T110000Z-cccccc", learner="als", created_at="2026-11-23T11:00:00Z",
               params={}, seed=0, scoring={"kind": "factors"})
w.write_model(models, man, build_arrays(seed=9))
"""


def test_a_publish_killed_mid_write_leaves_the_registry_as_it_was(registry, tmp_path):
    before = registry_state(registry)
    marker = str(tmp_path / "writing")
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    child = subprocess.Popen([sys.executable, "-c", CHILD, registry, marker], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not os.path.exists(marker):
            assert child.poll() is None, child.stderr.read().decode()
            assert time.monotonic() < deadline, "the publishing child never started writing"
            time.sleep(0.02)
        temp = [n for n in os.listdir(registry) if n.startswith(TMP_PREFIX)]
        assert len(temp) == 1 and temp[0].endswith(f"-{child.pid}")
        assert len([f for f in os.listdir(os.path.join(registry, temp[0])) if f.endswith(".npy")]) == 5
    finally:
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL

    assert registry_state(registry) == before  # listing, aliases and alias history unchanged
    assert "als-20261123T110000Z-cccccc" not in os.listdir(registry)
    assert Registry(registry).resolve("champion") == os.path.join(registry, before[1]["champion"])
    load_model(Registry(registry).resolve("champion"))  # the champion still serves

    # the next publish clears the dead publisher's folder and succeeds
    reg = Registry(registry)
    reg.clean_temp()
    write_model(registry, manifest_for("als-20261123T110000Z-cccccc"), build_arrays(seed=9))
    assert not any(n.startswith(TMP_PREFIX) for n in os.listdir(registry))
    assert "als-20261123T110000Z-cccccc" in reg.model_ids()


@pytest.mark.parametrize("fail_at", ["save", "checksum", "manifest", "verify", "rename"])
def test_a_publish_failing_at_any_step_leaves_nothing_behind(registry, monkeypatch, fail_at):
    from recsvc.artifact import read as read_mod
    from recsvc.artifact import write as write_mod

    before = registry_state(registry)
    calls = []

    def failing(real, after: int):
        def f(*args, **kw):
            calls.append(1)
            if len(calls) > after:
                raise OSError(f"disk full (simulated at {fail_at})")
            return real(*args, **kw)
        return f

    if fail_at == "save":
        monkeypatch.setattr(write_mod.np, "save", failing(np.save, 3))
    elif fail_at == "checksum":
        monkeypatch.setattr(write_mod, "sha256_file", failing(write_mod.sha256_file, 6))
    elif fail_at == "manifest":
        monkeypatch.setattr(write_mod.json, "dump", failing(json.dump, 1))  # evaluation.json, then the manifest
    elif fail_at == "verify":
        monkeypatch.setattr(read_mod, "load_model", failing(read_mod.load_model, 0))
    else:
        monkeypatch.setattr(write_mod.os, "rename", failing(os.rename, 0))
    with pytest.raises(OSError, match="simulated"):
        write_model(registry, manifest_for("als-20261123T120000Z-dddddd"), build_arrays(seed=5),
                    extra_files={"evaluation.json": {}})
    monkeypatch.undo()
    assert calls, "the failure was never reached"
    assert registry_state(registry) == before
    assert sorted(os.listdir(registry)) == sorted(before[0] + ["aliases"])


def test_clean_temp_keeps_a_live_publishers_folder_and_removes_dead_ones(registry):
    live = os.path.join(registry, f"{TMP_PREFIX}als-x-{os.getpid()}")
    dead_pid = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True).stdout.strip()
    dead = os.path.join(registry, f"{TMP_PREFIX}als-y-{dead_pid}")
    odd = os.path.join(registry, f"{TMP_PREFIX}als-z-notapid")
    for d in (live, dead, odd):
        os.makedirs(d)
        with open(os.path.join(d, "item_ids.npy"), "wb") as f:
            f.write(b"half")
    before = Registry(registry).model_ids()
    assert before == sorted(before) and len(before) == 2  # temp folders are never listed
    Registry(registry).clean_temp()
    assert os.path.isdir(live) and not os.path.exists(dead) and not os.path.exists(odd)

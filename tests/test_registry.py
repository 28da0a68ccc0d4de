"""The registry: resolving ids, aliases and paths; promotion guarded overall and per channel; rollback;
diff; aliases replaced atomically."""

from __future__ import annotations

import datetime as dt
import os
import threading

import pytest

from recsvc.artifact.registry import Registry, compare_metrics, diff_manifests
from recsvc.errors import PromotionRefused, RegistryError
from tests.modelkit import make_model

T0 = dt.datetime(2026, 11, 1, 10, 0, tzinfo=dt.UTC)


def metrics(overall: float, **channels: float) -> dict:
    return {"k": 10, "overall": {"ndcg@10": overall, "precision@10": overall / 2},
            "per_channel": {ch: {"ndcg@10": v} for ch, v in channels.items()}}


@pytest.fixture
def reg(tmp_path):
    """A champion with ndcg 0.30 overall, 0.32 on web and 0.20 in store."""
    models = str(tmp_path / "models")
    champ = make_model(models, when=T0, seed=1, metrics=metrics(0.30, web=0.32, store=0.20))
    r = Registry(models)
    assert r.alias("champion") == champ
    return r


def candidate(reg: Registry, minutes: int, m: dict, **kw) -> str:
    return make_model(reg.models_dir, alias=None, when=T0 + dt.timedelta(minutes=minutes), seed=minutes,
                      metrics=m, **kw)


# ---------------------------------------------------------------- promotion
def test_better_everywhere_is_promoted_and_the_old_champion_kept_for_rollback(reg):
    old = reg.alias("champion")
    new = candidate(reg, 1, metrics(0.35, web=0.36, store=0.25))
    v = reg.promote(new)
    assert v == {"model_id": new, "previous": old, "regressions": []}
    assert reg.alias("champion") == new


def test_worse_overall_beyond_the_tolerance_is_refused(reg):
    old = reg.alias("champion")
    new = candidate(reg, 1, metrics(0.28, web=0.33, store=0.21))  # -6.7% overall
    with pytest.raises(PromotionRefused, match=r"overall 0\.3000 -> 0\.2800") as e:
        reg.promote(new, tolerance=0.02)
    assert "--force" in e.value.message
    assert reg.alias("champion") == old


def test_worse_on_one_channel_is_refused_even_when_better_overall(reg):
    old = reg.alias("champion")
    new = candidate(reg, 1, metrics(0.40, web=0.45, store=0.15))  # store -25%
    with pytest.raises(PromotionRefused, match="channel store") as e:
        reg.promote(new)
    assert [d["where"] for d in e.value.details] == ["channel store"]
    assert reg.alias("champion") == old


def test_a_drop_within_the_tolerance_is_promoted(reg):
    new = candidate(reg, 1, metrics(0.297, web=0.317, store=0.197))  # -1%, -0.9%, -1.5%
    reg.promote(new, tolerance=0.02)
    assert reg.alias("champion") == new


def test_the_tolerance_is_configurable(reg):
    new = candidate(reg, 1, metrics(0.297, web=0.317, store=0.197))
    with pytest.raises(PromotionRefused):
        reg.promote(new, tolerance=0.0)
    reg.promote(new, tolerance=0.05)
    assert reg.alias("champion") == new


def test_force_promotes_and_reports_what_regressed(reg):
    new = candidate(reg, 1, metrics(0.10, web=0.10, store=0.10))
    v = reg.promote(new, force=True)
    assert reg.alias("champion") == new
    assert sorted(r["where"] for r in v["regressions"]) == ["channel store", "channel web", "overall"]


def test_the_metric_is_chosen(reg):
    # better ndcg, worse precision: refused on precision only
    new = candidate(reg, 1, {"overall": {"ndcg@10": 0.40, "precision@10": 0.05}, "per_channel": {}})
    reg.promote(new, metric="ndcg")
    reg.rollback()
    with pytest.raises(PromotionRefused, match="precision"):
        reg.promote(new, metric="precision")


def test_the_first_model_needs_no_guard(tmp_path):
    models = str(tmp_path / "m")
    mid = make_model(models, alias=None, metrics=metrics(0.01))
    r = Registry(models)
    assert r.promote(mid) == {"model_id": mid, "previous": None, "regressions": []}
    assert r.alias("champion") == mid


def test_compare_metrics_ignores_channels_only_one_side_was_evaluated_on():
    champ = metrics(0.3, web=0.3, call_center=0.5)
    cand = metrics(0.3, web=0.3, store=0.01)
    assert compare_metrics(champ, cand, "ndcg", 0.02) == []


# ---------------------------------------------------------------- rollback
def test_rollback_restores_the_previous_champion_step_by_step(reg):
    a = reg.alias("champion")
    b = candidate(reg, 1, metrics(0.31, web=0.33, store=0.21))
    c = candidate(reg, 2, metrics(0.32, web=0.34, store=0.22))
    reg.promote(b)
    reg.promote(c)
    assert reg.rollback() == (c, b)
    assert reg.alias("champion") == b
    assert reg.rollback() == (b, a)
    assert reg.alias("champion") == a
    with pytest.raises(RegistryError, match="nothing to roll back to"):
        reg.rollback()


def test_rollback_skips_models_that_were_deleted(reg):
    import shutil

    a = reg.alias("champion")
    b = candidate(reg, 1, metrics(0.31, web=0.33, store=0.21))
    c = candidate(reg, 2, metrics(0.32, web=0.34, store=0.22))
    reg.promote(b)
    reg.promote(c)
    shutil.rmtree(os.path.join(reg.models_dir, b))
    assert reg.rollback() == (c, a)


def test_rollback_of_an_alias_never_moved_is_refused(reg):
    with pytest.raises(RegistryError, match="challenger has no earlier model"):
        reg.rollback("challenger")


# ---------------------------------------------------------------- diff, resolve, listing
def test_diff_shows_what_differs_and_nothing_else(reg):
    a = reg.alias("champion")
    b = candidate(reg, 1, metrics(0.35, web=0.32, store=0.25), learner="bpr")
    d = diff_manifests(reg.manifest(a), reg.manifest(b))
    assert d["learner"] == ["als", "bpr"]
    assert d["metrics.overall.ndcg@10"] == [0.30, 0.35]
    assert d["metrics.per_channel.store.ndcg@10"] == [0.20, 0.25]
    assert "metrics.per_channel.web.ndcg@10" not in d  # equal on web
    assert diff_manifests(reg.manifest(a), reg.manifest(a)) == {}


def test_resolve_takes_an_id_an_alias_or_a_path(reg, monkeypatch):
    mid = reg.alias("champion")
    folder = os.path.join(reg.models_dir, mid)
    assert reg.resolve(mid) == folder
    assert reg.resolve("champion") == folder
    assert reg.resolve(folder) == os.path.abspath(folder)
    monkeypatch.chdir(reg.models_dir)
    assert reg.resolve(f"./{mid}") == os.path.abspath(folder)
    for ref in ("nope", "challenger", ""):
        with pytest.raises(RegistryError):
            reg.resolve(ref)


def test_an_alias_pointing_at_a_missing_model_is_an_error(reg):
    with open(reg.alias_path("challenger"), "w") as f:
        f.write("als-20990101T000000Z-000000\n")
    with pytest.raises(RegistryError, match="alias 'challenger' points to als-20990101T000000Z-000000"):
        reg.resolve("challenger")


def test_setting_an_alias_to_an_unknown_model_is_refused(reg):
    with pytest.raises(RegistryError, match="no model 'nope'"):
        reg.set_alias("challenger", "nope")
    assert reg.alias("challenger") is None


def test_listing_ignores_aliases_temp_folders_and_strays(reg):
    os.makedirs(os.path.join(reg.models_dir, ".tmp-als-x-1"))
    os.makedirs(os.path.join(reg.models_dir, "not-a-model"))
    assert reg.model_ids() == [reg.alias("champion")]
    assert reg.aliases() == {"champion": reg.alias("champion")}


# ---------------------------------------------------------------- atomic alias replacement
def test_alias_readers_only_ever_see_a_whole_model_id(reg):
    a = reg.alias("champion")
    b = candidate(reg, 1, metrics(0.30, web=0.32, store=0.20))
    seen: set[str] = set()
    stop = threading.Event()

    def read():
        while not stop.is_set():
            with open(reg.alias_path("champion"), encoding="utf-8") as f:
                seen.add(f.read())

    readers = [threading.Thread(target=read) for _ in range(2)]
    for t in readers:
        t.start()
    try:
        for k in range(200):
            reg.set_alias("champion", b if k % 2 == 0 else a)
    finally:
        stop.set()
        for t in readers:
            t.join()
    assert seen <= {a + "\n", b + "\n"} and len(seen) == 2
    assert [n for n in os.listdir(os.path.dirname(reg.alias_path("champion"))) if n.startswith(".")] == []


def test_a_failed_alias_write_leaves_the_old_alias_and_no_temp_file(reg, monkeypatch):
    a = reg.alias("champion")
    b = candidate(reg, 1, metrics(0.35, web=0.36, store=0.25))

    def no_replace(src, dst):
        raise OSError("simulated crash before the rename")

    monkeypatch.setattr(os, "replace", no_replace)
    with pytest.raises(OSError, match="simulated"):
        reg.promote(b)
    monkeypatch.undo()
    assert reg.alias("champion") == a
    assert [n for n in os.listdir(os.path.dirname(reg.alias_path("champion"))) if n.startswith(".")] == []

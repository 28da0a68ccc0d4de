"""The model holder keeps the models experiment variants ask for beside the served one: loaded once,
shared when a ref designates the served model, following a moved alias, refusing a broken one."""

from __future__ import annotations

import datetime as dt
import os

from recsvc.artifact.registry import Registry
from recsvc.model_holder import ModelHolder
from tests.modelkit import make_model


def later(models_dir: str, seed: int, alias: str | None = None) -> str:
    when = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(hours=seed)
    return make_model(models_dir, alias=alias, when=when, seed=seed, learner="bpr")


def test_variant_models_are_kept_shared_followed_and_guarded(models_dir):
    holder = ModelHolder(models_dir, "champion", poll_s=1.0)
    holder.start()
    champion = holder.model
    challenger = later(models_dir, 1, alias="challenger")
    errors = holder.keep(["challenger", champion.model_id, "champion", "no-such-model"])
    assert list(errors) == ["no-such-model"]
    assert holder.model_for("challenger").model_id == challenger
    assert holder.model_for(champion.model_id) is champion and holder.model_for("champion") is champion
    assert holder.model_for(None) is champion and holder.model_for("no-such-model") is None
    kept = holder.model_for("challenger")
    holder.keep(["challenger"])
    assert holder.model_for("challenger") is kept  # loaded once

    moved = later(models_dir, 2)
    Registry(models_dir).set_alias("challenger", moved)
    holder.poll(1e9)
    assert holder.model_for("challenger").model_id == moved

    broken = later(models_dir, 3)
    with open(os.path.join(models_dir, broken, "item_factors.npy"), "r+b") as f:
        f.seek(-4, os.SEEK_END)
        f.write(b"\x00\x01\x02\x03")
    Registry(models_dir).set_alias("challenger", broken)
    holder.poll(1e9 + 10)
    assert holder.model_for("challenger").model_id == moved  # refused: the previous one keeps serving

    holder.keep([])
    assert holder.model_for("challenger") is None

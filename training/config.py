"""TrainConfig: defaults, overridden by a TOML file (`--config`), overridden by flags.

Example file:

    seed = 0
    learner = "als"
    [learners.als]          # any learner parameter (see `recsvc-train fit --help`)
    factors = 64
    [weights]
    half_life_days = 90
    channel_balance = 1.0
    [weights.event_weights]
    purchase = 8
    [evaluation]
    k = 10
    holdout = "temporal"    # temporal | random
    test_fraction = 0.1     # share of the time span (temporal) or of each customer's rows (random)
    exclude = "purchased"   # seen | purchased | none: what the evaluated lists may not re-offer
    [validation]
    max_reject_share = 0.05
    [promotion]
    metric = "ndcg"
    tolerance = 0.02
    [ann]                   # approximate search index for large catalogues (factor models)
    min_items = 200000      # build (and serve through) an HNSW index from this many items
    m = 32                  # graph degree; ef_construction / ef_search: build / query beam widths
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, replace
from typing import Any

from recsvc.core import ann as ann_
from recsvc.core.types import EXCLUDE_MODES
from training.errors import ConfigError
from training.weighting import DEFAULT_EVENT_WEIGHTS, WeightConfig

DEFAULT_LEARNER = "als"
RELEVANT_EVENTS = ("purchase", "add_to_cart", "offer_accepted", "rating")


@dataclass(frozen=True)
class EvalConfig:
    k: int = 10
    holdout: str = "temporal"  # temporal | random
    test_fraction: float = 0.1
    cutoff: float | None = None  # epoch seconds; overrides test_fraction for a temporal split
    max_customers: int | None = 10000
    bootstrap: int = 200
    relevant_events: tuple[str, ...] = RELEVANT_EVENTS
    final_iterations: int = 3  # sweeps over all data after the evaluation fit (warm-start learners)
    # history the evaluated lists may not hold, for the model and both baselines alike: the
    # `--exclude` the lists will be served with (seen | purchased | none; CONTRACT default purchased)
    exclude: str = "purchased"

    def __post_init__(self) -> None:
        if self.exclude not in EXCLUDE_MODES:
            raise ConfigError(f"evaluation.exclude must be one of {', '.join(EXCLUDE_MODES)}, got {self.exclude!r}")


@dataclass(frozen=True)
class AnnConfig:
    """The approximate index shipped with factor models of at least `min_items` items."""

    min_items: int = ann_.DEFAULT_MIN_ITEMS
    m: int = ann_.DEFAULT_M
    ef_construction: int = ann_.DEFAULT_EF_CONSTRUCTION
    ef_search: int = ann_.DEFAULT_EF_SEARCH

    def __post_init__(self) -> None:
        for k in ("min_items", "m", "ef_construction", "ef_search"):
            v = getattr(self, k)
            if not isinstance(v, int) or isinstance(v, bool) or v < (0 if k == "min_items" else 1):
                raise ConfigError(f"ann.{k} must be a positive integer, got {v!r}")


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    learner: str = DEFAULT_LEARNER
    learner_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    weights: WeightConfig = field(default_factory=WeightConfig)
    evaluation: EvalConfig = field(default_factory=EvalConfig)
    max_reject_share: float = 0.05
    promotion_metric: str = "ndcg"
    promotion_tolerance: float = 0.02
    popularity_half_life_days: float = 30.0
    popularity_top: int = 200
    ann: AnnConfig = field(default_factory=AnnConfig)

    def params_for(self, learner: str) -> dict[str, Any]:
        return dict(self.learner_params.get(learner, {}))


def _section(d: dict, name: str) -> dict:
    v = d.get(name, {})
    if not isinstance(v, dict):
        raise ConfigError(f"config: [{name}] must be a table")
    return v


def load_config(path: str | None) -> TrainConfig:
    """Read a TOML config file (None: defaults). Unknown keys are errors: a typo must not pass."""
    cfg = TrainConfig()
    if not path:
        return cfg
    try:
        with open(path, "rb") as f:
            d = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path}: {e}") from None
    known = {"seed", "learner", "learners", "weights", "evaluation", "validation", "promotion", "popularity", "ann"}
    extra = sorted(set(d) - known)
    if extra:
        raise ConfigError(f"config file {path}: unknown keys {', '.join(extra)} (known: {', '.join(sorted(known))})")
    try:
        w = _section(d, "weights")
        ew = {**DEFAULT_EVENT_WEIGHTS, **_section(w, "event_weights")}
        wc = WeightConfig(event_weights=ew, **{k: v for k, v in w.items() if k != "event_weights"})
        ev = _section(d, "evaluation")
        if "relevant_events" in ev:
            ev = {**ev, "relevant_events": tuple(ev["relevant_events"])}
        val, pro, pop = _section(d, "validation"), _section(d, "promotion"), _section(d, "popularity")
        cfg = TrainConfig(
            seed=int(d.get("seed", 0)), learner=str(d.get("learner", DEFAULT_LEARNER)),
            learner_params={k: dict(v) for k, v in _section(d, "learners").items()},
            weights=wc, evaluation=EvalConfig(**ev),
            max_reject_share=float(val.get("max_reject_share", cfg.max_reject_share)),
            promotion_metric=str(pro.get("metric", cfg.promotion_metric)),
            promotion_tolerance=float(pro.get("tolerance", cfg.promotion_tolerance)),
            popularity_half_life_days=float(pop.get("half_life_days", cfg.popularity_half_life_days)),
            popularity_top=int(pop.get("top", cfg.popularity_top)),
            ann=AnnConfig(**_section(d, "ann")),
        )
    except TypeError as e:
        raise ConfigError(f"config file {path}: {e}") from None
    return cfg


def with_overrides(cfg: TrainConfig, **kw: Any) -> TrainConfig:
    """Apply command-line flags (None = not given)."""
    kw = {k: v for k, v in kw.items() if v is not None}
    ev = {k[5:]: kw.pop(k) for k in list(kw) if k.startswith("eval_")}
    if ev:
        cfg = replace(cfg, evaluation=replace(cfg.evaluation, **ev))
    return replace(cfg, **kw) if kw else cfg


def models_dir(flag: str | None) -> str:
    return flag or os.environ.get("RECSVC_MODELS_DIR") or "models"

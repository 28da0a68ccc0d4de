"""fit: read -> validate -> weight -> matrix -> split -> train -> evaluate -> publish, one log line a stage."""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Self

import numpy as np
import scipy.sparse as sp

from recsvc.artifact.manifest import PURCHASED, RETURNED, SEEN
from recsvc.artifact.registry import CHAMPION, Registry
from recsvc.artifact.write import write_model
from recsvc.core.types import EXCLUDE_MODES
from training import evaluate as ev
from training.config import TrainConfig
from training.errors import ConfigError, DataError
from training.export import build_artifact, data_arrays
from training.io import Dataset, load_dataset
from training.learners.base import Factors, get_learner
from training.matrix import InteractionMatrix, build_matrix, index_rows
from training.popularity import global_popularity
from training.split import default_cutoff, per_customer_random_split, temporal_split
from training.weighting import event_weights

log = logging.getLogger("recsvc.training")
BASELINES = ("popularity", "repurchase+popularity")


@dataclass
class Stages:
    """Times each stage and logs one line per stage."""

    times: dict[str, float] = field(default_factory=dict)
    _t: float = field(default_factory=time.perf_counter)
    _cpu: float = field(default_factory=time.process_time)

    def done(self, name: str, detail: str = "") -> None:
        now, cpu = time.perf_counter(), time.process_time()
        self.times[name] = round(now - self._t, 3)
        log.info("stage %-10s %6.2fs (cpu %6.2fs) %s", name, now - self._t, cpu - self._cpu, detail)
        self._t, self._cpu = now, cpu


@dataclass
class Prepared:
    ds: Dataset
    weights: np.ndarray
    full: InteractionMatrix
    now: float


def prepare(data_dir: str, cfg: TrainConfig, stages: Stages, rejects_path: str | None = None,
            until: float | None = None, progress: bool = False) -> Prepared:
    ds = load_dataset(data_dir, rejects_path=rejects_path, max_reject_share=cfg.max_reject_share,
                      until=until, progress=progress)
    if len(ds.interactions) == 0:
        raise DataError(f"{data_dir}: no valid interactions to train on")
    stages.done("read", f"{len(ds.interactions)} interactions, {len(ds.catalog)} items, {ds.n_rejects} rejects"
                + (f" (see {ds.rejects_path})" if ds.rejects_path else ""))
    now = float(ds.interactions["ts"].max())  # the data's own clock: the same data gives the same model
    with ThreadPoolExecutor(max_workers=1) as side:  # the weights and the row index are independent
        weights = side.submit(event_weights, ds.interactions, cfg.weights, now)
        index = index_rows(ds)
        w = weights.result()
    full = build_matrix(ds, w, base=index)
    stages.done("weight", f"{full.confidence.shape[0]} customers x {full.confidence.shape[1]} items, "
                          f"nnz {full.confidence.nnz}")
    return Prepared(ds, w, full, now)


@dataclass
class Split:
    train: InteractionMatrix
    test_rows: np.ndarray  # bool over interaction rows: held out
    describe: dict


def split(p: Prepared, cfg: TrainConfig) -> Split:
    e = cfg.evaluation
    ts = p.ds.interactions["ts"].to_numpy()
    if e.holdout == "random":
        test = per_customer_random_split(p.full.cust_row, e.test_fraction, cfg.seed)
        describe = {"holdout": "random", "fraction": e.test_fraction, "seed": cfg.seed}
    else:
        cutoff = e.cutoff if e.cutoff is not None else default_cutoff(ts, e.test_fraction)
        test = temporal_split(ts, cutoff)
        describe = {"holdout": "temporal", "cutoff": cutoff}
    train = build_matrix(p.ds, p.weights, rows=~test, base=p.full)
    describe.update(train_rows=int((~test).sum()), test_rows=int(test.sum()))
    return Split(train, test, describe)


def truth(p: Prepared, s: Split, cfg: TrainConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Held-out relevant interactions (customer row, item row, channel)."""
    inter = p.ds.interactions
    rel = s.test_rows & inter["event"].isin(cfg.evaluation.relevant_events).to_numpy()
    if not rel.any():
        rel = s.test_rows & (p.weights > 0)
    rel &= (p.full.cust_row >= 0) & (p.full.item_col >= 0)
    return p.full.cust_row[rel], p.full.item_col[rel], channel_names(inter, rel)


def channel_names(inter, rows: np.ndarray) -> np.ndarray:
    """The channel of the interaction rows `rows` (bool mask) as a str array, read through the
    categorical's codes (a 10M-row object-array detour costs seconds)."""
    ch = inter["channel"]
    if hasattr(ch, "cat"):
        return np.asarray(ch.cat.categories, dtype=str)[ch.cat.codes.to_numpy()[rows]]
    return ch.to_numpy()[rows].astype(str)


def _exclusion(m: InteractionMatrix, mode: str) -> sp.csr_matrix | None:
    """Per customer, the training-history items the ranking never returns under `mode`: the same bits
    as `recsvc.core.eligibility.history_exclusions` (purchased: bought or returned; seen: any positive
    interaction too; none: nothing), so offline figures measure what serving will show."""
    if mode not in EXCLUDE_MODES:
        raise ConfigError(f"exclude must be one of {', '.join(EXCLUDE_MODES)}, got {mode!r}")
    if mode == "none":
        return None
    f = sp.csr_matrix(m.flags).tocoo()
    bits = (SEEN | PURCHASED | RETURNED) if mode == "seen" else (PURCHASED | RETURNED)
    keep = (f.data & bits) != 0
    return sp.csr_matrix((np.ones(int(keep.sum()), np.float32), (f.row[keep], f.col[keep])), shape=f.shape)


def evaluate_factors(p: Prepared, s: Split, f: Factors | None, cfg: TrainConfig, learner: str | None,
                     baselines: bool = True, exclude_mode: str | None = None,
                     extra: dict[str, Factors] | None = None) -> dict[str, dict]:
    """{name: evaluate() result} for the model(s) and the two baselines, on one split.

    Every list (models and baselines) obeys the same history exclusion, `exclude_mode` (default: the
    config's `evaluation.exclude`), the one serving will apply: a baseline allowed to re-offer what
    the model may not would measure the rule, not the model."""
    e = cfg.evaluation
    exclude_mode = exclude_mode or e.exclude
    tc, ti, tch = truth(p, s, cfg)
    if len(tc) == 0:
        return {}
    n_items = p.full.confidence.shape[1]
    ex = _exclusion(s.train, exclude_mode)
    inter = p.ds.interactions
    train_rows = ~s.test_rows & (p.full.cust_row >= 0)
    groups = ev.customer_groups(p.full.cust_row[train_rows], channel_names(inter, train_rows),
                                len(p.full.customer_ids))
    ok = train_rows & (p.full.item_col >= 0)
    pop = global_popularity(p.full.item_col[ok], n_items, weights=p.weights[ok],
                            ts=inter["ts"].to_numpy()[ok], now=float(inter["ts"].to_numpy()[ok].max()),
                            half_life_days=cfg.popularity_half_life_days)
    kw = {"test_cust": tc, "test_item": ti, "test_channel": tch, "k": e.k, "n_items": n_items, "groups": groups,
              "bootstrap": e.bootstrap, "seed": cfg.seed, "max_customers": e.max_customers}
    out: dict[str, dict] = {}
    models = dict(extra or {})
    if f is not None and learner:
        models = {learner: f, **models}
    for name, fac in models.items():
        out[result_key(name, baselines)] = ev.evaluate(ev.recommender_for(fac, s.train.confidence, e.k, ex, pop),
                                                       **kw)
    if baselines:
        out["popularity"] = {**ev.evaluate(ev.popularity_recommender(s.train.confidence, e.k, ex, pop), **kw),
                             "baseline": True}
        # the customer's own purchases first (by training confidence: frequent and recent first), then
        # recent popularity; under the same exclusion as the models, so no list may hold an item the
        # others are forbidden to show (with exclude "purchased" it can only differ from popularity
        # by nothing: re-offering purchases is what `exclude none` allows)
        bought = sp.csr_matrix(s.train.flags)
        bought.data = ((bought.data & PURCHASED) != 0).astype(np.float32)
        bought.eliminate_zeros()
        out["repurchase+popularity"] = {**ev.evaluate(ev.repurchase_popularity_recommender(
            s.train.confidence, e.k, ex, pop, history=bought.multiply(s.train.confidence).tocsr()), **kw),
            "baseline": True}
    for r in out.values():
        r["exclude"] = exclude_mode
    return out


def result_key(learner: str, baselines: bool = True) -> str:
    """A learner's name in the results; the popularity learner must not overwrite the baseline of the
    same name (they differ: the learner ranks by its own confidence sums, the baseline by recent use)."""
    return f"{learner}-learner" if baselines and learner in BASELINES else learner


def manifest_metrics(results: dict, learner: str, s: Split, k: int) -> dict:
    r = results.get(result_key(learner))
    if not r:
        return {"k": k, "split": s.describe, "note": "no held-out interactions to evaluate on"}
    return {"k": k, "split": s.describe, "exclude": r.get("exclude"), "customers": r["customers"],
            "overall": r["overall"],
            "per_channel": r["per_channel"], "per_group": r["per_group"],
            "baselines": {n: {"overall": v["overall"], "per_channel": v["per_channel"]}
                          for n, v in results.items() if v.get("baseline")}}


def _evaluation_learner(cfg: TrainConfig, learner):
    """The learner for the fit on the training split, minus work only the published model needs:
    ALS's exact re-solve of every customer (the final fit does it against the final item factors;
    on the split it costs about three sweeps and moves no metric beyond its confidence interval)."""
    if getattr(learner, "params", {}).get("exact_customer_solve"):
        return get_learner(cfg.learner, {**cfg.params_for(cfg.learner), "exact_customer_solve": False})
    return learner


def fit(data_dir: str, models_dir: str, cfg: TrainConfig, *, alias: str | None = None,
        until: float | None = None, rejects_path: str | None = None, evaluate: bool = True,
        force: bool = False, progress: bool = False) -> tuple[str, dict]:
    """Train, evaluate and publish one model; returns (model_id, promotion verdict or {})."""
    stages = Stages()
    p = prepare(data_dir, cfg, stages, rejects_path, until, progress)
    with _DataArrays(p, cfg) as data:
        return _fit(p, models_dir, cfg, stages, data, alias=alias, evaluate=evaluate, force=force,
                    progress=progress)


class _DataArrays:
    """The artifact's data-only arrays (catalogue, history, stock, popularity), built on a second thread
    from `start()` on: it is called once the learner's sweeps are done (they want every core), so it
    runs alongside the evaluation, much of which is single-threaded."""

    def __init__(self, p: Prepared, cfg: TrainConfig) -> None:
        self.p, self.cfg = p, cfg
        self.pool = ThreadPoolExecutor(max_workers=1)
        self.future = None

    def start(self) -> None:
        if self.future is None:
            self.future = self.pool.submit(
                data_arrays, self.p.ds, self.p.full, self.p.weights, now=self.p.now,
                popularity_half_life=self.cfg.popularity_half_life_days, popularity_top=self.cfg.popularity_top)

    def result(self) -> dict[str, np.ndarray]:
        self.start()
        return self.future.result()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def _fit(p: Prepared, models_dir: str, cfg: TrainConfig, stages: Stages, data: _DataArrays, *,
         alias: str | None, evaluate: bool, force: bool, progress: bool) -> tuple[str, dict]:
    learner = get_learner(cfg.learner, cfg.params_for(cfg.learner))
    kw = {"catalog": p.ds.catalog, "customers": p.ds.customers, "item_ids": p.full.item_ids,
              "customer_ids": p.full.customer_ids, "seed": cfg.seed, "progress": progress}
    results: dict = {}
    metrics: dict = {}
    f_eval = None
    if evaluate:
        s = split(p, cfg)
        stages.done("split", str(s.describe))
        iters = None
        total = getattr(learner, "params", {}).get("iterations")
        if learner.warm_start and isinstance(total, int) and total > cfg.evaluation.final_iterations:
            iters = total - cfg.evaluation.final_iterations
        f_eval = _evaluation_learner(cfg, learner).fit(s.train.confidence, iterations=iters, neighbours=False, **kw)
        stages.done("train", f"{cfg.learner} on the training split ({iters or total or '-'} iterations)")
    k = cfg.evaluation.k
    if f_eval is not None and learner.warm_start and hasattr(learner, "neighbours_of"):
        # the final sweeps first (they need both cores), then the evaluation of the split's model and
        # the final model's item neighbours side by side: both are numpy blocks on a thread pool, and
        # together they keep the cores busy where either alone leaves gaps
        f = learner.fit(p.full.confidence, init=f_eval, iterations=cfg.evaluation.final_iterations,
                        neighbours=False, **kw)
        stages.done("final", f"{cfg.evaluation.final_iterations} more iterations on all data")
        data.start()
        with ThreadPoolExecutor(max_workers=1) as side:
            with_nb = side.submit(learner.neighbours_of, f)
            results = evaluate_factors(p, s, f_eval, cfg, cfg.learner)
            f = with_nb.result()
        metrics = manifest_metrics(results, cfg.learner, s, k)
        o = metrics.get("overall") or {}
        stages.done("evaluate", f"ndcg@{k}={o.get(f'ndcg@{k}', float('nan')):.4f} "
                                "(the final model's item neighbours computed alongside)")
    else:
        data.start()
        if f_eval is not None:
            results = evaluate_factors(p, s, f_eval, cfg, cfg.learner)
            metrics = manifest_metrics(results, cfg.learner, s, k)
            o = metrics.get("overall") or {}
            stages.done("evaluate", f"ndcg@{k}={o.get(f'ndcg@{k}', float('nan')):.4f}")
        if f_eval is not None and learner.warm_start:
            f = learner.fit(p.full.confidence, init=f_eval, iterations=cfg.evaluation.final_iterations, **kw)
            stages.done("final", f"{cfg.evaluation.final_iterations} more iterations on all data")
        else:
            if f_eval is not None:
                kw["init"] = f_eval  # carries tuned hyper-parameters
            f = learner.fit(p.full.confidence, **kw)
            stages.done("final", "trained on all data")
    params = {**f.params, "weights": asdict(cfg.weights), "evaluation": asdict(cfg.evaluation)}
    if f_eval is not None and learner.warm_start and isinstance(f_eval.params.get("iterations"), int) \
            and isinstance(f.params.get("iterations"), int):
        # the published factors went through both fits: record the sweeps they really had
        params["iterations"] = f_eval.params["iterations"] + f.params["iterations"]
    man, arrays = build_artifact(p.ds, p.full, p.weights, f, learner=cfg.learner, params=params, seed=cfg.seed,
                                 event_weights=cfg.weights.event_weights, metrics=metrics, now=p.now,
                                 popularity_half_life=cfg.popularity_half_life_days,
                                 popularity_top=cfg.popularity_top,
                                 extra={"stages": dict(stages.times)},  # up to publish
                                 taken=lambda mid: os.path.exists(os.path.join(models_dir, mid)),
                                 data=data.result(), ann=asdict(cfg.ann))
    reg = Registry(models_dir)
    reg.clean_temp()
    extra_files = {"evaluation.json": results} if results else None
    write_model(models_dir, man, arrays, extra_files=extra_files)
    stages.done("publish", f"{man.model_id} in {models_dir}")
    verdict: dict = {}
    if alias:
        if alias == CHAMPION:
            verdict = reg.promote(man.model_id, cfg.promotion_metric, cfg.promotion_tolerance, force)
        else:
            reg.set_alias(alias, man.model_id)
        log.info("alias %s -> %s", alias, man.model_id)
    return man.model_id, verdict

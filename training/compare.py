"""recsvc-train evaluate: learners and baselines on one split, one report."""

from __future__ import annotations

import logging
import time

from training.config import load_config, with_overrides
from training.errors import ConfigError
from training.learners.base import LEARNER_NAMES, get_learner
from training.pipeline import Stages, evaluate_factors, prepare, result_key, split
from training.report import write_report

log = logging.getLogger("recsvc.training")


def compare(a) -> int:
    cfg = load_config(a.config)
    cfg = with_overrides(cfg, seed=a.seed, eval_k=a.k, eval_cutoff=a.cutoff,
                         eval_holdout="random" if a.holdout_fraction else "temporal",
                         eval_test_fraction=a.holdout_fraction, eval_max_customers=a.max_customers,
                         eval_exclude=a.exclude)
    if a.max_customers is None:
        from dataclasses import replace

        cfg = replace(cfg, evaluation=replace(cfg.evaluation, max_customers=None))
    learners = [x.strip() for x in a.learners.split(",") if x.strip()]
    unknown = [x for x in learners if x not in LEARNER_NAMES]
    if not learners or unknown:
        raise ConfigError(f"--learners: unknown {', '.join(unknown) or '(none given)'}; "
                          f"choose from {', '.join(LEARNER_NAMES)}")
    stages = Stages()
    p = prepare(a.data, cfg, stages)
    s = split(p, cfg)
    stages.done("split", str(s.describe))
    fitted, seconds = {}, {}
    for name in learners:
        t = time.perf_counter()
        fitted[name] = get_learner(name, cfg.params_for(name)).fit(
            s.train.confidence, catalog=p.ds.catalog, customers=p.ds.customers, item_ids=p.full.item_ids,
            customer_ids=p.full.customer_ids, seed=cfg.seed, neighbours=False)
        seconds[name] = round(time.perf_counter() - t, 2)
        stages.done("train", f"{name} in {seconds[name]}s")
    results = evaluate_factors(p, s, None, cfg, None, extra=fitted)
    if not results:
        raise ConfigError("the split holds out no relevant interaction: choose another --cutoff or fraction")
    for name in fitted:
        results[result_key(name)]["fit_seconds"] = seconds[name]
    results = {n: {**r, "split": s.describe} for n, r in results.items()}
    stages.done("evaluate", f"{len(results)} models")
    k = cfg.evaluation.k
    print(f"split: {s.describe}; history excluded from every list: {cfg.evaluation.exclude}")
    print(f"{'model':<24} {'ndcg@' + str(k):>9} {'map@' + str(k):>9} {'prec@' + str(k):>9} "
          f"{'recall@' + str(k):>9} {'hit@' + str(k):>9} {'cover':>7}")
    for name, r in results.items():
        o = r["overall"]
        print(f"{name:<24} {o[f'ndcg@{k}']:>9.4f} {o[f'map@{k}']:>9.4f} {o[f'precision@{k}']:>9.4f} "
              f"{o[f'recall@{k}']:>9.4f} {o[f'hit_rate@{k}']:>9.4f} {o.get(f'coverage@{k}', 0):>7.3f}")
    if a.report:
        paths = write_report(results, a.report, title=f"recsvc evaluation of {a.data}", reference="popularity")
        print("report: " + ", ".join(sorted(paths.values()) if isinstance(paths, dict) else paths))
    return 0

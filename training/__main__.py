"""recsvc-train: synth | convert | fit | evaluate | recommend | models | export-events | experiments."""

from __future__ import annotations

import os

# one BLAS thread: implicit parallelises itself, and nested BLAS threads oversubscribe the cores.
# OMP_NUM_THREADS is left alone: the learners pass their thread counts to their OpenMP kernels
# explicitly (training.learners.base.cpu_threads), so a caller's OMP_NUM_THREADS=1 cannot pin training
# to one core either.
for _v in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse
import datetime as dt
import json
import logging
import sys

from recsvc.core.types import CHANNELS, EXCLUDE_MODES

LEARNERS = ("als", "bpr", "lightfm", "itemknn", "popularity", "ease")


def timestamp(text: str) -> float:
    """ISO-8601 (a date alone is 00:00 UTC) or epoch seconds."""
    t = text.strip()
    if t.lstrip("-").isdigit():
        return float(int(t))
    try:
        d = dt.datetime.fromisoformat(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither ISO-8601 nor epoch seconds") from None
    if d.tzinfo is None:
        d = d.replace(tzinfo=dt.UTC)
    return d.timestamp()


def fraction(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < v < 1:
        raise argparse.ArgumentTypeError(f"{text} must be between 0 and 1 (exclusive)")
    return v


def positive(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1")
    return v


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="recsvc-train", description="Train, evaluate and manage recsvc models.")
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors on stderr")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    s = sub.add_parser("synth", help="write a seeded synthetic omnichannel data directory")
    s.add_argument("--out", required=True)
    s.add_argument("--customers", type=positive, default=2000)
    s.add_argument("--items", type=positive, default=500)
    s.add_argument("--stores", type=positive, default=5)
    s.add_argument("--events", type=positive, default=50_000)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--format", choices=("csv", "parquet", "jsonl"), default="csv",
                   help="format of interactions.* (the other tables are CSV)")
    s.add_argument("--end", default="2026-11-01", help="the day after the last event, YYYY-MM-DD (default 2026-11-01)")
    s.add_argument("--days", type=positive, default=180, help="days of history before --end (default 180)")

    c = sub.add_parser("convert", help="convert public data (MovieLens u.data, H&M sample) to a data directory")
    c.add_argument("source", choices=("movielens", "hm"))
    c.add_argument("src")
    c.add_argument("--out", required=True)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--models-dir", default=None, help="model registry (default $RECSVC_MODELS_DIR, then models)")

    f = sub.add_parser("fit", parents=[common], help="train, validate, evaluate and publish one model")
    f.add_argument("--data", required=True)
    f.add_argument("--learner", choices=LEARNERS, default=None, help="default: als (or the config file's)")
    f.add_argument("--config", default=None, help="TOML file (see training/config.py)")
    f.add_argument("--until", type=timestamp, default=None, help="train on interactions before this time only")
    f.add_argument("--alias", default=None, help="point this alias at the new model (champion: with the promotion guard)")
    f.add_argument("--force", action="store_true", help="with --alias champion: promote even if worse")
    f.add_argument("--seed", type=int, default=None)
    f.add_argument("--rejects", default=None, help="rejects CSV path (default ./rejects-<data>.csv)")
    f.add_argument("--max-reject-share", type=float, default=None)
    f.add_argument("--k", type=positive, default=None, help="evaluation cut-off (default 10)")
    f.add_argument("--cutoff", type=timestamp, default=None, help="temporal split for the evaluation")
    f.add_argument("--holdout-fraction", type=fraction, default=None, help="per-customer random split instead")
    f.add_argument("--exclude", choices=EXCLUDE_MODES, default=None,
                   help="history the evaluated lists may not re-offer, for the model and the baselines "
                        "(default: the config's, else purchased): evaluate as you will serve")
    f.add_argument("--no-evaluate", action="store_true", help="skip the held-out evaluation (faster)")
    f.add_argument("--progress", action="store_true", help="progress bars (only on a terminal)")
    f.add_argument("--engine", choices=("implicit", "spark"), default="implicit",
                   help="implicit: this machine (default); spark: Apache Spark (pyspark spark.ml ALS; "
                        "pip install 'recsvc[spark]', Java 17), same artifact")
    f.add_argument("--spark-master", default=None,
                   help="with --engine spark: local[*] (default), spark://host:7077, yarn, k8s://...")
    f.add_argument("--spark-conf", action="append", default=None, metavar="KEY=VALUE",
                   help="with --engine spark: a Spark setting, repeatable (e.g. spark.executor.memory=8g)")

    e = sub.add_parser("evaluate", help="compare learners and baselines on one split; write a report")
    e.add_argument("--data", required=True)
    g = e.add_mutually_exclusive_group(required=True)
    g.add_argument("--cutoff", type=timestamp)
    g.add_argument("--holdout-fraction", type=fraction)
    e.add_argument("--learners", default="als", help="comma-separated, e.g. als,bpr,lightfm,itemknn")
    e.add_argument("--k", type=positive, default=10)
    e.add_argument("--report", default=None, help="folder for report.json/.md/.html and PNG charts")
    e.add_argument("--config", default=None)
    e.add_argument("--seed", type=int, default=None)
    e.add_argument("--exclude", choices=EXCLUDE_MODES, default=None,
                   help="history no list may re-offer, models and baselines alike "
                        "(default: the config's, else purchased)")
    e.add_argument("--max-customers", type=int, default=None, help="evaluate on a sample (default all)")

    r = sub.add_parser("recommend", parents=[common], help="batch top-N with the service's ranking code")
    r.add_argument("--model", default="champion", help="model id, alias or path")
    r.add_argument("--data", default=None)
    g = r.add_mutually_exclusive_group(required=True)
    g.add_argument("--customers", help="CSV with a customer_id column")
    g.add_argument("--all", action="store_true", help="every customer the model (and --data) knows")
    r.add_argument("--n", type=positive, default=10)
    r.add_argument("--channel", choices=CHANNELS, default="web")
    r.add_argument("--store", default=None)
    r.add_argument("--locale", default=None)
    r.add_argument("--at", type=timestamp, default=None, help="time of the context (default now)")
    r.add_argument("--exclude", choices=EXCLUDE_MODES, default="purchased")
    r.add_argument("--out", required=True)

    m = sub.add_parser("models", help="the registry: list | show | diff | promote | rollback")
    msub = m.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, hlp in (("list", "models and aliases"), ("show", "a model's manifest"),
                      ("diff", "what differs between two models"), ("promote", "make a model the champion"),
                      ("rollback", "point champion back at the previous model")):
        a = msub.add_parser(name, parents=[common], help=hlp)
        if name in ("show", "promote"):
            a.add_argument("model")
        if name == "diff":
            a.add_argument("a")
            a.add_argument("b")
        if name == "promote":
            a.add_argument("--force", action="store_true")
            a.add_argument("--alias", default="champion")
            a.add_argument("--tolerance", type=float, default=0.02)
            a.add_argument("--metric", default="ndcg")
        if name == "rollback":
            a.add_argument("--alias", default="champion")

    xp = sub.add_parser("experiments", help="A/B experiments: report EXP_ID")
    xsub = xp.add_subparsers(dest="action", required=True, metavar="ACTION")
    xr = xsub.add_parser("report", help="attributed results per variant and channel (JSON, Markdown, PNG)")
    xr.add_argument("experiment_id")
    xr.add_argument("--store-url", required=True, help="the service's Redis: redis://host:port/db?prefix=NAME")
    xr.add_argument("--out", default=None, help="folder for report.json/.md/.png (default experiment-<id>)")
    xr.add_argument("--models-dir", default=None,
                    help="registry whose --model prices purchases sent without a value (as the service does)")
    xr.add_argument("--model", default="champion", help="model id or alias for those prices (default champion)")

    x = sub.add_parser("export-events", help="live events (minus erased customers) as a data directory")
    x.add_argument("--store-url", required=True)
    x.add_argument("--out", required=True)
    x.add_argument("--catalog-from", default=None, help="model (id/alias/path) or data dir to copy the catalog from")
    x.add_argument("--models-dir", default=None)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # recsvc's errors through recsvc.artifact: training imports nothing else of the service
    from recsvc.artifact.registry import ArtifactError, RegistryError
    from training.errors import TrainingError
    from training.learners.base import LearnerConfigError, ModelFitError

    try:
        return COMMANDS[args.cmd](args)
    except (TrainingError, ArtifactError, RegistryError, LearnerConfigError, ModelFitError, ValueError,
            OSError) as e:
        msg = getattr(e, "message", None) or str(e) or type(e).__name__
        msg = "; ".join(line.strip() for line in str(msg).splitlines() if line.strip())  # one line
        print(f"recsvc-train {args.cmd}: error: {msg}", file=sys.stderr)
        return 2 if isinstance(e, (LearnerConfigError, ValueError)) else 1
    except KeyboardInterrupt:
        print(f"recsvc-train {args.cmd}: interrupted", file=sys.stderr)
        return 130


def cmd_synth(a) -> int:
    from training.synth import synth

    counts = synth(a.out, customers=a.customers, items=a.items, stores=a.stores, events=a.events,
                   seed=a.seed, fmt=a.format, end=a.end, days=a.days, progress=sys.stderr.isatty())
    print(json.dumps(counts))
    return 0


def cmd_convert(a) -> int:
    from training.convert import convert_hm, convert_movielens

    counts = (convert_movielens if a.source == "movielens" else convert_hm)(a.src, a.out)
    print(json.dumps(counts))
    return 0


def cmd_fit(a) -> int:
    from training import prefetch

    if a.engine != "spark":  # Spark reads the data itself, never into this process
        prefetch.start(a.data)  # the interactions file is read while the imports below run
    from training.config import load_config, models_dir, with_overrides
    from training.pipeline import fit

    cfg = load_config(a.config)
    cfg = with_overrides(cfg, learner=a.learner, seed=a.seed, max_reject_share=a.max_reject_share,
                         eval_k=a.k, eval_cutoff=a.cutoff,
                         eval_holdout="random" if a.holdout_fraction else None,
                         eval_test_fraction=a.holdout_fraction, eval_exclude=a.exclude)
    from recsvc.artifact.registry import PromotionRefused

    if a.engine == "spark":  # imported only when asked for: pyspark is an optional extra
        from functools import partial

        from training.engines import spark as engine

        engine.check_available()
        fit = partial(engine.fit, master=a.spark_master, spark_conf=engine.parse_conf(a.spark_conf))
    elif a.spark_master or a.spark_conf:
        from training.errors import ConfigError

        raise ConfigError("--spark-master and --spark-conf need --engine spark")
    try:
        mid, verdict = fit(a.data, models_dir(a.models_dir), cfg, alias=a.alias, until=a.until,
                           rejects_path=a.rejects, evaluate=not a.no_evaluate, force=a.force,
                           progress=a.progress and sys.stderr.isatty())
    except PromotionRefused as e:
        print(f"recsvc-train fit: published, but the champion alias was not moved: {e.message}", file=sys.stderr)
        return 3
    if verdict.get("regressions"):
        print(f"warning: promoted with --force despite {len(verdict['regressions'])} regressions", file=sys.stderr)
    print(mid)
    return 0


def cmd_evaluate(a) -> int:
    from training.compare import compare

    return compare(a)


def cmd_recommend(a) -> int:
    from recsvc.artifact.registry import Registry
    from training.config import models_dir
    from training.recommend import recommend_to_csv

    path = Registry(models_dir(a.models_dir)).resolve(a.model)
    n = recommend_to_csv(path, a.out, data_dir=a.data, customers_file=a.customers, n=a.n, channel=a.channel,
                         store=a.store, locale=a.locale, exclude=a.exclude, at=a.at)
    logging.getLogger("recsvc.training").info("wrote top-%d for %d customers to %s", a.n, n, a.out)
    print(a.out)
    return 0


def cmd_models(a) -> int:
    from recsvc.artifact.manifest import Manifest
    from recsvc.artifact.registry import Registry, diff_manifests
    from training.config import models_dir

    reg = Registry(models_dir(a.models_dir))
    if a.action == "list":
        aliases = reg.aliases()
        by_model: dict[str, list[str]] = {}
        for al, mid in aliases.items():
            by_model.setdefault(mid, []).append(al)
        print(f"{'model_id':<40} {'learner':<10} {'created_at':<21} {'ndcg':>7}  aliases")
        for mid in reg.model_ids():
            man = Manifest.read(os.path.join(reg.models_dir, mid))
            o = (man.metrics or {}).get("overall") or {}
            nd = next((v for k, v in o.items() if k.startswith("ndcg@")), None)
            print(f"{mid:<40} {man.learner:<10} {man.created_at[:20]:<21} "
                  f"{'' if nd is None else f'{nd:.4f}':>7}  {','.join(sorted(by_model.get(mid, [])))}")
        return 0
    if a.action == "show":
        print(json.dumps(reg.manifest(a.model).to_json(), indent=2, sort_keys=True))
        return 0
    if a.action == "diff":
        print(json.dumps(diff_manifests(reg.manifest(a.a), reg.manifest(a.b)), indent=2, sort_keys=True))
        return 0
    if a.action == "promote":
        v = reg.promote(a.model, a.metric, a.tolerance, a.force, alias=a.alias)
        print(f"{a.alias} -> {v['model_id']} (was {v['previous'] or 'none'})")
        return 0
    if a.action == "rollback":
        frm, to = reg.rollback(a.alias)
        print(f"{a.alias} -> {to} (was {frm})")
        return 0
    return 2


def cmd_export_events(a) -> int:
    from training.export_events import export_events

    n = export_events(a.store_url, a.out, catalog_from=a.catalog_from, models_dir=a.models_dir)
    print(json.dumps(n))
    return 0


def cmd_experiments(a) -> int:
    from recsvc.core.experiment_stats import summary_lines
    from training.experiments import compute_report, write_report

    report = compute_report(a.store_url, a.experiment_id, models_dir=a.models_dir, model=a.model)
    paths = write_report(report, a.out or f"experiment-{a.experiment_id}")
    print("\n".join(summary_lines(report)))
    print(f"wrote {paths['json']}, {paths['md']}, {paths['png']}")
    return 0


COMMANDS = {"synth": cmd_synth, "convert": cmd_convert, "fit": cmd_fit, "evaluate": cmd_evaluate,
            "recommend": cmd_recommend, "models": cmd_models, "export-events": cmd_export_events,
            "experiments": cmd_experiments}

if __name__ == "__main__":
    sys.exit(main())

"""`recsvc-train fit --engine spark`: the same fit on Apache Spark (pyspark `spark.ml` ALS, implicit
preferences), publishing the same artifact as the default engine.

What runs where:

- **On Spark (jobs over the raw interaction rows)**: reading `interactions.<csv|parquet|jsonl>` (a file,
  or a folder of part files as Spark writes it, e.g. `interactions.parquet/part-*.parquet`; in a local
  data directory, given to Spark as a file:// URI, or on any path Spark reads: `hdfs://`, `s3a://`,
  `gs://`, `abfss://`), the row checks of
  `training.io` (same order, fields and reasons; the first failed check wins), event weights x
  quantity x rating scale, channel balancing and recency decay (`training.weighting`, as column
  expressions), the sums per (customer, item), the temporal split, the held-out set, the training
  popularity, the customer groups, and both ALS fits (`pyspark.ml.recommendation.ALS`).
- **Collected to the driver (small, aggregated)**: the rejected rows (the first REJECTS_MAX in file and
  line order; the count of rejects is exact), the id maps, one row per (customer, item) pair
  (confidence and flag bits: the artifact's history), one row per (customer, item, store) with its
  popularity weight already decayed (the artifact's popularity tables), the held-out (customer, item,
  channel) triples, per-(customer, channel) counts, and the factors (items x k, customers x k).
- **Side tables** (catalog, customers, stores, stock) are small and go through `training.io`'s own
  loaders (read by Spark first when they are not local files).
- **Rejects** name the file and line as the default engine does; for a folder of part files, the part
  file (`interactions.parquet/part-00003-....parquet`) and the row within it.

Everything after that is the default engine's code: `training.export.build_artifact` (catalogue,
history, stock, popularity, neighbours from the item factors), `training.evaluate` (metrics from each
customer's top-k on the driver, against the held-out set aggregated on Spark), the registry.

Differences from the default engine, by design or not done yet:
- Spark's implicit ALS weighs a pair by 1 + alpha x confidence (implicit: alpha x confidence) and
  scales regParam by each customer's (item's) number of entries, where the default engine's
  regularization is one figure: regParam = regularization / the median number of items per customer,
  so the same config trains a comparable model on either engine, and serving's fold-in (which uses
  `regularization`) is close to, not exactly, Spark's solve of that customer.
- No hyper-parameter tuning (set factors / regularization / alpha in the config's [learners.als]) and
  no warm start: the evaluation fit and the final fit are two fits with the same parameters.
- Only the temporal holdout (`--holdout-fraction` is refused).
- CSV rows with a wrong number of fields are not reported as malformed (Spark fills or drops fields).
- The metrics themselves (each evaluated customer's top-k, at most `max_customers` of them) are computed
  on the driver by `training.evaluate`, from the training pairs and the factors: the raw rows never
  leave Spark, but the driver holds O(pairs) twice (the training split's and all of them), as the
  artifact's history needs anyway.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import math
import os
import re
import shutil
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from types import SimpleNamespace
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import pyarrow as pa
import scipy.sparse as sp

from recsvc.artifact.manifest import DECLINED, PURCHASED, RETURNED, SEEN
from recsvc.artifact.registry import CHAMPION, Registry
from recsvc.artifact.write import write_model
from recsvc.core.types import CHANNELS, EVENTS
from training import evaluate as ev
from training import io
from training.config import TrainConfig
from training.errors import ConfigError, DataError, TrainingError
from training.export import build_artifact
from training.learners.base import Factors, as_f32, check_finite, with_neighbours
from training.matrix import InteractionMatrix

log = logging.getLogger("recsvc.training")

DAY = 86400.0
REJECTS_MAX = 1_000_000  # reject rows brought back when the load fails anyway (the count is exact)
# the ALS learner's parameters the Spark engine uses; the others are implicit-specific
# factors, regularization, alpha, iterations, neighbours: the same meaning and defaults as the default
# engine's ALS learner (regularization on its scale: see `spark_reg_param`); blocks: spark.ml's
# numUserBlocks / numItemBlocks (0: the session's default parallelism)
SPARK_ALS_DEFAULTS = {"factors": 64, "regularization": 0.01, "alpha": 1.0, "iterations": 15, "neighbours": 20,
                      "blocks": 0, "block_size": 4096}
IMPLICIT_ONLY = {"use_cg", "exact_customer_solve", "num_threads", "tune", "tune_max_nnz", "tune_holdout",
                 "tune_k", "tune_max_fits", "tune_start", "tune_grid"}
DEFAULT_MASTER = "local[*]"
DEFAULT_CONF = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.ui.showConsoleProgress": "false",
}
LOCAL_CONF = {"spark.sql.shuffle.partitions": "8", "spark.driver.memory": "4g"}  # local[...] masters only


class EngineUnavailable(TrainingError):
    """pyspark or Java is missing."""


# ---------------------------------------------------------------- session
def check_available() -> None:
    """Raise EngineUnavailable (one line) when pyspark or a Java runtime is missing."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        raise EngineUnavailable("--engine spark needs pyspark: pip install 'recsvc[spark]'") from None
    java_home = os.environ.get("JAVA_HOME")
    if not (java_home and os.path.exists(os.path.join(java_home, "bin", "java"))) and not shutil.which("java"):
        raise EngineUnavailable("--engine spark needs Java 17 or later (no java on PATH and no JAVA_HOME)")


def session(master: str | None = None, conf: dict[str, str] | None = None, app: str = "recsvc-train"):
    """A SparkSession on `master` (default local[*]; under spark-submit, its --master) with DEFAULT_CONF
    under `conf` (the --spark-conf KEY=VALUE flags win over the defaults; spark-defaults.conf applies)."""
    check_available()
    from pyspark.sql import SparkSession

    # pyspark 4.x warns on every pandas conversion that it "does not yet fully support pandas >= 3"; the
    # conversions here are plain numbers and strings
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)

    b = SparkSession.builder.appName(app)
    if master or "PYSPARK_GATEWAY_PORT" not in os.environ:
        master = master or DEFAULT_MASTER
        b = b.master(master)
    else:  # under spark-submit: its --master and --conf already hold
        master = os.environ.get("MASTER", "")
    local = LOCAL_CONF if master.startswith("local") else {}
    for k, v in {**DEFAULT_CONF, **local, **(conf or {})}.items():
        b = b.config(k, v)
    spark = b.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    if local and spark.sparkContext.getCheckpointDir() is None:
        # ALS truncates its lineage every checkpointInterval iterations only when a checkpoint folder is
        # set; without one, the lineage of 15 iterations can overflow the JVM stack when a task is
        # serialized. On a cluster, set a shared one: --spark-conf spark.checkpoint.dir=hdfs://...
        ckpt = tempfile.mkdtemp(prefix="recsvc-spark-checkpoints-")
        atexit.register(shutil.rmtree, ckpt, True)
        spark.sparkContext.setCheckpointDir(ckpt)
    return spark


def parse_conf(items: list[str] | None) -> dict[str, str]:
    """KEY=VALUE strings (`--spark-conf`) as a dict."""
    out = {}
    for s in items or []:
        k, sep, v = s.partition("=")
        if not sep or not k.strip():
            raise ConfigError(f"--spark-conf expects KEY=VALUE, got {s!r}")
        out[k.strip()] = v.strip()
    return out


# ---------------------------------------------------------------- finding the input files
def _is_local(path: str) -> bool:
    scheme = urlparse(path).scheme
    return scheme in ("", "file") or (len(scheme) == 1 and os.name == "nt")


def _local(path: str) -> str:
    return urlparse(path).path if path.startswith("file:") else path


def _uri(path: str) -> str:
    """What Spark is given: a local path as an absolute file:// URI (a bare path would resolve against
    the cluster's default file system, e.g. HDFS under YARN); any other URI unchanged."""
    return "file://" + os.path.abspath(_local(path)) if _is_local(path) else path


def _fs_exists(spark, path: str) -> bool:
    jvm = spark._jvm
    p = jvm.org.apache.hadoop.fs.Path(path)
    return bool(p.getFileSystem(spark._jsc.hadoopConfiguration()).exists(p))


def find_inputs(spark, data: str) -> dict[str, str | None]:
    """{stem: path or None}: the one `<stem>.<suffix>` of each input in `data` (a folder or URI)."""
    out: dict[str, str | None] = {}
    local = _is_local(data)
    if local and not os.path.isdir(_local(data)):
        raise DataError(f"{data}: no such data directory")
    for stem in ("interactions", "catalog", "customers", "stores", "stock"):
        required = stem in ("interactions", "catalog")
        # a file, or a folder of part files as Spark writes them (interactions.parquet/part-*.parquet)
        if local:
            found = [p for s in io.SUFFIXES if os.path.exists(p := os.path.join(_local(data), stem + s))]
        else:
            found = [p for s in io.SUFFIXES if _fs_exists(spark, p := data.rstrip("/") + "/" + stem + s)]
        if len(found) > 1:
            raise DataError(f"{data}: several {stem} files ({', '.join(found)}); keep exactly one")
        if not found and required:
            raise DataError(f"{data}: no {stem} file; expected {stem}.csv, {stem}.parquet or {stem}.jsonl")
        out[stem] = found[0] if found else None
    return out


def _fingerprint(spark, paths: list[str]) -> str:
    """Local files: `training.io.fingerprint_files` (the same as the default engine). Otherwise a
    sha256 over each file's name, length and modification time (hashing terabytes is not the point)."""
    if all(_is_local(p) and os.path.isfile(_local(p)) for p in paths):
        return io.fingerprint_files([_local(p) for p in paths])
    h = hashlib.sha256()
    jvm, conf = spark._jvm, spark._jsc.hadoopConfiguration()
    for p in sorted(paths):
        jp = jvm.org.apache.hadoop.fs.Path(_uri(p))
        fs = jp.getFileSystem(conf)
        # recursive: a partitioned folder (day=.../part-*.parquet) changes when any of its files does
        it = fs.listFiles(jp, True)
        files = []
        while it.hasNext():
            files.append(it.next())
        for st in sorted(files, key=lambda s: s.getPath().toString()):
            h.update(f"{st.getPath().getName()}\0{st.getLen()}\0{st.getModificationTime()}\0".encode())
    return h.hexdigest()


def _reader(spark, path: str):
    """Every column as a trimmed, non-null string (the default engine's reading rule)."""
    from pyspark.sql import functions as F

    name = path.rstrip("/").lower()
    if name.endswith((".csv", ".csv.gz")):
        df = (spark.read.option("header", True).option("inferSchema", False).option("mode", "PERMISSIVE")
              .option("multiLine", False).option("escape", '"').csv(path))
        first = 2  # the header is line 1
    elif name.endswith(".parquet"):
        df = spark.read.parquet(path)
        first = 1
    else:
        df = spark.read.option("primitivesAsString", True).json(path)
        first = 1
    cols = []
    for f in df.schema.fields:
        c = F.col(f"`{f.name}`")
        if f.dataType.typeName() == "timestamp":
            c = F.unix_seconds(c)
        cols.append(F.coalesce(F.trim(c.cast("string")), F.lit("")).alias(f.name.strip().replace(".", "_")))
    return df.select(*cols), first


def _is_dir(spark, path: str) -> bool:
    if _is_local(path):
        return os.path.isdir(_local(path))
    jp = spark._jvm.org.apache.hadoop.fs.Path(path)
    return bool(jp.getFileSystem(spark._jsc.hadoopConfiguration()).getFileStatus(jp).isDirectory())


def _side_table(spark, path: str) -> io._Table:
    """A small input as `training.io`'s _Table: a local file by the default reader, else (a URI, a
    folder of part files) read by Spark."""
    if _is_local(path) and os.path.isfile(_local(path)):
        return io._read(_local(path))
    df, first = _reader(spark, _uri(path))
    pdf = df.toArrow().to_pandas()
    table = pa.Table.from_pandas(pdf, preserve_index=False)
    table = pa.table({c: table.column(c).cast(pa.string()) for c in table.column_names})
    return io._Table(os.path.basename(path.rstrip("/")), table,
                     np.arange(first, first + table.num_rows, dtype=np.int64), ())


# ---------------------------------------------------------------- interactions: read + validate
def _with_lines(spark, df, first: int, name: str, folder: bool):
    """`_file` (the name rejects report) and `line` (1-based; CSV: the header is line 1) columns from
    the row order of the read, without a pass through Python. One file: `name`, and the line from the
    partition of each row and its offset in it (a file's splits are read in order). A folder of part
    files: `name/<part file>`, and the line within that part file (a partition may hold several files,
    one after the other; a file's splits are in partition order)."""
    from pyspark.sql import functions as F

    df = df.withColumn("_mid", F.monotonically_increasing_id())
    part = F.shiftright(F.col("_mid"), 33)
    off = F.col("_mid").bitwiseAND(F.lit((1 << 33) - 1))
    if not folder:
        counts = dict(df.groupBy(part.alias("p")).count().collect())
        offsets, run = [], 0
        for p in range(int(max(counts, default=-1)) + 1):
            offsets.append(run)
            run += counts.get(p, 0)
        base = F.element_at(F.array(*[F.lit(o) for o in offsets] or [F.lit(0)]), (part + 1).cast("int"))
        return df.withColumn("line", (base + off + first).cast("long")).withColumn("_file", F.lit(name)) \
                 .drop("_mid")
    fn = F.input_file_name()
    rel = F.regexp_extract(fn, ".*/" + re.escape(name) + "/(.+)$", 1)
    df = df.withColumn("_file", F.concat(F.lit(name + "/"), F.when(rel != "", rel)
                                         .otherwise(F.regexp_extract(fn, "([^/]+)$", 1))))
    stats = df.groupBy(part.alias("_p"), "_file").agg(F.count("*").alias("n"), F.min(off).alias("o")).collect()
    shift, run = [], {}
    for r in sorted(stats, key=lambda r: (r["_file"], r["_p"])):
        shift.append((int(r["_p"]), r["_file"], run.get(r["_file"], 0) - int(r["o"]) + first))
        run[r["_file"]] = run.get(r["_file"], 0) + int(r["n"])
    look = spark.createDataFrame(shift or [(0, "", 0)], "_p long, _file string, _shift long")
    return df.withColumn("_p", part).join(F.broadcast(look), ["_p", "_file"], "left") \
             .withColumn("line", (off + F.col("_shift")).cast("long")).drop("_mid", "_p", "_shift")


def _ts_parse(c):
    """(epoch seconds, status) columns for a timestamp string: integer epoch seconds or ISO-8601."""
    from pyspark.sql import functions as F

    is_int = c.rlike(r"^[+-]?[0-9]{1,18}$")
    iv = c.try_cast("long")
    iso = F.unix_seconds(F.try_to_timestamp(c))
    status = (F.when(c == "", F.lit(io.EMPTY))
              .when(is_int & (F.abs(iv) < F.lit(int(io.MAX_EPOCH))), F.lit(io.OK))
              .when(is_int, F.lit(io.OUT_OF_RANGE))
              .when(iso.isNotNull(), F.lit(io.OK))
              .otherwise(F.lit(io.BAD)))
    value = F.when(is_int, iv).otherwise(iso)
    return value, status


def _num_parse(c):
    from pyspark.sql import functions as F

    v = c.try_cast("double")
    finite = v.isNotNull() & ~F.isnan(v) & (F.abs(v) != F.lit(float("inf")))
    status = F.when(c == "", F.lit(io.EMPTY)).when(finite, F.lit(io.OK)).otherwise(F.lit(io.BAD))
    return F.when(finite, v), status


def _checked(spark, df, items: np.ndarray, store_ids: np.ndarray | None):
    """df (strings + line) -> the same df with `_field`, `_reason` (null: valid) and typed columns."""
    from pyspark.sql import functions as F

    for c in ("event_id", "store_id", "quantity", "value"):
        if c not in df.columns:
            df = df.withColumn(c, F.lit(""))
    ts, ts_st = _ts_parse(F.col("timestamp"))
    qty, q_st = _num_parse(F.col("quantity"))
    val, v_st = _num_parse(F.col("value"))
    df = df.withColumn("_ts", ts).withColumn("_ts_st", ts_st).withColumn("_q", qty).withColumn("_q_st", q_st) \
           .withColumn("_v", val).withColumn("_v_st", v_st)
    item_df = spark.createDataFrame(pa.table({"item_id": items.astype(object), "_item_ok": np.ones(len(items), bool)}))
    df = df.join(F.broadcast(item_df), "item_id", "left")
    if store_ids is not None:
        st_df = spark.createDataFrame(pa.table({"store_id": store_ids.astype(object),
                                                "_store_ok": np.ones(len(store_ids), bool)}))
        df = df.join(F.broadcast(st_df), "store_id", "left")
    ev_ok = F.col("event").isin(list(EVENTS))
    ch_ok = F.col("channel").isin(list(CHANNELS))
    checks = [
        (F.col("customer_id") == "", "customer_id", F.lit("missing")),
        (F.col("item_id") == "", "item_id", F.lit("missing")),
        (~ev_ok, "event", F.lit(f"unknown event (allowed: {', '.join(EVENTS)})")),
        (~ch_ok, "channel", F.lit(f"unknown channel (allowed: {', '.join(CHANNELS)})")),
        (F.col("_ts_st") == io.EMPTY, "timestamp", F.lit("missing")),
        (F.col("_ts_st") == io.BAD, "timestamp", F.lit("not ISO-8601 or integer epoch seconds")),
        (F.col("_ts_st") == io.OUT_OF_RANGE, "timestamp", F.lit("epoch seconds out of range (milliseconds?)")),
        (F.col("_q_st") == io.BAD, "quantity", F.lit("not a number")),
        ((F.col("_q_st") == io.OK) & (F.col("_q") < 0), "quantity", F.lit("negative")),
        (F.col("_v_st") == io.BAD, "value", F.lit("not a number")),
        (F.col("_item_ok").isNull(), "item_id", F.lit("unknown item (not in catalog)")),
    ]
    if store_ids is not None:
        checks.append(((F.col("store_id") != "") & F.col("_store_ok").isNull(), "store_id",
                       F.lit("unknown store (not in stores file)")))
    field = reason = None
    for cond, name, why in checks:
        field = F.when(cond, F.lit(name)) if field is None else field.when(cond, F.lit(name))
        reason = F.when(cond, why) if reason is None else reason.when(cond, why)
    df = df.withColumn("_field", field).withColumn("_reason", reason)
    # duplicate event ids among the rows still valid (rows without an id never collide): the first
    # (lowest line) is kept, the later ones rejected with the first one's line
    # (part files: the first of the lowest file name, which names the file when it is another one)
    cand = df.filter(F.col("_reason").isNull() & (F.col("event_id") != ""))
    dups = cand.groupBy("event_id").agg(F.count("*").alias("_n"), F.min(F.struct("_file", "line")).alias("_first")) \
               .filter(F.col("_n") > 1).select("event_id", F.col("_first._file").alias("_ffile"),
                                               F.col("_first.line").alias("_fline"))
    df = df.join(dups, "event_id", "left")
    is_dup = F.col("_reason").isNull() & F.col("_fline").isNotNull() \
        & ((F.col("line") != F.col("_fline")) | (F.col("_file") != F.col("_ffile")))
    where = F.when(F.col("_ffile") == F.col("_file"), F.lit("")).otherwise(F.concat(F.col("_ffile"), F.lit(" ")))
    df = df.withColumn("_field", F.when(is_dup, F.lit("event_id")).otherwise(F.col("_field"))) \
           .withColumn("_reason", F.when(is_dup, F.concat(F.lit("duplicate event_id (first at "), where, F.lit("line "),
                                                          F.col("_fline").cast("string"), F.lit(")")))
                       .otherwise(F.col("_reason")))
    return df.drop("_ffile", "_fline")


def _reject_value(df):
    """The offending field's raw value."""
    from pyspark.sql import functions as F

    expr = F.lit("")
    for name in ("customer_id", "item_id", "event", "channel", "timestamp", "quantity", "value", "store_id",
                 "event_id"):
        expr = F.when(F.col("_field") == name, F.col(name)).otherwise(expr)
    return expr


@dataclass
class SparkData:
    """A validated data directory, interactions on Spark, the rest as `training.io` has them."""

    rows: object  # Spark DataFrame: customer_id, item_id, event, channel, ts, store_id, quantity, value, line
    catalog: pd.DataFrame
    customers: pd.DataFrame | None
    stores: pd.DataFrame | None
    stock: pd.DataFrame | None
    fingerprint: str
    n_rows: int
    n_valid: int
    n_rejects: int
    rejects_path: str | None


def load(spark, data: str, *, rejects_path: str | None = None, max_reject_share: float = 0.05,
         until: float | None = None) -> SparkData:
    """`training.io.load_dataset` with the interaction rows checked on Spark."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    if not 0.0 <= max_reject_share <= 1.0:
        raise DataError(f"max_reject_share must be within 0..1, got {max_reject_share}")
    paths = find_inputs(spark, data)
    fingerprint = _fingerprint(spark, [p for p in paths.values() if p])
    rejects = io._Rejects()
    tabs = {stem: _side_table(spark, p) for stem, p in paths.items() if p and stem != "interactions"}
    catalog = io._load_catalog(tabs["catalog"], rejects)
    items = catalog["item_id"].to_numpy(dtype=str)
    customers = io._load_customers(tabs["customers"], rejects) if "customers" in tabs else None
    stores = stores_kept = store_lines = None
    if "stores" in tabs:
        stores, stores_kept, store_lines = io._load_stores(tabs["stores"], rejects)
    store_ids = None if stores is None else stores["store_id"].to_numpy(dtype=str)
    stock = io._load_stock(tabs.get("stock"), stores_kept, store_lines,
                           tabs["stores"].name if "stores" in tabs else None,
                           pa.array(items.astype(object), pa.string()),
                           None if store_ids is None else pa.array(store_ids.astype(object), pa.string()), rejects)

    ipath = paths["interactions"]
    iname = os.path.basename(ipath.rstrip("/"))
    raw, first = _reader(spark, _uri(ipath))
    missing = [c for c in io.REQUIRED["interactions"] if c not in raw.columns]
    if missing:
        raise DataError(f"{iname}: missing required column '{missing[0]}' (required: "
                        f"{', '.join(io.REQUIRED['interactions'])}; found: {', '.join(raw.columns)})")
    lined = _with_lines(spark, raw, first, iname, _is_dir(spark, ipath))
    checked = _checked(spark, lined, items, store_ids).persist(StorageLevel.MEMORY_AND_DISK)
    tally = checked.agg(F.count("*").alias("n"), F.count("_reason").alias("bad")).collect()[0]
    n_rows, n_bad = int(tally["n"]), int(tally["bad"])
    inames, unlisted = [iname], 0
    if n_bad:
        bad = (checked.filter(F.col("_reason").isNotNull())
               .select("_file", "line", F.col("_field").alias("field"), F.col("_reason").alias("reason"),
                       _reject_value(checked).alias("value"))
               .orderBy("_file", "line").limit(REJECTS_MAX).toArrow().to_pandas())
        unlisted = n_bad - len(bad)
        if unlisted:
            log.warning("%d interaction rows rejected; the rejects file lists the first %d", n_bad, len(bad))
        inames = sorted(bad["_file"].unique())
        for (fname, fld, why), g in bad.groupby(["_file", "field", "reason"], sort=False):
            rejects.add(fname, g["line"].to_numpy(np.int64), fld, why, g["value"].to_numpy(dtype=object))
    written = None
    if rejects.total:
        written = rejects_path or io.default_rejects_path(_local(data) if _is_local(data) else data.rstrip("/"))
        os.makedirs(os.path.dirname(os.path.abspath(written)), exist_ok=True)
        order = [t.name for t in tabs.values()] + inames
        rejects.frame(order).to_csv(written, index=False)
        log.warning("%d rejected rows written to %s", rejects.total, written)
    if n_rows == 0:
        raise DataError(f"{iname}: no interaction rows")
    share = n_bad / n_rows
    if share > max_reject_share:
        raise DataError(f"{n_bad} of {n_rows} interaction rows rejected ({share:.1%} > {max_reject_share:.1%}); "
                        f"see {written}")
    keep = F.col("_reason").isNull()
    if until is not None:
        keep = keep & (F.col("_ts") < F.lit(math.ceil(until)))
    rows = checked.filter(keep).select(
        "customer_id", "item_id", "event", "channel", F.col("_ts").alias("ts"), "store_id",
        F.coalesce(F.col("_q"), F.lit(1.0)).alias("quantity"), F.col("_v").alias("value"), "line",
    ).persist(StorageLevel.MEMORY_AND_DISK)
    n_valid = rows.count()
    checked.unpersist()
    if n_valid == 0:
        raise DataError(f"{iname}: no valid interaction rows"
                        + (f" before {until:.0f} (--until)" if until is not None else ""))
    return SparkData(rows, catalog, customers, stores, stock, fingerprint, n_rows, n_valid,
                     rejects.total + unlisted, written)


# ---------------------------------------------------------------- weighting (training.weighting on Spark)
def weighted(spark, rows, cfg, now: float):
    """rows + `w`: the signed confidence contribution of every row (training.weighting steps 1-3),
    and `flag`: its flag bits (training.matrix.row_flags)."""
    from pyspark.sql import functions as F

    wc = cfg.weights
    table = F.create_map(*[x for e in EVENTS for x in (F.lit(e), F.lit(float(wc.weight_of(e))))])
    w = table[F.col("event")] * F.least(F.greatest(F.col("quantity"), F.lit(0.0)), F.lit(float(wc.quantity_cap)))
    if wc.rating_scale is not None:
        rated = (F.col("event") == "rating") & F.col("value").isNotNull()
        w = F.when(rated, w * F.greatest(F.col("value"), F.lit(0.0)) / F.lit(float(wc.rating_scale))).otherwise(w)
    df = rows.withColumn("w", w)
    if wc.channel_balance > 0:
        b = float(wc.channel_balance)
        blocks = df.groupBy("customer_id", "channel").agg(F.sum(F.greatest("w", F.lit(0.0))).alias("P"))
        ref = wc.balance_ref
        if ref is None:
            ref = blocks.filter(F.col("P") > 0).agg(F.percentile(F.col("P"), 0.5).alias("m")).collect()[0]["m"]
        if ref is not None:
            blocks = blocks.withColumn(
                "s", F.when(F.col("P") > 0, F.pow(F.lit(float(ref)) / F.col("P"), F.lit(b))).otherwise(F.lit(1.0)))
            df = df.join(blocks.select("customer_id", "channel", "s"), ["customer_id", "channel"], "left")
            pos, neg = df.filter(F.col("w") >= 0), df.filter(F.col("w") < 0)
            # a negative row: the weight-averaged scale of the customer's positive rows on the item,
            # else the customer's average block scale
            pair = pos.filter(F.col("w") > 0).groupBy("customer_id", "item_id").agg(
                (F.sum(F.col("w") * F.col("s")) / F.sum("w")).alias("ps"))
            cust = blocks.groupBy("customer_id").agg(
                F.when(F.sum("P") > 0, F.sum(F.col("s") * F.col("P")) / F.sum("P")).alias("cs"))
            neg = neg.join(pair, ["customer_id", "item_id"], "left").join(cust, "customer_id", "left") \
                     .withColumn("s", F.coalesce("ps", "cs", F.lit(1.0))).drop("ps", "cs")
            df = pos.unionByName(neg).withColumn("w", F.col("w") * F.col("s")).drop("s")
    if wc.half_life_days is not None:
        age = F.greatest(F.lit(float(now)) - F.col("ts"), F.lit(0.0)) / F.lit(DAY)
        df = df.withColumn("w", F.col("w") * F.pow(F.lit(2.0), -age / F.lit(float(wc.half_life_days))))
    df = df.withColumn("w", F.col("w").cast("float").cast("double"))  # as the default engine: float32 per row
    flag = F.when(F.col("w") > 0, F.lit(SEEN)).otherwise(F.lit(0))
    for name, bit in (("purchase", PURCHASED), ("return", RETURNED), ("offer_declined", DECLINED)):
        flag = flag.bitwiseOR(F.when(F.col("event") == name, F.lit(bit)).otherwise(F.lit(0)))
    return df.withColumn("flag", flag)


# ---------------------------------------------------------------- id maps and pair tables
def _id_frame(spark, ids: np.ndarray, name: str, index: str):
    return spark.createDataFrame(pa.table({name: ids.astype(object), index: np.arange(len(ids), dtype=np.int32)}))


def _pairs(df, shape: tuple[int, int]) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """(confidence, flags) CSR from rows with `row`, `col`, `w`, `flag`: Σ w per pair (> 0 kept) and
    the OR of the flags (non-zero kept), as training.matrix.build_matrix."""
    from pyspark.sql import functions as F

    agg = df.groupBy("row", "col").agg(F.sum("w").alias("c"), F.bit_or("flag").alias("f")).toArrow().to_pandas()
    r, c = agg["row"].to_numpy(np.int64), agg["col"].to_numpy(np.int64)
    conf, flg = agg["c"].to_numpy(np.float64), agg["f"].to_numpy(np.int64)
    pos, seen = conf > 0, flg > 0
    confidence = sp.csr_matrix((conf[pos].astype(np.float32), (r[pos], c[pos])), shape=shape, dtype=np.float32)
    flags = sp.csr_matrix((flg[seen].astype(np.uint8), (r[seen], c[seen])), shape=shape, dtype=np.uint8)
    confidence.sort_indices()
    flags.sort_indices()
    return confidence, flags


# ---------------------------------------------------------------- ALS
def als_params(cfg: TrainConfig) -> dict:
    given = cfg.params_for("als")
    unknown = sorted(set(given) - set(SPARK_ALS_DEFAULTS) - IMPLICIT_ONLY)
    if unknown:
        raise ConfigError(f"--engine spark: unknown ALS parameter(s) {', '.join(unknown)}; "
                          f"known: {', '.join(sorted(SPARK_ALS_DEFAULTS))}")
    ignored = sorted(set(given) & IMPLICIT_ONLY)
    if ignored:
        log.info("--engine spark ignores the implicit-only parameter(s) %s", ", ".join(ignored))
    return {**SPARK_ALS_DEFAULTS, **{k: v for k, v in given.items() if k in SPARK_ALS_DEFAULTS}}


def spark_reg_param(confidence: sp.csr_matrix, regularization: float) -> float:
    """spark.ml's regParam for the default engine's `regularization`: Spark multiplies regParam by each
    customer's number of items, so divide by the median customer's (with any data)."""
    n = np.diff(confidence.indptr)
    n = n[n > 0]
    return float(regularization / (np.median(n) if len(n) else 1.0))


def train_als(spark, conf_df, n_customers: int, n_items: int, p: dict, seed: int, reg_param: float,
              neighbours: bool = True) -> Factors:
    """spark.ml ALS (implicitPrefs) on (row, col, c) with c > 0; factors as numpy, rows without data zero."""
    from pyspark.ml.recommendation import ALS

    t = time.perf_counter()
    blocks = int(p["blocks"]) or max(2, spark.sparkContext.defaultParallelism)
    als = ALS(rank=int(p["factors"]), maxIter=int(p["iterations"]), regParam=float(reg_param),
              alpha=float(p["alpha"]), implicitPrefs=True, nonnegative=False, seed=int(seed),
              userCol="row", itemCol="col", ratingCol="c", coldStartStrategy="drop",
              blockSize=int(p["block_size"]), numUserBlocks=blocks, numItemBlocks=blocks,
              intermediateStorageLevel="MEMORY_AND_DISK", finalStorageLevel="MEMORY_AND_DISK")
    model = als.fit(conf_df)
    k = int(p["factors"])

    def dense(fdf, n: int) -> np.ndarray:
        t = fdf.toArrow()
        out = np.zeros((n, k), dtype=np.float32)
        if t.num_rows:
            feats = t.column("features").combine_chunks().flatten().to_numpy(zero_copy_only=False)
            out[t.column("id").to_numpy().astype(np.int64)] = feats.reshape(t.num_rows, k)
        return out

    y = dense(model.itemFactors, n_items)
    x = dense(model.userFactors, n_customers)
    seconds = time.perf_counter() - t
    used = {"factors": k, "regularization": float(p["regularization"]), "alpha": float(p["alpha"]),
            "iterations": int(p["iterations"]), "engine": "spark", "spark_reg_param": float(reg_param),
            "implicit_prefs": True,
            "fit_seconds": round(seconds, 3)}
    f = Factors(kind="factors", item_factors=as_f32(y), customer_factors=as_f32(x),
                foldin={"regularization": float(p["regularization"]), "alpha": float(p["alpha"])}, params=used)
    check_finite(f, "als (spark)", "lower alpha or the event weights, or raise regularization")
    if neighbours and p["neighbours"]:
        f = with_neighbours(f, int(p["neighbours"]))
    return f


# ---------------------------------------------------------------- evaluation
def _groups(counts: pd.DataFrame, n_customers: int) -> dict[str, np.ndarray]:
    """training.evaluate.customer_groups from per-(customer row, channel) counts."""
    r = counts["row"].to_numpy(np.int64)
    n = counts["n"].to_numpy(np.int64)
    ch = counts["channel"].to_numpy(dtype=str)
    total = np.bincount(r, weights=n, minlength=n_customers)
    store = np.bincount(r[np.isin(ch, ev.STORE)], weights=n[np.isin(ch, ev.STORE)], minlength=n_customers)
    online = np.bincount(r[np.isin(ch, ev.ONLINE)], weights=n[np.isin(ch, ev.ONLINE)], minlength=n_customers)
    active = total > 0
    store_dom = active & (3 * store >= 2 * total)
    online_dom = active & (3 * online >= 2 * total)
    median = float(np.median(total[active])) if active.any() else 0.0
    return {"store_dominant": store_dom, "online_dominant": online_dom, "both": active & ~store_dom & ~online_dom,
            "light": active & (total <= median), "heavy": active & (total > median)}


def evaluate_split(spark, w, cfg: TrainConfig, shape: tuple[int, int], p: dict, seed: int, reg_param: float):
    """Temporal split, held-out set, training popularity and groups on Spark; fit on the training part;
    metrics on the driver from each customer's top-k. Returns (results, metrics, describe)."""
    from pyspark.sql import functions as F

    from training.pipeline import _exclusion, manifest_metrics, result_key

    e = cfg.evaluation
    if e.holdout != "temporal":
        raise ConfigError("--engine spark evaluates on a temporal split only; drop --holdout-fraction")
    if e.cutoff is not None:
        cutoff = float(e.cutoff)
    else:
        if not 0.0 < e.test_fraction < 1.0:
            raise ConfigError(f"the test fraction must be within 0..1 (exclusive), got {e.test_fraction}")
        lo, hi = w.agg(F.min("ts"), F.max("ts")).collect()[0]
        cutoff = float(math.floor((hi - e.test_fraction * (hi - lo)) / DAY) * DAY)
    test = F.col("ts") >= F.lit(cutoff)
    train_rows = w.filter(~test)
    train_conf, train_flags = _pairs(train_rows, shape)
    n_train = train_rows.count()
    describe = {"holdout": "temporal", "cutoff": cutoff, "train_rows": int(n_train)}
    held = w.filter(test)
    rel = held.filter(F.col("event").isin(list(e.relevant_events)))
    if rel.limit(1).count() == 0:
        rel = held.filter(F.col("w") > 0)
    truth = rel.select("row", "col", "channel").distinct().toArrow().to_pandas()
    describe["test_rows"] = int(held.count())
    fac = train_als(spark, _conf_df(train_rows), shape[0], shape[1], p, seed, reg_param, neighbours=False)
    if len(truth) == 0:
        return {}, {"k": e.k, "split": describe, "note": "no held-out interactions to evaluate on"}, describe, fac
    ex = _exclusion(SimpleNamespace(flags=train_flags), e.exclude)
    now_tr = train_rows.agg(F.max("ts")).collect()[0][0]
    hl = cfg.popularity_half_life_days
    pw = F.greatest(F.col("w"), F.lit(0.0))
    if hl:
        pw = pw * F.pow(F.lit(2.0), -F.greatest(F.lit(float(now_tr)) - F.col("ts"), F.lit(0.0)) / F.lit(DAY * hl))
    pop_df = train_rows.groupBy("col").agg(F.sum(pw).alias("p")).toArrow().to_pandas()
    pop = np.zeros(shape[1], np.float32)
    pop[pop_df["col"].to_numpy(np.int64)] = pop_df["p"].to_numpy(np.float64)
    groups = _groups(train_rows.groupBy("row", "channel").agg(F.count("*").alias("n")).toArrow().to_pandas(), shape[0])
    kw = {"test_cust": truth["row"].to_numpy(np.int64), "test_item": truth["col"].to_numpy(np.int64),
          "test_channel": truth["channel"].to_numpy(dtype=str), "k": e.k, "n_items": shape[1], "groups": groups,
          "bootstrap": e.bootstrap, "seed": seed, "max_customers": e.max_customers}
    out = {result_key("als"): ev.evaluate(ev.recommender_for(fac, train_conf, e.k, ex, pop), **kw)}
    out["popularity"] = {**ev.evaluate(ev.popularity_recommender(train_conf, e.k, ex, pop), **kw), "baseline": True}
    bought = sp.csr_matrix(train_flags)
    bought.data = ((bought.data & PURCHASED) != 0).astype(np.float32)
    bought.eliminate_zeros()
    out["repurchase+popularity"] = {**ev.evaluate(ev.repurchase_popularity_recommender(
        train_conf, e.k, ex, pop, history=bought.multiply(train_conf).tocsr()), **kw), "baseline": True}
    for r in out.values():
        r["exclude"] = e.exclude
    metrics = manifest_metrics(out, "als", SimpleNamespace(describe=describe), e.k)
    return out, metrics, describe, fac


def _conf_df(w):
    """(row, col, c): Σ w per pair, pairs with a positive total (ALS's input)."""
    from pyspark.sql import functions as F

    return w.groupBy("row", "col").agg(F.sum("w").alias("c")).filter(F.col("c") > 0) \
            .withColumn("c", F.col("c").cast("float"))


# ---------------------------------------------------------------- fit
def _compact_dataset(spark, sd: SparkData, w, cfg: TrainConfig, now: float, customer_ids: np.ndarray,
                     item_ids: np.ndarray, confidence: sp.csr_matrix, flags: sp.csr_matrix):
    """(Dataset, InteractionMatrix, weights) for `build_artifact`: the interactions as one row per
    (customer, item, store) with its popularity weight already decayed to `now` (so ts = now), which is
    all the artifact's popularity tables and store ids read from them."""
    from pyspark.sql import functions as F

    hl = cfg.popularity_half_life_days
    pw = F.greatest(F.col("w"), F.lit(0.0))
    if hl:
        pw = pw * F.pow(F.lit(2.0), -F.greatest(F.lit(float(now)) - F.col("ts"), F.lit(0.0)) / F.lit(DAY * hl))
    agg = w.groupBy("row", "col", "store_id").agg(F.sum(pw).alias("pw")).toArrow().to_pandas()
    n = len(agg)
    cust_row = agg["row"].to_numpy(np.int64)
    item_col = agg["col"].to_numpy(np.int64)
    inter = pd.DataFrame({
        "customer_id": pd.Categorical.from_codes(cust_row, categories=pd.Index(customer_ids, dtype="str")),
        "item_id": pd.Categorical.from_codes(item_col, categories=pd.Index(item_ids, dtype="str")),
        "store_id": pd.Categorical(agg["store_id"].astype(str)),
        "ts": np.full(n, int(now), np.int64),
    })
    ds = io.Dataset(interactions=inter, catalog=sd.catalog, customers=sd.customers, stores=sd.stores,
                    stock=sd.stock, fingerprint=sd.fingerprint, n_rows=sd.n_rows, n_rejects=sd.n_rejects,
                    rejects_path=sd.rejects_path)
    m = InteractionMatrix(customer_ids=customer_ids, item_ids=item_ids, confidence=confidence, flags=flags,
                          cust_row=cust_row, item_col=item_col)
    return ds, m, agg["pw"].to_numpy(np.float64)


def fit(data: str, models_dir: str, cfg: TrainConfig, *, alias: str | None = None, until: float | None = None,
        rejects_path: str | None = None, evaluate: bool = True, force: bool = False, progress: bool = False,
        master: str | None = None, spark_conf: dict[str, str] | None = None, spark=None) -> tuple[str, dict]:
    """`training.pipeline.fit` on Spark: same stages, same artifact. `spark`: an existing session
    (tests); otherwise one is started on `master` with `spark_conf` and stopped at the end."""
    from pyspark.sql import functions as F

    from training.pipeline import Stages

    if cfg.learner != "als":
        raise ConfigError(f"--engine spark trains ALS only (spark.ml); got --learner {cfg.learner}")
    if evaluate and cfg.evaluation.holdout != "temporal":
        raise ConfigError("--engine spark evaluates on a temporal split only; drop --holdout-fraction")
    p = als_params(cfg)
    own = spark is None
    if own:
        spark = session(master, spark_conf)
    try:
        stages = Stages()
        sd = load(spark, data, rejects_path=rejects_path, max_reject_share=cfg.max_reject_share, until=until)
        stages.done("read", f"{sd.n_valid} interactions, {len(sd.catalog)} items, {sd.n_rejects} rejects"
                    + (f" (see {sd.rejects_path})" if sd.rejects_path else "") + " [spark]")
        now = float(sd.rows.agg(F.max("ts")).collect()[0][0])
        cust = sd.rows.select("customer_id").distinct().toArrow().to_pandas()["customer_id"].to_numpy(dtype=str)
        if sd.customers is not None:
            cust = np.concatenate([cust, sd.customers["customer_id"].to_numpy(dtype=str)])
        customer_ids = np.unique(cust)
        item_ids = np.sort(sd.catalog["item_id"].to_numpy(dtype=str))
        shape = (len(customer_ids), len(item_ids))
        from pyspark import StorageLevel

        w = weighted(spark, sd.rows, cfg, now)
        w = (w.join(_id_frame(spark, customer_ids, "customer_id", "row"), "customer_id")
              .join(F.broadcast(_id_frame(spark, item_ids, "item_id", "col")), "item_id")
              .select("row", "col", "channel", "event", "store_id", "ts", "w", "flag")
              .persist(StorageLevel.MEMORY_AND_DISK))
        confidence, flags = _pairs(w, shape)
        sd.rows.unpersist()
        stages.done("weight", f"{shape[0]} customers x {shape[1]} items, nnz {confidence.nnz} [spark]")
        reg_param = spark_reg_param(confidence, float(p["regularization"]))
        results, metrics, f_eval = {}, {}, None
        if evaluate:
            results, metrics, describe, f_eval = evaluate_split(spark, w, cfg, shape, p, cfg.seed, reg_param)
            o = metrics.get("overall") or {}
            stages.done("evaluate", f"{describe}; ndcg@{cfg.evaluation.k}="
                        f"{o.get(f'ndcg@{cfg.evaluation.k}', float('nan')):.4f} [spark]")
        f = train_als(spark, _conf_df(w), shape[0], shape[1], p, cfg.seed, reg_param)
        stages.done("final", f"spark.ml ALS on all data ({p['iterations']} iterations)")
        ds, m, pw = _compact_dataset(spark, sd, w, cfg, now, customer_ids, item_ids, confidence, flags)
        w.unpersist()
        params = {**f.params, "weights": asdict(cfg.weights), "evaluation": asdict(cfg.evaluation)}
        if f_eval is not None:
            params["evaluation_fit_seconds"] = f_eval.params.get("fit_seconds")
        man, arrays = build_artifact(ds, m, pw, f, learner="als", params=params, seed=cfg.seed,
                                     event_weights=cfg.weights.event_weights, metrics=metrics, now=now,
                                     popularity_half_life=cfg.popularity_half_life_days,
                                     popularity_top=cfg.popularity_top,
                                     extra={"stages": dict(stages.times), "engine": "spark",
                                            "spark_master": spark.sparkContext.master,
                                            "spark_version": spark.version,
                                            "spark_default_parallelism": spark.sparkContext.defaultParallelism},
                                     taken=lambda mid: os.path.exists(os.path.join(models_dir, mid)))
        man.data["counts"]["interactions"] = int(sd.n_valid)  # not the compact rows build_artifact saw
        reg = Registry(models_dir)
        reg.clean_temp()
        write_model(models_dir, man, arrays, extra_files={"evaluation.json": results} if results else None)
        stages.done("publish", f"{man.model_id} in {models_dir}")
        verdict: dict = {}
        if alias:
            if alias == CHAMPION:
                verdict = reg.promote(man.model_id, cfg.promotion_metric, cfg.promotion_tolerance, force)
            else:
                reg.set_alias(alias, man.model_id)
            log.info("alias %s -> %s", alias, man.model_id)
        return man.model_id, verdict
    finally:
        if own:
            spark.stop()


__all__ = ["EngineUnavailable", "check_available", "fit", "load", "parse_conf", "session", "weighted"]

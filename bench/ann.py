"""Approximate vs exact top-10 on a large catalogue: recall@10 and per-request latency, one run.

The catalogue is synthetic: 1M items x 64 factors, random but clustered (4,096 cluster centres; an
item is its centre plus Gaussian noise, scaled by a log-normal popularity; an item bias), the shape
ALS factors of a real catalogue have. 1,000 query vectors are customers drawn the same way around
random centres. Everything is seeded.

Two measurements, both single-threaded (OPENBLAS_NUM_THREADS=1, faiss.omp_set_num_threads(1)):
- `search`: the scoring step alone. Exact = the core's per-request path (one gemv over the item
  factors + `top_k` + exact rescoring); ANN = `recsvc.core.ann.search` for k = 10 + MARGIN, then the
  same exact rescoring. Recall@10 = |ANN top-10 & exact top-10| / 10, averaged over the queries.
- `rank`: the full `rank()` of the core on a 1M-item artifact written with `write_model` and loaded
  memory-mapped (`load_model`), once with its index and once with `ann_min_items` above the
  catalogue (as RECSVC_ANN_MIN_ITEMS does), for the 1,000 customers of the model: eligibility,
  exclusions, channel, reasons and availability included.

    OPENBLAS_NUM_THREADS=1 python bench/ann.py    # ~10 minutes (the index build is most of it)
    -> bench/results/ann.json

Options: --items N (default 1,000,000), --queries Q (default 1,000), --factors F (default 64),
--out FILE (trial sizes: keep bench/results/ann.json for the figure of record).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from recsvc.artifact import load_model
from recsvc.artifact.manifest import CHANNELS, NO_DATE_FROM, NO_DATE_TO, Manifest, utcnow
from recsvc.artifact.write import write_model
from recsvc.core import Context, CustomerState, RankOptions, ann
from recsvc.core.ranking import rank
from recsvc.core.scoring import MARGIN, factor_scores, refine, top_k

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "ann.json")
CLUSTERS = 4096


def factors(n_items: int, n_queries: int, d: int, seed: int = 2026):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (CLUSTERS, d)).astype(np.float32)
    y = np.empty((n_items, d), np.float32)
    label = rng.integers(0, CLUSTERS, n_items)
    for a in range(0, n_items, 1 << 17):  # in blocks: no 1M x 64 float64 temporary
        b = min(n_items, a + (1 << 17))
        y[a:b] = centres[label[a:b]] * 0.35 + rng.normal(0, 0.2, (b - a, d)).astype(np.float32)
        y[a:b] *= rng.lognormal(0, 0.25, (b - a, 1)).astype(np.float32)
    bias = rng.normal(0, 0.1, n_items).astype(np.float32)
    u = (centres[rng.integers(0, CLUSTERS, n_queries)] * 0.35
         + rng.normal(0, 0.2, (n_queries, d))).astype(np.float32)
    return y, bias, u, label


def artifact_arrays(y, bias, u, label) -> dict[str, np.ndarray]:
    n, c = len(y), len(u)
    width = len(str(n))
    item_ids = np.array([f"i{k:0{width}d}" for k in range(n)])
    cat = (label % 64).astype(np.int32)
    hist = np.random.default_rng(7).integers(0, n, (c, 5))
    hist.sort(axis=1)
    empty_groups = (np.full((1, 10), -1, np.int32), np.zeros((1, 10), np.float32))
    return {
        "item_ids": item_ids,
        "item_title": np.char.add("Item ", item_ids),
        "item_category": cat,
        "category_names": np.array([f"cat{k:02d}" for k in range(64)]),
        "item_price": (5 + (np.arange(n) % 200)).astype(np.float32),
        "item_valid_from": np.full(n, NO_DATE_FROM, np.int64),
        "item_valid_to": np.full(n, NO_DATE_TO, np.int64),
        "locale_names": np.array(["en-GB"]),
        "item_locales": np.ones((n, 1), bool),
        "item_channels": np.ones((n, len(CHANNELS)), bool),
        "pop_global": np.linspace(1, 0, n, dtype=np.float32),
        "customer_ids": np.array([f"c{k:05d}" for k in range(c)]),
        "customer_segment": np.full(c, -1, np.int16),
        "segment_names": np.array([], dtype="<U1"),
        "hist_indptr": np.arange(0, 5 * c + 1, 5, dtype=np.int64),
        "hist_items": hist.reshape(-1).astype(np.int32),
        "hist_flags": np.full(5 * c, 3, np.uint8),  # seen + purchased: excluded from the lists
        "hist_weights": np.ones(5 * c, np.float32),
        "store_ids": np.array(["s1"]),
        "pop_store_items": empty_groups[0], "pop_store_scores": empty_groups[1],
        "pop_locale_items": empty_groups[0], "pop_locale_scores": empty_groups[1],
        "pop_segment_items": np.zeros((0, 10), np.int32), "pop_segment_scores": np.zeros((0, 10), np.float32),
        "stock_indptr": np.array([0, 0], np.int64),
        "stock_items": np.empty(0, np.int32), "stock_qty": np.empty(0, np.int32),
        "item_factors": y, "customer_factors": u, "item_bias": bias,
    }


def anonymous_mib() -> float:
    """Private (anonymous) memory of this process: what a worker does not share with its siblings."""
    with open("/proc/self/smaps_rollup", encoding="ascii") as f:
        for line in f:
            if line.startswith("Anonymous:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def timed(fn, items) -> tuple[list, float]:
    out = []
    t = time.perf_counter()
    for x in items:
        out.append(fn(x))
    return out, (time.perf_counter() - t) / max(1, len(items))


def recall(a: list, b: list, k: int = 10) -> float:
    return float(np.mean([len(set(list(x)[:k]) & set(list(y)[:k])) / k for x, y in zip(a, b)]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--factors", type=int, default=64)
    ap.add_argument("--keep", help="keep the artifact in this folder (default: a temporary one)")
    ap.add_argument("--out", default=RESULTS, help="results JSON (default bench/results/ann.json, the figure "
                                                   "of record: give another path for trial sizes)")
    args = ap.parse_args()

    import faiss

    faiss.omp_set_num_threads(1)
    t0 = time.perf_counter()
    y, bias, u, label = factors(args.items, args.queries, args.factors)
    print(f"{args.items:,} items x {args.factors} factors, {args.queries} queries "
          f"({time.perf_counter() - t0:.1f} s to generate)", flush=True)

    t = time.perf_counter()
    blob = ann.build_index(y, bias)
    build_s = time.perf_counter() - t
    print(f"index built in {build_s:.1f} s on one thread: {blob.nbytes / 2**20:.0f} MiB "
          f"(factors {y.nbytes / 2**20:.0f} MiB)", flush=True)

    # -- the scoring step alone
    index, _buf = ann.load_index(blob)
    want = 10

    def exact_one(q):
        s = factor_scores(y, q, bias)
        rows = top_k(s, want + MARGIN)
        return refine(y, q, rows, want, bias)[0]

    def ann_one(q):
        rows = ann.search(index, q, want + MARGIN)
        return refine(y, q, rows, want, bias)[0]

    exact_one(u[0]), ann_one(u[0])  # warm
    ex, ex_s = timed(exact_one, u)
    ap_, ap_s = timed(ann_one, u)
    search = {"exact_ms": round(ex_s * 1e3, 3), "ann_ms": round(ap_s * 1e3, 3),
              "speedup": round(ex_s / ap_s, 1), "recall_at_10": round(recall(ap_, ex), 4)}
    print(f"search: exact {search['exact_ms']} ms, ann {search['ann_ms']} ms per request "
          f"({search['speedup']}x), recall@10 {search['recall_at_10']}", flush=True)
    index = _buf = None  # the artifact below reads its own copy

    # -- through rank(): a memory-mapped 1M-item artifact
    folder = args.keep or tempfile.mkdtemp(prefix="recsvc-ann-")
    try:
        arrays = artifact_arrays(y, bias, u, label)
        arrays["ann_index"] = blob
        scoring = {"kind": "factors", "foldin": {"regularization": 0.1, "alpha": 1.0},
                   "event_weights": {"view": 1.0, "purchase": 8.0},
                   "ann": {"kind": "hnsw", "metric": "inner_product", "library": "faiss",
                           "min_items": min(args.items, ann.DEFAULT_MIN_ITEMS), "m": ann.DEFAULT_M,
                           "ef_construction": ann.DEFAULT_EF_CONSTRUCTION, "ef_search": ann.DEFAULT_EF_SEARCH,
                           "bias_column": True, "build_seconds": round(build_s, 3)}}
        man = Manifest(model_id="als-bench-ann", learner="als", created_at=utcnow().isoformat(), params={},
                       seed=0, scoring=scoring)
        t = time.perf_counter()
        write_model(folder, man, arrays)
        write_s = time.perf_counter() - t
        arrays = y = u = None  # free them: the model below is memory-mapped
        path = os.path.join(folder, "als-bench-ann")
        approx, exact = load_model(path), load_model(path)
        exact.ann_min_items = 10**12
        before = anonymous_mib()
        ann.index_of(approx)  # read zero-copy over the memory-mapped ann_index.npy
        private_mib = anonymous_mib() - before
        cids = [str(c) for c in approx.customer_ids]
        opts, ctx = RankOptions(n=10), Context("web", store_id="s1")

        def ids(model):
            def one(c):
                return [o.item_id for o in rank(model, CustomerState(c), ctx, opts).offers]
            return one

        ids(approx)(cids[0]), ids(exact)(cids[0])  # warm: masks, index read
        r_ex, r_ex_s = timed(ids(exact), cids)
        r_ap, r_ap_s = timed(ids(approx), cids)
        counts = dict(ann.counts(approx))
        through_rank = {"exact_ms": round(r_ex_s * 1e3, 3), "ann_ms": round(r_ap_s * 1e3, 3),
                        "speedup": round(r_ex_s / r_ap_s, 1), "recall_at_10": round(recall(r_ap, r_ex), 4),
                        "ann_requests": counts["ann"], "fallbacks": counts["fallback"],
                        "index_private_mib_per_worker": round(private_mib, 1)}
        print(f"rank(): exact {through_rank['exact_ms']} ms, ann {through_rank['ann_ms']} ms per request "
              f"({through_rank['speedup']}x), recall@10 {through_rank['recall_at_10']} "
              f"({counts['ann']} through the index, {counts['fallback']} fell back); reading the index "
              f"added {private_mib:.1f} MiB of private memory", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)

    out = {
        "items": args.items, "factors": args.factors, "queries": args.queries,
        "data": f"synthetic, seeded: {CLUSTERS} cluster centres, item = centre x 0.35 + N(0, 0.2) noise, "
                "x log-normal(0, 0.25) scale, + N(0, 0.1) item bias; queries drawn around random centres",
        "index": {"kind": "hnsw", "library": f"faiss {faiss.__version__}", "metric": "inner_product",
                  "m": ann.DEFAULT_M, "ef_construction": ann.DEFAULT_EF_CONSTRUCTION,
                  "ef_search": ann.DEFAULT_EF_SEARCH, "build_s_one_thread": round(build_s, 1),
                  "size_mib": round(blob.nbytes / 2**20, 1), "factors_mib": round(args.items * args.factors * 4 / 2**20, 1)},
        "search": search,
        "rank": through_rank,
        "artifact_write_s": round(write_s, 1),
        "goals": {"recall_at_10_min": 0.95, "speedup_min": 10,
                  "met": bool(search["recall_at_10"] >= 0.95 and search["speedup"] >= 10
                              and through_rank["recall_at_10"] >= 0.95 and through_rank["speedup"] >= 10)},
        "threads": 1,
        "machine": {"cpu_count": os.cpu_count(), "load_average": os.getloadavg(), "python": platform.python_version(),
                    "numpy": np.__version__},
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=2)
    print(f"goals met: {out['goals']['met']} -> {args.out}")


if __name__ == "__main__":
    main()

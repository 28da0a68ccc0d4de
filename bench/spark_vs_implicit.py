"""Spark vs implicit: `recsvc-train fit` with each engine on the same synthetic data, side by side.

Protocol (issue 9, "Figures"):

1. `recsvc-train synth` writes the data under --work (cached: a re-run skips it).
2. `recsvc-train fit` (default engine: implicit ALS on this machine) and `recsvc-train fit --engine
   spark` (spark.ml ALS on a local Spark session, `--spark-master`), each under `/usr/bin/time -v`:
   wall seconds end to end (read, validate, weight, split, evaluation fit, final fit, publish), peak
   RSS of the largest process (/usr/bin/time) and of the whole process tree (psutil, sampled every
   0.5 s: for Spark the Python driver plus the JVM), the load average before and after (the machine's
   cores are shared), stage times from the manifest, NDCG@10 on the same temporal hold-out (and the
   popularity baseline, which both engines compute from the same data).
3. Both engines get the same ALS parameters (config below: the default engine's defaults, written
   out so neither tunes).

    python bench/spark_vs_implicit.py --scale 10m   # 10M events, 1M customers, 100k items (seed 3)
    python bench/spark_vs_implicit.py --scale 2m    # 2M events, 200k customers, 50k items
    python bench/spark_vs_implicit.py --scale 10m --engines spark   # one engine; merged into the entry

Writes bench/results/spark_vs_implicit.json (the scales run so far, one entry each). On one machine
Spark is expected to be slower: the figure is for the README's sizing table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import subprocess
import sys
import time

try:
    import psutil
except ImportError:  # no tree RSS then; /usr/bin/time's largest process still
    psutil = None

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results", "spark_vs_implicit.json")
SCALES = {
    "2m": {"customers": 200_000, "items": 50_000, "events": 2_000_000, "seed": 3},
    "10m": {"customers": 1_000_000, "items": 100_000, "events": 10_000_000, "seed": 3},
}
CONFIG = """\
seed = 0
[learners.als]
factors = 64
regularization = 0.01
alpha = 1.0
iterations = 15
"""


def cli() -> list[str]:
    exe = os.path.join(os.path.dirname(sys.executable), "recsvc-train")
    return [exe] if os.path.exists(exe) else [sys.executable, "-m", "training"]


def _tree_rss(proc) -> int:
    """Bytes resident in `proc` and all its descendants (the driver, spark-submit and the JVM)."""
    total = 0
    for q in [proc, *proc.children(recursive=True)]:
        try:
            total += q.memory_info().rss
        except psutil.Error:
            pass
    return total


def timed(cmd: list[str], timeout: float, log_path: str) -> dict:
    """Run under /usr/bin/time -v (when present): wall seconds, the largest single process's peak RSS,
    the peak of the whole process tree's RSS (sampled every 0.5 s with psutil: for Spark the Python
    driver and the JVM together), the load average before and after, the printed model id."""
    wrap = ["/usr/bin/time", "-v"] if os.path.exists("/usr/bin/time") else []
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    load_before = [round(x, 2) for x in os.getloadavg()]
    t = time.perf_counter()
    peak_tree = 0
    with open(log_path, "w") as err, subprocess.Popen(wrap + cmd, stdout=subprocess.PIPE, stderr=err, text=True,
                                                      stdin=subprocess.DEVNULL, env=env) as p:
        root = psutil.Process(p.pid) if psutil is not None else None
        while p.poll() is None:
            if time.perf_counter() - t > timeout:
                p.kill()
                raise SystemExit(f"{' '.join(cmd[:4])} ... timed out after {timeout:.0f}s (log {log_path})")
            if root is not None:
                with contextlib.suppress(psutil.Error):  # the process ended between poll() and the sample
                    peak_tree = max(peak_tree, _tree_rss(root))
            time.sleep(0.5)
        stdout = p.stdout.read()
    wall = time.perf_counter() - t
    with open(log_path) as f:
        stderr = f.read()
    if p.returncode != 0:
        tail = " | ".join(stderr.strip().splitlines()[-4:])
        raise SystemExit(f"{' '.join(cmd[:4])} ... failed ({p.returncode}): {tail} (log {log_path})")
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", stderr)
    return {"wall_s": round(wall, 1),
            "peak_rss_largest_process_mb": round(int(m.group(1)) / 1024) if m else None,
            "peak_rss_process_tree_mb": round(peak_tree / 2**20) if peak_tree else None,
            "load_average_before": load_before, "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "model_id": stdout.strip().splitlines()[-1]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", choices=SCALES, default="10m")
    ap.add_argument("--work", default=os.path.join(HERE, "work"))
    ap.add_argument("--spark-master", default="local[*]")
    ap.add_argument("--spark-driver-memory", default="8g")
    ap.add_argument("--engines", default="implicit,spark")
    ap.add_argument("--timeout", type=float, default=7200)
    a = ap.parse_args()
    sc = SCALES[a.scale]
    work = os.path.join(a.work, f"spark-{a.scale}")
    data = os.path.join(work, "data")
    os.makedirs(work, exist_ok=True)
    if not os.path.exists(os.path.join(data, "interactions.csv")):
        t = time.perf_counter()
        subprocess.run(cli() + ["synth", "--out", data, "--customers", str(sc["customers"]), "--items",
                                str(sc["items"]), "--events", str(sc["events"]), "--seed", str(sc["seed"])],
                       check=True, stdout=subprocess.DEVNULL)
        print(f"synth {a.scale}: {time.perf_counter() - t:.0f}s", flush=True)
    cfg = os.path.join(work, "als.toml")
    with open(cfg, "w") as f:
        f.write(CONFIG)
    out: dict = {}
    for engine in a.engines.split(","):
        models = os.path.join(work, f"models-{engine}")
        cmd = cli() + ["fit", "--data", data, "--models-dir", models, "--config", cfg,
                       "--rejects", os.path.join(work, f"rejects-{engine}.csv")]
        if engine == "spark":
            cmd += ["--engine", "spark", "--spark-master", a.spark_master,
                    "--spark-conf", f"spark.driver.memory={a.spark_driver_memory}"]
        print(f"fit --engine {engine} ...", flush=True)
        r = timed(cmd, a.timeout, os.path.join(work, f"fit-{engine}.log"))
        with open(os.path.join(models, r["model_id"], "manifest.json")) as f:
            man = json.load(f)
        met = man["metrics"]
        r.update({
            "ndcg@10": round(met["overall"]["ndcg@10"], 4),
            "ndcg@10_ci95": [round(x, 4) for x in met["overall"]["ci95"]["ndcg@10"]],
            "recall@10": round(met["overall"]["recall@10"], 4),
            "popularity_ndcg@10": round(met["baselines"]["popularity"]["overall"]["ndcg@10"], 4),
            "evaluated_customers": met["customers"],
            "stages_s": man.get("stages") or man.get("extra", {}).get("stages"),
            "params": {k: man["params"].get(k) for k in ("factors", "regularization", "alpha", "iterations",
                                                         "spark_reg_param") if k in man["params"]},
            "counts": man["data"]["counts"],
        })
        out[engine] = r
        print(f"  {engine}: {r['wall_s']:.0f}s wall, peak RSS {r['peak_rss_process_tree_mb']} MiB (tree), "
              f"ndcg@10 {r['ndcg@10']:.4f} "
              f"(popularity {r['popularity_ndcg@10']:.4f})", flush=True)
    results = {}
    if os.path.exists(RESULTS):
        with open(RESULTS) as f:
            results = json.load(f)
    # engines run one at a time (--engines spark, then --engines implicit) land in the same entry
    engines = {**results.get(a.scale, {}).get("engines", {}), **out}
    entry = {"scale": a.scale, **sc, "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                                  "note": "2 cores shared with other work: see each "
                                                          "engine's load_average_before/after"},
             "spark_master": a.spark_master, "spark_driver_memory": a.spark_driver_memory,
             "config": CONFIG, "engines": engines,
             "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if "implicit" in engines and "spark" in engines:
        entry["spark_over_implicit_wall"] = round(engines["spark"]["wall_s"] / engines["implicit"]["wall_s"], 2)
        entry["ndcg@10_difference"] = round(engines["spark"]["ndcg@10"] - engines["implicit"]["ndcg@10"], 4)
    results[a.scale] = entry
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as f:
        json.dump(results, f, indent=2, sort_keys=True)
        f.write("\n")
    print(json.dumps({k: v for k, v in entry.items() if k != "config"}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

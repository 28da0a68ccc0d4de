"""Training speed: `recsvc-train fit --learner als` end to end vs the bare `implicit` ALS fit.

Protocol (issue 3, "Speed"; `../shared/checks/A-train-speed` runs the 2M variant):

1. `recsvc-train synth` writes the data (cached under --work, so a re-run skips it).
2. `recsvc-train fit --learner als` runs under `/usr/bin/time -v`: wall seconds end to end (read,
   validate, weight, build, train, evaluate, publish) and peak RSS. The stage times come from the
   manifest (`stages`).
3. In the same run, the customer x item CSR (count of rows per pair, as the check builds it) is fitted
   by bare `implicit` ALS with the factors / iterations / regularization the manifest reports.

    python bench/train_speed.py --scale 2m     # 2M events, 200k customers, 50k items (seed 3)
    python bench/train_speed.py --scale 10m    # 10M events, 1M customers, 100k items (the issue's)

Writes bench/results/train_speed-<scale>.json. Target: fit <= 2x bare ALS, peak < 8 GiB.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as the check and gunicorn run: implicit threads itself

import numpy as np
import pandas as pd
import scipy.sparse as sp

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
SCALES = {
    "2m": {"customers": 200_000, "items": 50_000, "events": 2_000_000, "seed": 3},
    "10m": {"customers": 1_000_000, "items": 100_000, "events": 10_000_000, "seed": 3},
}
TARGET_RATIO, TARGET_PEAK_MB = 2.0, 8192


def cli() -> list[str]:
    """The recsvc-train of this interpreter's environment."""
    exe = os.path.join(os.path.dirname(sys.executable), "recsvc-train")
    return [exe] if os.path.exists(exe) else [sys.executable, "-m", "training"]


def run(cmd: list[str], timeout: float) -> tuple[float, subprocess.CompletedProcess]:
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False)
    dt = time.perf_counter() - t
    if p.returncode != 0:
        tail = (p.stderr or p.stdout).strip().splitlines()[-3:]
        raise SystemExit(f"{' '.join(cmd[:3])} ... failed ({p.returncode}): {' | '.join(tail)}")
    return dt, p


def read_text(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def peak_rss_mb(time_v: str) -> float | None:
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", time_v)
    return int(m.group(1)) / 1024 if m else None


def cpu_seconds(time_v: str) -> float | None:
    """User + system CPU seconds of the timed command (both cores count)."""
    u = re.search(r"User time \(seconds\): ([\d.]+)", time_v)
    s = re.search(r"System time \(seconds\): ([\d.]+)", time_v)
    return round(float(u.group(1)) + float(s.group(1)), 2) if u and s else None


def count_csr(data_dir: str) -> sp.csr_matrix:
    """customer x item float32 CSR of row counts: the check's reference matrix."""
    df = pd.read_csv(os.path.join(data_dir, "interactions.csv"), usecols=["customer_id", "item_id"],
                     dtype=str, keep_default_na=False)
    u, ui = np.unique(df["customer_id"].to_numpy(dtype=str), return_inverse=True)
    i, ii = np.unique(df["item_id"].to_numpy(dtype=str), return_inverse=True)
    m = sp.csr_matrix((np.ones(len(ui), np.float32), (ui, ii)), shape=(len(u), len(i)), dtype=np.float32)
    m.sum_duplicates()
    return m


def bare_als_seconds(m: sp.csr_matrix, factors: int, iterations: int, regularization: float) -> float:
    """Wall seconds of implicit's ALS model.fit alone (CPU, its default threads), as the check times it."""
    from implicit.als import AlternatingLeastSquares

    model = AlternatingLeastSquares(factors=factors, regularization=regularization, iterations=iterations,
                                    alpha=1.0, random_state=0)
    t = time.perf_counter()
    model.fit(m, show_progress=False)
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", choices=sorted(SCALES), default="2m")
    ap.add_argument("--work", default=os.path.join(HERE, "work"),
                    help="data and models; the data is generated once and reused (default bench/work, gitignored)")
    ap.add_argument("--timeout", type=float, default=7200)
    a = ap.parse_args(argv)
    s = SCALES[a.scale]
    data = os.path.join(a.work, f"speed-{a.scale}", "data")
    models = os.path.join(a.work, f"speed-{a.scale}", "models")
    out: dict = {"scale": a.scale, "data": s, "cores": os.cpu_count(),
                 "load_average_before": [round(x, 2) for x in os.getloadavg()]}
    if not os.path.exists(os.path.join(data, "interactions.csv")):
        dt, _ = run(cli() + ["synth", "--out", data, "--customers", str(s["customers"]), "--items",
                             str(s["items"]), "--events", str(s["events"]), "--seed", str(s["seed"])], a.timeout)
        out["synth_seconds"] = round(dt, 1)
        print(f"synth {s['events']:,} events: {dt:.1f}s", flush=True)
    shutil.rmtree(models, ignore_errors=True)
    timev = os.path.join(a.work, f"speed-{a.scale}", "time.txt")
    cmd = (["/usr/bin/time", "-v", "-o", timev] if os.path.exists("/usr/bin/time") else []) + cli() + [
        "fit", "--data", data, "--learner", "als", "--models-dir", models]
    fit_s, p = run(cmd, a.timeout)
    model_id = p.stdout.strip().splitlines()[-1]
    peak = peak_rss_mb(read_text(timev)) if os.path.exists(timev) else None
    fit_cpu = cpu_seconds(read_text(timev)) if os.path.exists(timev) else None
    man = json.loads(read_text(os.path.join(models, model_id, "manifest.json")))
    params = man["params"]
    f, it, reg = int(params["factors"]), int(params["iterations"]), float(params["regularization"])
    print(f"fit --learner als: {fit_s:.1f}s (cpu {fit_cpu}s), peak {peak and round(peak)} MB -> {model_id}",
          flush=True)
    print("  stages: " + ", ".join(f"{k} {v:.1f}s" for k, v in man.get("stages", {}).items()), flush=True)
    t = time.perf_counter()
    m = count_csr(data)
    csr_s = time.perf_counter() - t
    cpu0 = time.process_time()
    bare = bare_als_seconds(m, f, it, reg)
    bare_cpu = round(time.process_time() - cpu0, 2)
    ratio = fit_s / bare
    ok = ratio <= TARGET_RATIO and (peak is None or peak < TARGET_PEAK_MB)
    print(f"bare implicit ALS ({f} factors, {it} iterations, reg {reg}) on {m.shape[0]:,}x{m.shape[1]:,} "
          f"nnz {m.nnz:,}: {bare:.1f}s (cpu {bare_cpu}s; CSR built in {csr_s:.1f}s)")
    out["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    print(f"load average before/after (other work on the machine skews both timings): "
          f"{out['load_average_before']} / {out['load_average_after']}")
    print(f"ratio {ratio:.2f} (target <= {TARGET_RATIO}), peak {peak and round(peak)} MB "
          f"(target < {TARGET_PEAK_MB}): {'OK' if ok else 'MISSED'}")
    out.update(model_id=model_id, fit_seconds=round(fit_s, 2), fit_cpu_seconds=fit_cpu, bare_als_cpu_seconds=bare_cpu,
               peak_rss_mb=peak and round(peak),
               stages=man.get("stages", {}), params={"factors": f, "iterations": it, "regularization": reg},
               bare_als_seconds=round(bare, 2), bare_matrix={"shape": list(m.shape), "nnz": int(m.nnz)},
               ratio=round(ratio, 3), target_ratio=TARGET_RATIO, target_peak_mb=TARGET_PEAK_MB, ok=ok,
               metrics=man.get("metrics", {}).get("overall"), measured_at=time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                          time.gmtime()))
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, f"train_speed-{a.scale}.json")
    with open(path, "w") as fh:
        json.dump(out, fh, indent=2, sort_keys=True)
    print(f"wrote {os.path.relpath(path)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

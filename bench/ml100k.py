"""MovieLens-100K quality, the protocol of `../shared/checks/A-ml100k-quality`, every learner through the CLI.

All ratings are positives; per-user random 75/25 split (users in sorted order, each user's rows in file
order permuted with one numpy default_rng(2026)); the training part becomes a data directory
(event `rating`, channel `web`, epoch timestamps, no rating value); each learner is fitted with
`recsvc-train fit` and `recsvc-train recommend --all --n 10 --exclude seen` writes its lists, which are
scored against the held-out part: NDCG@10, precision@10, recall@10, MAP@10 (mean over test users; a
user without a list scores 0). Target (issue 3): the best learner reaches NDCG@10 >= 0.44 and
P@10 >= 0.39 (published BPR figures for this protocol: 0.442 / 0.388).

    python bench/ml100k.py [--src ../shared/data/ml-100k/original] [--learners default,als,bpr,...]

Writes bench/results/ml100k.json.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
import os
import subprocess
import sys
import time

import numpy as np
import pandas as pd

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")
DEFAULT_SRC = os.path.join(ROOT, "..", "shared", "data", "ml-100k", "original")
LEARNERS = ("default", "als", "bpr", "lightfm", "itemknn", "ease", "popularity")
K, SEED, TEST_FRACTION = 10, 2026, 0.25
GOAL_NDCG, GOAL_P = 0.44, 0.39


def cli() -> list[str]:
    exe = os.path.join(os.path.dirname(sys.executable), "recsvc-train")
    return [exe] if os.path.exists(exe) else [sys.executable, "-m", "training"]


def run(args: list[str], timeout: float = 3600) -> tuple[int, str, str, float]:
    t = time.perf_counter()
    p = subprocess.run(cli() + args, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                       check=False)
    return p.returncode, p.stdout, p.stderr, time.perf_counter() - t


def last_line(text: str) -> str:
    lines = [x for x in text.strip().splitlines() if x.strip()]
    return lines[-1] if lines else ""


# ---------------------------------------------------------------- data and split (the check's)
def load(src: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    r = pd.read_csv(os.path.join(src, "u.data"), sep="\t", names=["user", "item", "rating", "ts"])
    with open(os.path.join(src, "u.genre"), encoding="latin-1") as f:
        genres = [line.split("|")[0] for line in f if "|" in line]
    rows = []
    with open(os.path.join(src, "u.item"), encoding="latin-1") as f:
        for line in f:
            p = line.rstrip("\n").split("|")
            if len(p) < 6:
                continue
            flags = p[5:5 + len(genres)]
            rows.append((p[0], p[1], next((genres[j] for j, x in enumerate(flags) if x == "1"), "unknown"), 1))
    return r, pd.DataFrame(rows, columns=["item_id", "title", "category", "price"])


def per_user_split(users: np.ndarray, seed: int = SEED, fraction: float = TEST_FRACTION) -> np.ndarray:
    """True = test row: for each user (sorted), ceil(fraction x n) of its rows, file order permuted."""
    rng = np.random.default_rng(seed)
    order = np.argsort(users, kind="stable")
    su = users[order]
    bounds = np.flatnonzero(np.r_[True, su[1:] != su[:-1], True])
    test = np.zeros(len(users), dtype=bool)
    for a, b in itertools.pairwise(bounds):
        perm = order[a:b][rng.permutation(b - a)]
        test[perm[:math.ceil(fraction * (b - a))]] = True
    return test


def write_data_dir(r: pd.DataFrame, cat: pd.DataFrame, test: np.ndarray, out: str) -> None:
    os.makedirs(out, exist_ok=True)
    tr = r[~test]
    pd.DataFrame({"customer_id": tr["user"].astype(str), "item_id": tr["item"].astype(str), "event": "rating",
                  "channel": "web", "timestamp": tr["ts"].astype("int64")}
                 ).to_csv(os.path.join(out, "interactions.csv"), index=False)
    cat.to_csv(os.path.join(out, "catalog.csv"), index=False)


# ---------------------------------------------------------------- metrics
def metrics(recs: dict[str, list[str]], truth: dict[str, set[str]], k: int = K) -> dict:
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    acc = np.zeros(4)
    for u, t in truth.items():
        r = recs.get(u, [])[:k]
        hits = np.array([i in t for i in r], dtype=float)
        hits = np.pad(hits, (0, k - len(hits)))
        idcg = disc[:min(len(t), k)].sum()
        prec_at = np.cumsum(hits) / np.arange(1, k + 1)
        acc += (hits @ disc / idcg, hits.sum() / k, hits.sum() / len(t), (prec_at * hits).sum() / min(len(t), k))
    acc /= max(len(truth), 1)
    return {f"ndcg@{k}": acc[0], f"precision@{k}": acc[1], f"recall@{k}": acc[2], f"map@{k}": acc[3],
            "users": len(truth)}


def read_recs(path: str) -> dict[str, list[str]]:
    out: dict[str, list[tuple[int, str]]] = {}
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            out.setdefault(row["customer_id"], []).append((int(row["rank"]), row["item_id"]))
    return {u: [i for _, i in sorted(v)] for u, v in out.items()}


# ---------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--src", default=DEFAULT_SRC)
    ap.add_argument("--learners", default=",".join(LEARNERS))
    ap.add_argument("--work", default="/tmp/recsvc-bench/ml100k")
    a = ap.parse_args(argv)
    r, cat = load(a.src)
    test = per_user_split(r["user"].to_numpy())
    truth: dict[str, set[str]] = {}
    for u, i in zip(r["user"].astype(str)[test], r["item"].astype(str)[test], strict=True):
        truth.setdefault(u, set()).add(i)
    data, models = os.path.join(a.work, "data"), os.path.join(a.work, "models")
    write_data_dir(r, cat, test, data)
    print(f"split: {int((~test).sum())} train / {int(test.sum())} test rows, {len(truth)} test users", flush=True)
    results = []
    for name in [x.strip() for x in a.learners.split(",") if x.strip()]:
        res: dict = {"learner": name}
        args = ["-q", "fit", "--data", data, "--models-dir", models] + ([] if name == "default" else
                                                                         ["--learner", name])
        rc, out, err, fit_s = run(args)
        res["fit_seconds"] = round(fit_s, 1)
        if rc != 0:
            res["error"] = last_line(err)
            print(f"{name:<11} fit failed: {res['error']}", flush=True)
            results.append(res)
            continue
        mid = last_line(out)
        recs_csv = os.path.join(a.work, f"recs-{name}.csv")
        rc, _, err, rec_s = run(["-q", "recommend", "--model", mid, "--models-dir", models, "--data", data, "--all",
                                 "--n", str(K), "--exclude", "seen", "--out", recs_csv])
        res.update(model_id=mid, recommend_seconds=round(rec_s, 1))
        if rc != 0:
            res["error"] = last_line(err)
            print(f"{name:<11} recommend failed: {res['error']}", flush=True)
            results.append(res)
            continue
        with open(os.path.join(models, mid, "manifest.json"), encoding="utf-8") as f:
            params = json.load(f)["params"]
        res["params"] = {k: v for k, v in params.items() if k not in ("weights", "evaluation", "tuning")}
        res.update({k: round(float(v), 4) if isinstance(v, float) else v for k, v in
                    metrics(read_recs(recs_csv), truth).items()})
        print(f"{name:<11} ndcg@10 {res['ndcg@10']:.4f}  p@10 {res['precision@10']:.4f}  "
              f"recall@10 {res['recall@10']:.4f}  map@10 {res['map@10']:.4f}  "
              f"(fit {fit_s:.1f}s, recommend {rec_s:.1f}s)", flush=True)
        results.append(res)
    ok = [x for x in results if "ndcg@10" in x]
    both = [x for x in ok if x["ndcg@10"] >= GOAL_NDCG and x["precision@10"] >= GOAL_P]
    best = max(both or ok, key=lambda x: (x["ndcg@10"], x["precision@10"])) if ok else None
    verdict = {"goal": {"ndcg@10": GOAL_NDCG, "precision@10": GOAL_P}, "met": bool(both),
               "best": best and best["learner"]}
    if best:
        print(f"best: {best['learner']} ndcg@10 {best['ndcg@10']:.4f} p@10 {best['precision@10']:.4f} "
              f"(goal {GOAL_NDCG}/{GOAL_P}): {'MET' if both else 'MISSED'}")
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, "ml100k.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"protocol": {"split": "per-user random 75/25, numpy default_rng(2026)", "k": K,
                                "exclude": "seen", "positives": "all ratings"},
                   "results": results, "verdict": verdict,
                   "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, f, indent=2)
    print(f"wrote {os.path.relpath(path)}")
    return 0 if both else 1


if __name__ == "__main__":
    sys.exit(main())

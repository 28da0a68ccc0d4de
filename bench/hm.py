"""H&M cross-channel sample: every learner and both baselines, overall, per channel and per customer group.

Protocol (issue 3, "H&M"): `recsvc-train convert hm` on `../shared/data/hm-crosschannel`, temporal
split on the last 8 weeks (cut-off = day after the last purchase - 56 days), k = 12, MAP@12 and
NDCG@12 with bootstrap 95% intervals, through `recsvc-train evaluate` (one run per learner, so a
learner that refuses the data, EASE above its item limit, is reported without stopping the others).

Every list, the model's and both baselines', obeys the same history exclusion, and the benchmark runs
both rules serving offers:
- `purchased` (the contract's default): nothing bought before is offered again. "Repurchase +
  popularity" then has nothing of its own to offer and equals popularity.
- `none` ("buy it again"): past purchases may come back, which is what the repurchase baseline does.

Verdict for the default learner: beats both baselines overall and on each channel (NDCG@12 and MAP@12),
and its worst customer group keeps >= 90% of the best group's lift over popularity (lift = NDCG@12
of the learner minus NDCG@12 of popularity in that group). The data facts printed first (test
customers, share of held-out purchases that are repurchases or of items nobody bought before the
cut-off) say how much any learner can show here.

    python bench/hm.py [--src ../shared/data/hm-crosschannel] [--learners als,bpr,...] [--exclude purchased,none]

Writes bench/results/hm.json (the full reports stay under --work).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import pandas as pd

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")
DEFAULT_SRC = os.path.join(ROOT, "..", "shared", "data", "hm-crosschannel")
LEARNERS = ("als", "bpr", "lightfm", "itemknn", "ease", "popularity")
BASELINES = ("popularity", "repurchase+popularity")
WEEKS, K, GROUP_SHARE = 8, 12, 0.9


def cli() -> list[str]:
    exe = os.path.join(os.path.dirname(sys.executable), "recsvc-train")
    return [exe] if os.path.exists(exe) else [sys.executable, "-m", "training"]


def run(args: list[str], timeout: float = 3600) -> subprocess.CompletedProcess:
    return subprocess.run(cli() + args, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, check=False)


def last_line(text: str) -> str:
    lines = [x for x in (text or "").strip().splitlines() if x.strip()]
    return lines[-1] if lines else ""


def cutoff_of(data: str, weeks: int) -> str:
    ts = pd.to_datetime(pd.read_csv(os.path.join(data, "interactions.csv"), usecols=["timestamp"])["timestamp"],
                        utc=True)
    last_day = ts.max().normalize()
    return (last_day + pd.Timedelta(days=1) - pd.Timedelta(weeks=weeks)).strftime("%Y-%m-%d")


def data_facts(data: str, cutoff: str) -> dict:
    """What the held-out purchases look like: how much any learner can learn from the past."""
    df = pd.read_csv(os.path.join(data, "interactions.csv"), dtype=str, keep_default_na=False)
    ts = pd.to_datetime(df["timestamp"], utc=True)
    test = ts >= pd.Timestamp(cutoff, tz="UTC")
    train, held = df[~test], df[test]
    bought = set(zip(train["customer_id"], train["item_id"], strict=True))
    known_items = set(train["item_id"])
    product = {i[:7] for i in known_items}
    own_products = set(zip(train["customer_id"], train["item_id"].str[:7], strict=True))
    pairs = list(zip(held["customer_id"], held["item_id"], strict=True))
    n = max(len(pairs), 1)
    return {
        "train_rows": int((~test).sum()), "test_rows": int(test.sum()),
        "test_customers": int(held["customer_id"].nunique()),
        "test_customers_with_history": int(held.loc[held["customer_id"].isin(set(train["customer_id"])),
                                                    "customer_id"].nunique()),
        "share_repurchase": round(sum(p in bought for p in pairs) / n, 4),
        "share_same_product_as_own_purchase": round(sum((c, i[:7]) in own_products for c, i in pairs) / n, 4),
        "share_item_never_bought_before_cutoff": round(sum(i not in known_items for _, i in pairs) / n, 4),
        "share_product_never_bought_before_cutoff": round(sum(i[:7] not in product for _, i in pairs) / n, 4),
        "test_rows_by_channel": held["channel"].value_counts().to_dict(),
    }


def brief(r: dict, k: int) -> dict:
    """The figures the summary keeps from one evaluate() result."""
    def block(b: dict) -> dict:
        out = {"customers": b.get("customers", 0)}
        for m in ("ndcg", "map"):
            key = f"{m}@{k}"
            if key in b:
                out[m] = round(b[key], 5)
                ci = (b.get("ci95") or {}).get(key)
                if ci:
                    out[f"{m}_ci95"] = [round(ci[0], 5), round(ci[1], 5)]
        return out

    return {"overall": block(r["overall"]), "per_channel": {c: block(b) for c, b in r["per_channel"].items()},
            "per_group": {g: block(b) for g, b in r["per_group"].items()},
            **({"fit_seconds": r["fit_seconds"]} if "fit_seconds" in r else {})}


def verdict(rows: dict, learner: str) -> dict:
    m = rows.get(learner)
    if not m:
        return {"learner": learner, "evaluated": False}
    checks = {}
    for base in BASELINES:
        b = rows[base]
        where = {"overall": (m["overall"], b["overall"])}
        where.update({f"channel {c}": (m["per_channel"][c], b["per_channel"].get(c, {}))
                      for c in m["per_channel"]})
        for w, (x, y) in where.items():
            checks[f"{w} vs {base}"] = {
                "beats": all(x.get(k, 0) > y.get(k, 0) for k in ("ndcg", "map")),
                "ndcg": [x.get("ndcg"), y.get("ndcg")], "map": [x.get("map"), y.get("map")],
                # the learner's 95% interval lies above the baseline's point estimate
                "clear": bool(x.get("ndcg_ci95")) and x["ndcg_ci95"][0] > y.get("ndcg", 0)}
    pop = rows["popularity"]["per_group"]
    lift = {g: round(b["ndcg"] - pop[g]["ndcg"], 5) for g, b in m["per_group"].items()
            if b.get("customers") and "ndcg" in b and "ndcg" in pop.get(g, {})}
    best, worst = (max(lift.values()), min(lift.values())) if lift else (0.0, 0.0)
    return {"learner": learner, "evaluated": True, "beats_both_everywhere": all(c["beats"] for c in checks.values()),
            "clear_everywhere": all(c["clear"] for c in checks.values()), "checks": checks,
            "group_lift_over_popularity": lift,
            "worst_group_keeps": round(worst / best, 3) if best > 0 else None,
            "groups_ok": best > 0 and worst >= GROUP_SHARE * best}


def print_table(rows: dict, k: int) -> None:
    chans = sorted({c for r in rows.values() for c in r["per_channel"]})
    groups = sorted({g for r in rows.values() for g in r["per_group"]})
    head = f"{'':<24}{'ndcg@' + str(k):>9}{'95% CI':>18}{'map@' + str(k):>9}"
    head += "".join(f"{c + ' ndcg':>12}" for c in chans) + "".join(f"{g[:10]:>11}" for g in groups)
    print(head)
    for name, r in rows.items():
        o = r["overall"]
        ci = o.get("ndcg_ci95") or ["", ""]
        line = f"{name:<24}{o.get('ndcg', 0):>9.4f}{f'[{ci[0]:.4f}, {ci[1]:.4f}]' if ci[0] != '' else '':>18}"
        line += f"{o.get('map', 0):>9.4f}"
        line += "".join(f"{r['per_channel'].get(c, {}).get('ndcg', 0):>12.4f}" for c in chans)
        line += "".join(f"{r['per_group'].get(g, {}).get('ndcg', 0):>11.4f}" for g in groups)
        print(line)


def main(argv: list[str] | None = None) -> int:
    from training.config import DEFAULT_LEARNER

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--src", default=DEFAULT_SRC)
    ap.add_argument("--work", default="/tmp/recsvc-bench/hm")
    ap.add_argument("--learners", default=",".join(LEARNERS))
    ap.add_argument("--exclude", default="purchased,none", help="history rules to evaluate under")
    ap.add_argument("--weeks", type=int, default=WEEKS)
    ap.add_argument("--k", type=int, default=K)
    a = ap.parse_args(argv)
    data = os.path.join(a.work, "data")
    p = run(["-q", "convert", "hm", a.src, "--out", data])
    if p.returncode != 0:
        raise SystemExit(f"convert hm failed: {last_line(p.stderr)}")
    cutoff = cutoff_of(data, a.weeks)
    facts = data_facts(data, cutoff)
    print(f"H&M sample: {json.loads(last_line(p.stdout))}; cut-off {cutoff} (last {a.weeks} weeks)")
    print("held-out purchases: " + ", ".join(f"{k} {v}" for k, v in facts.items()), flush=True)
    learners = [x.strip() for x in a.learners.split(",") if x.strip()]
    out: dict = {"protocol": {"cutoff": cutoff, "weeks": a.weeks, "k": a.k, "default_learner": DEFAULT_LEARNER},
                 "data": facts, "modes": {}}
    for mode in [x.strip() for x in a.exclude.split(",") if x.strip()]:
        rows: dict = {}
        failures: dict = {}
        for learner in learners:
            rep = os.path.join(a.work, f"report-{mode}-{learner}")
            t = time.perf_counter()
            p = run(["-q", "evaluate", "--data", data, "--cutoff", cutoff, "--k", str(a.k), "--learners", learner,
                     "--exclude", mode, "--report", rep])
            if p.returncode != 0:
                failures[learner] = last_line(p.stderr)
                continue
            with open(os.path.join(rep, "report.json"), encoding="utf-8") as f:
                results = json.load(f)["results"]
            for name, r in results.items():
                if name in BASELINES and name in rows:
                    continue
                rows[name] = brief(r, a.k)
            rows.setdefault("_seconds", {})[learner] = round(time.perf_counter() - t, 1)
        seconds = rows.pop("_seconds", {})
        rows = {n: rows[n] for n in [*(x for x in rows if x not in BASELINES), *BASELINES] if n in rows}
        print(f"\n== exclude {mode}: every list, model and baselines, leaves out "
              f"{ {'purchased': 'past purchases', 'none': 'nothing', 'seen': 'everything seen'}[mode] }")
        print_table(rows, a.k)
        for learner, why in failures.items():
            print(f"{learner}: not evaluated ({why})")
        v = verdict(rows, DEFAULT_LEARNER)
        if v["evaluated"]:
            lost = [w for w, c in v["checks"].items() if not c["beats"]]
            print(f"default learner {DEFAULT_LEARNER}: beats both baselines overall and on each channel: "
                  f"{'yes' if v['beats_both_everywhere'] else 'no (' + '; '.join(lost) + ')'}"
                  f"{'' if v['clear_everywhere'] else ' - not beyond the 95% interval everywhere'}")
            print(f"group lift over popularity (ndcg): {v['group_lift_over_popularity']}; worst group keeps "
                  f"{v['worst_group_keeps']} of the best's (goal >= {GROUP_SHARE}): {'yes' if v['groups_ok'] else 'no'}")
        out["modes"][mode] = {"results": rows, "failures": failures, "seconds": seconds, "verdict": v}
    out["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, "hm.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=2)
    print(f"\nwrote {os.path.relpath(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Soak: mixed traffic against recsvc under gunicorn (2 workers) on a redis-server of its own, with one
Redis restart and one model reload in the middle; the same run tests/reliability/test_soak.py asserts on
(tests/reliability/soak.py). Prints the figures and writes bench/results/soak.json: error rate and
latency percentiles per endpoint, what the Redis restart cost, the event accounting.

    python bench/soak.py [--seconds 180]

Needs redis-server on the PATH; runs from the repository root with the project's virtualenv.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.modelkit import make_model
from tests.reliability.soak import run_soak, summary

RESULTS = os.path.join(ROOT, "bench", "results", "soak.json")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=float(os.environ.get("RECSVC_SOAK_S", "180")))
    args = p.parse_args()
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory(prefix="recsvc-soak-") as work:
        models = os.path.join(work, "models")
        os.makedirs(models)
        make_model(models)
        out = run_soak(work, models, args.seconds)
    figures = summary(out)
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as f:
        json.dump(figures, f, indent=2)
        f.write("\n")
    print(f"{figures['requests']} requests ({figures['requests_per_s']}/s), error rate {figures['error_rate']}, "
          f"5xx other than 503: {figures['status_5xx_other_than_503']}, no answer: {figures['no_answer']}")
    print(f"redis restart: {json.dumps(figures['redis_restart'])}")
    print(f"events: {json.dumps(figures['events'])}")
    print(f"{'endpoint':48} {'n':>7} {'err':>8} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for ep, e in figures["endpoints"].items():
        print(f"{ep:48} {e['requests']:>7} {e['error_rate']:>8.4f} {e.get('p50_ms', 0):>8} "
              f"{e.get('p90_ms', 0):>8} {e.get('p99_ms', 0):>8} {e.get('max_ms', 0):>8}")
    print(f"written to {os.path.relpath(RESULTS, ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

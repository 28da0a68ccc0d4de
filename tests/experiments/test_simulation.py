"""The report on simulated traffic (tests/experiments/simulation.py): it finds a true 10% conversion lift
with the right sign and an interval covering it, stays quiet on A/A experiments, flags a variant that is
better overall but worse on one channel, and detects a sample-ratio mismatch."""

from __future__ import annotations

import numpy as np

from recsvc.core.experiment_attribution import SharePeriod, attribute
from recsvc.core.experiment_stats import analyse, expected_counts, srm_check
from recsvc.core.types import CHANNELS
from tests.experiments.simulation import DAY, T0, design, simulate

STORE = CHANNELS.index("store")


def report(d, imp, ev):
    return analyse(d, attribute(d, imp, ev), status="running", now=T0 + 15 * DAY)


def test_b_converting_ten_percent_better_is_found_with_an_interval_covering_the_truth():
    d, imp, ev = simulate(1, 60_000, multiplier=lambda v, ch: np.where(v == 1, 1.10, 1.0))
    rep = report(d, imp, ev)
    verdict = rep["verdict"]["B"]
    assert verdict["decision"] == "better" and verdict["significant"] and verdict["trustworthy"]
    lo, hi = verdict["lift_ci"]
    assert 0 < lo < 0.10 < hi, verdict
    assert rep["srm"]["mismatch"] is False
    assert rep["scopes"] == ["overall", *CHANNELS]  # every channel had traffic
    assert rep["flags"] == []
    # cross-channel crediting happened both ways: by recommendation_id, and by the window (in store)
    assert rep["attribution"]["purchases_by_recommendation_id"] > 1000
    assert rep["attribution"]["purchases_by_window"] > 1000
    cells = {(c["shown"], c["bought"]) for c in rep["shown_bought"]["B"]}
    assert ("app", "store") in cells and ("store", "web") in cells
    # revenue follows conversions here, so it is better too (Welch's t); click-through is the same
    assert rep["variants"]["B"]["overall"]["metrics"]["revenue_per_customer"]["lift"] > 0
    ctr = rep["variants"]["B"]["overall"]["metrics"]["click_through"]
    assert ctr["lift_ci"][0] < 0 < ctr["lift_ci"][1]
    assert set(rep["tests"]) >= {"conversion", "revenue_per_customer", "click_through", "acceptance", "srm"}


def test_a_a_experiments_report_no_difference_in_at_least_95_of_100_seeded_runs():
    significant = srm_alarms = 0
    for seed in range(1000, 1100):
        d, imp, ev = simulate(seed, 4000)
        rep = report(d, imp, ev)
        significant += rep["verdict"]["B"]["decision"] != "inconclusive"
        srm_alarms += rep["srm"]["mismatch"]
    # at alpha = 0.05 about 5 of 100 are expected by chance; the issue asks for at most 5
    assert significant <= 5, significant
    assert srm_alarms <= 1  # threshold 0.001


def test_better_overall_but_worse_on_one_channel_is_flagged():
    def mult(v, ch):
        return np.where(v == 1, np.where(ch == STORE, 0.75, 1.22), 1.0)

    d, imp, ev = simulate(2, 60_000, multiplier=mult)
    rep = report(d, imp, ev)
    assert rep["verdict"]["B"]["decision"] == "better"
    flagged = [f for f in rep["flags"] if f["metric"] == "conversion"]
    assert [f["channel"] for f in flagged] == ["store"], rep["flags"]
    assert flagged[0]["lift"] < 0 and flagged[0]["overall_lift"] > 0
    assert rep["verdict"]["B"]["flagged_channels"] == ["store"]
    store = rep["variants"]["B"]["store"]["metrics"]["conversion"]
    assert store["lift"] < 0


def test_no_flag_when_every_channel_gains():
    d, imp, ev = simulate(3, 20_000, multiplier=lambda v, ch: np.where(v == 1, 1.25, 1.0))
    rep = report(d, imp, ev)
    assert rep["verdict"]["B"]["decision"] == "better"
    assert [f for f in rep["flags"] if f["metric"] == "conversion"] == []


def test_a_sample_ratio_mismatch_is_detected():
    d = design("srm")
    rng = np.random.default_rng(5)
    skewed = (rng.random(20_000) < 0.47).astype(np.int64)  # B gets 47%, the design says 50%
    d, imp, ev = simulate(5, 20_000, variant=skewed, d=d)
    rep = report(d, imp, ev)
    assert rep["srm"]["mismatch"] is True and rep["srm"]["p_value"] < 1e-3
    assert rep["verdict"]["B"]["trustworthy"] is False
    fair = report(*simulate(5, 20_000))
    assert fair["srm"]["mismatch"] is False


def test_srm_counts_each_customer_under_the_shares_in_force_when_first_assigned():
    periods = (SharePeriod(1, T0, (0.5, 0.5)), SharePeriod(2, T0 + 7 * DAY, (0.8, 0.2)))
    d = design("shares", periods=periods)
    rng = np.random.default_rng(9)
    first_seen = T0 + rng.random(40_000) * 14 * DAY
    later = first_seen >= T0 + 7 * DAY
    variant = np.where(later, rng.random(40_000) < 0.2, rng.random(40_000) < 0.5).astype(np.int64)
    expected = expected_counts(d, first_seen)
    assert abs(expected.sum() - 40_000) < 1e-6
    assert abs(expected[1] - (0.5 * (~later).sum() + 0.2 * later.sum())) < 1e-6
    observed = np.bincount(variant, minlength=2)
    assert srm_check(observed, expected)["mismatch"] is False
    # judged against the first shares only, the same traffic would look broken
    assert srm_check(observed, [20_000, 20_000])["mismatch"] is True

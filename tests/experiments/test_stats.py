"""recsvc.core.experiment_stats without scipy, checked against scipy (a training dependency)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from recsvc.core import experiment_stats as es


@pytest.mark.parametrize("t, df", [(1.2, 5), (2.5, 30), (0.3, 1000), (4.0, 1e5), (-1.5, 12), (2.0, 3e6)])
def test_student_t_tail(t, df):
    assert es.t_sf(t, df) == pytest.approx(stats.t.sf(t, df), rel=1e-6, abs=1e-12)


@pytest.mark.parametrize("df", [1, 2, 7, 30, 99, 101, 500, 1e6])
def test_student_t_quantile(df):
    assert es.t_quantile(0.025, df) == pytest.approx(stats.t.isf(0.025, df), rel=1e-6)


@pytest.mark.parametrize("x, k", [(3.2, 1), (10, 3), (0.5, 2), (50, 40), (200, 150), (1e-3, 4)])
def test_chi_square_tail(x, k):
    assert es.chi2_sf(x, k) == pytest.approx(stats.chi2.sf(x, k), rel=1e-8, abs=1e-14)


def test_two_proportion_z_test_matches_the_textbook():
    c = es.compare_proportions(260, 2000, 220, 2000)
    p1, p2, pooled = 0.13, 0.11, 0.12
    z = (p1 - p2) / math.sqrt(pooled * (1 - pooled) * (2 / 2000))
    assert c.p_value == pytest.approx(2 * stats.norm.sf(z), rel=1e-9)
    assert c.lift == pytest.approx(0.13 / 0.11 - 1)
    assert c.lift_low < c.lift < c.lift_high


def test_welch_t_test_matches_scipy():
    rng = np.random.default_rng(0)
    a, b = rng.gamma(2.0, 10.0, 300), rng.gamma(2.0, 9.0, 500)
    c = es.compare_means(a, b)
    assert c.p_value == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue, rel=1e-7)
    m = es.mean(a)
    lo, hi = stats.t.interval(0.95, len(a) - 1, loc=a.mean(), scale=stats.sem(a))
    assert (m.low, m.high) == (pytest.approx(lo, rel=1e-7), pytest.approx(hi, rel=1e-7))


def test_wilson_interval():
    e = es.proportion(30, 200)
    # Wilson score interval, from its closed form
    z = 1.959963984540054
    p, n = 0.15, 200
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert (e.low, e.high) == (pytest.approx(centre - half), pytest.approx(centre + half))


def test_ratio_interval_covers_the_truth_at_the_stated_rate():
    """Clicks per impression with customers of different activity: the delta-method interval (over
    customers) covers the true rate about 95% of the time; a naive binomial one over impressions would
    not, because a customer's impressions share their click propensity."""
    rng = np.random.default_rng(1)
    covered = 0
    for _ in range(300):
        imps = 1 + rng.poisson(4, 400)
        propensity = rng.beta(1, 9, 400)  # mean 0.1
        clicks = rng.binomial(imps, propensity)
        e = es.ratio(clicks, imps)
        covered += e.low <= 0.1 <= e.high
    assert 0.92 <= covered / 300 <= 0.98


def test_degenerate_inputs_give_no_numbers_rather_than_errors():
    assert es.proportion(0, 0).value is None
    assert es.mean(np.array([])).value is None
    assert es.ratio(np.array([0]), np.array([0])).value is None
    c = es.compare_proportions(0, 10, 0, 10)
    assert c.lift is None and c.p_value == 1.0 and not c.significant
    assert es.srm_check([0, 0], [0, 0])["mismatch"] is False

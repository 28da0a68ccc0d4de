"""The statistics of an experiment report: estimates with 95% intervals, lift over control, tests, SRM.

numpy + stdlib only (no scipy), so `training/` may import it and the service and the CLI report the
same numbers. The unit of analysis is the customer, because assignment is by customer: rates per
impression (click-through, acceptance) are ratios of per-customer sums with delta-method variances,
never binomial tests over impressions (which would ignore that one customer's impressions move
together and overstate significance).

Tests (stated in every report under `tests`):
- conversion (share of exposed customers with an attributed purchase): two-proportion z-test, pooled;
- revenue per customer: Welch's t-test;
- click-through, acceptance (per impression): z-test on the ratio of sums, delta-method variance;
- relative lift over control: ratio of the two estimates, 95% interval by the delta method on its log;
- sample-ratio mismatch: chi-square goodness of fit of customers per variant against the shares in
  force when each customer was first assigned; mismatch when p < 0.001.
All tests two-sided at the experiment's alpha (default 0.05).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from recsvc.core.experiment_attribution import METRICS, Design, UnitTable, iso
from recsvc.core.types import CHANNELS

Z95 = 1.959963984540054
SRM_ALPHA = 0.001
MIN_FLAG_CUSTOMERS = 20  # per arm on a channel before a negative lift there is flagged
TESTS = {
    "conversion": "two-proportion z-test (pooled), two-sided, on exposed customers",
    "revenue_per_customer": "Welch's t-test, two-sided, on attributed revenue per exposed customer",
    "click_through": "z-test on a ratio of sums (clicks / impressions), delta-method variance over "
                     "customers, two-sided",
    "acceptance": "z-test on a ratio of sums (accepted offers / impressions), delta-method variance over "
                  "customers, two-sided",
    "lift": "relative lift = variant / control - 1, 95% interval by the delta method on the log ratio",
    "srm": f"chi-square goodness of fit of customers per variant against the assigned shares; "
           f"mismatch when p < {SRM_ALPHA}",
}
LABELS = {"conversion": "Conversion", "revenue_per_customer": "Revenue per customer",
          "click_through": "Click-through", "acceptance": "Acceptance"}


# -- distributions (regularised incomplete beta and gamma, Numerical Recipes style)
def normal_sf(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def _betacf(a: float, b: float, x: float) -> float:
    tiny, eps = 1e-300, 3e-16
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 100_000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < eps:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_sf(t: float, df: float) -> float:
    """P(T > t) for Student's t with df degrees of freedom."""
    if not math.isfinite(df) or df > 1e7:
        return normal_sf(t)
    p = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return p if t > 0 else 1.0 - p


def normal_quantile(q: float) -> float:
    """z with P(Z > z) = q, by bisection on erfc (exact to ~1e-12)."""
    lo, hi = -40.0, 40.0
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if normal_sf(mid) > q:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


@functools.lru_cache(maxsize=1024)
def t_quantile(q: float, df: float) -> float:
    """t with P(T > t) = q (0 < q < 0.5): Cornish-Fisher expansion above 100 degrees of freedom (error
    < 1e-7), bisection on t_sf below."""
    if df > 100:
        z = normal_quantile(q)
        z3, z5, z7 = z**3, z**5, z**7
        return (z + (z3 + z) / (4 * df) + (5 * z5 + 16 * z3 + 3 * z) / (96 * df**2)
                + (3 * z7 + 19 * z5 + 17 * z3 - 15 * z) / (384 * df**3))
    lo, hi = 0.0, 1e3
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if t_sf(mid, df) > q:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def gammaincc(a: float, x: float) -> float:
    """Regularised upper incomplete gamma Q(a, x)."""
    if x <= 0.0:
        return 1.0
    gln = math.lgamma(a)
    if x < a + 1.0:  # series for P
        ap, s = a, 1.0 / a
        term = s
        for _ in range(100_000):
            ap += 1.0
            term *= x / ap
            s += term
            if abs(term) < abs(s) * 3e-16:
                break
        return max(0.0, 1.0 - s * math.exp(-x + a * math.log(x) - gln))
    tiny = 1e-300  # continued fraction for Q
    b = x + 1.0 - a
    c, d = 1.0 / tiny, 1.0 / b
    h = d
    for i in range(1, 100_000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = b + an / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 3e-16:
            break
    return math.exp(-x + a * math.log(x) - gln) * h


def chi2_sf(x: float, k: float) -> float:
    return gammaincc(k / 2.0, x / 2.0)


# -- estimates and comparisons
@dataclass(frozen=True, slots=True)
class Estimate:
    """A metric of one arm: value, 95% interval, and the variance of the estimate (for comparisons)."""

    value: float | None
    low: float | None
    high: float | None
    var: float | None
    n: int  # customers

    def as_dict(self) -> dict:
        return {"value": _r(self.value), "ci": [_r(self.low), _r(self.high)]}


@dataclass(frozen=True, slots=True)
class Comparison:
    """Variant against control: relative lift with its 95% interval, and the test's p-value."""

    diff: float | None
    lift: float | None
    lift_low: float | None
    lift_high: float | None
    p_value: float | None
    significant: bool

    def as_dict(self) -> dict:
        return {"lift": _r(self.lift), "lift_ci": [_r(self.lift_low), _r(self.lift_high)],
                "p_value": _r(self.p_value), "significant": self.significant}


NONE = Estimate(None, None, None, None, 0)


def _r(x: float | None, digits: int = 6) -> float | None:
    if x is None or not math.isfinite(x):
        return None
    return round(float(x), digits)


def proportion(successes: int, n: int) -> Estimate:
    """Share with Wilson's 95% interval."""
    if n <= 0:
        return NONE
    p = successes / n
    z2 = Z95 * Z95
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return Estimate(p, max(0.0, centre - half), min(1.0, centre + half), p * (1 - p) / n, n)


def mean(values: np.ndarray) -> Estimate:
    """Mean with a Student-t 95% interval."""
    n = int(values.shape[0])
    if n == 0:
        return NONE
    m = float(values.mean())
    if n < 2:
        return Estimate(m, None, None, None, n)
    var = float(values.var(ddof=1)) / n
    half = t_quantile(0.025, n - 1) * math.sqrt(var)
    return Estimate(m, m - half, m + half, var, n)


def ratio(num: np.ndarray, den: np.ndarray) -> Estimate:
    """Σnum / Σden over customers, delta-method 95% interval (customers are the independent units)."""
    n = int(num.shape[0])
    total = float(den.sum())
    if n == 0 or total <= 0:
        return NONE
    r = float(num.sum()) / total
    if n < 2:
        return Estimate(r, None, None, None, n)
    mx = total / n
    cov = np.cov(np.vstack([num.astype(np.float64), den.astype(np.float64)]), ddof=1)
    var = max(0.0, (cov[0, 0] - 2 * r * cov[0, 1] + r * r * cov[1, 1]) / (n * mx * mx))
    half = Z95 * math.sqrt(var)
    return Estimate(r, r - half, r + half, var, n)


def _lift(t: Estimate, c: Estimate) -> tuple[float | None, float | None, float | None]:
    if t.value is None or c.value is None or c.value <= 0:
        return None, None, None
    lift = t.value / c.value - 1.0
    if t.value <= 0 or t.var is None or c.var is None:
        return lift, None, None
    se = math.sqrt(t.var / t.value**2 + c.var / c.value**2)
    log_ratio = math.log(t.value / c.value)
    return lift, math.exp(log_ratio - Z95 * se) - 1.0, math.exp(log_ratio + Z95 * se) - 1.0


def _comparison(t: Estimate, c: Estimate, p: float | None, alpha: float) -> Comparison:
    diff = None if t.value is None or c.value is None else t.value - c.value
    lift, lo, hi = _lift(t, c)
    return Comparison(diff, lift, lo, hi, p, p is not None and p < alpha)


def compare_proportions(x_t: int, n_t: int, x_c: int, n_c: int, alpha: float = 0.05) -> Comparison:
    t, c = proportion(x_t, n_t), proportion(x_c, n_c)
    p = None
    if n_t >= 2 and n_c >= 2:
        pooled = (x_t + x_c) / (n_t + n_c)
        se = math.sqrt(pooled * (1 - pooled) * (1 / n_t + 1 / n_c))
        p = 2 * normal_sf(abs(t.value - c.value) / se) if se > 0 else 1.0
    return _comparison(t, c, p, alpha)


def compare_means(a: np.ndarray, b: np.ndarray, alpha: float = 0.05) -> Comparison:
    t, c = mean(a), mean(b)
    p = None
    if t.var is not None and c.var is not None:
        se2 = t.var + c.var
        if se2 > 0:
            df = se2**2 / (t.var**2 / (t.n - 1) + c.var**2 / (c.n - 1))
            p = 2 * t_sf(abs(t.value - c.value) / math.sqrt(se2), df)
        else:
            p = 1.0 if t.value == c.value else 0.0
    return _comparison(t, c, p, alpha)


def compare_ratios(num_t, den_t, num_c, den_c, alpha: float = 0.05) -> Comparison:
    t, c = ratio(num_t, den_t), ratio(num_c, den_c)
    p = None
    if t.var is not None and c.var is not None:
        se = math.sqrt(t.var + c.var)
        p = 2 * normal_sf(abs(t.value - c.value) / se) if se > 0 else (1.0 if t.value == c.value else 0.0)
    return _comparison(t, c, p, alpha)


def srm_check(observed: Sequence[float], expected: Sequence[float]) -> dict:
    """Chi-square goodness of fit of observed customers per variant against expected counts."""
    o = np.asarray(observed, np.float64)
    e = np.asarray(expected, np.float64)
    m = e > 0
    k = int(m.sum())
    if k < 2 or o.sum() == 0:
        return {"chi2": None, "df": max(k - 1, 0), "p_value": None, "mismatch": False, "enough_data": False}
    chi2 = float((((o - e) ** 2)[m] / e[m]).sum())
    p = chi2_sf(chi2, k - 1)
    enough = bool(e[m].min() >= 5)
    return {"chi2": _r(chi2), "df": k - 1, "p_value": _r(p, 9), "mismatch": bool(enough and p < SRM_ALPHA),
            "enough_data": enough}


def expected_counts(design: Design, first_seen: np.ndarray) -> np.ndarray:
    """Customers expected per variant: each counted under the shares in force at first assignment."""
    periods = design.periods
    since = np.array([p.since for p in periods])
    which = np.maximum(np.searchsorted(since, first_seen, side="right") - 1, 0)
    per_period = np.bincount(which, minlength=len(periods)).astype(np.float64)
    shares = np.array([p.shares for p in periods], np.float64)  # (P, V)
    sums = shares.sum(axis=1, keepdims=True)
    return (per_period[:, None] * shares / np.where(sums > 0, sums, 1.0)).sum(axis=0)


# -- the report
def _scope_arrays(t: UnitTable, scope: int | None) -> dict[str, np.ndarray]:
    """Per-customer values overall (scope None) or on one channel shown (customers exposed there)."""
    if scope is None:
        return {"impressions": t.impressions.sum(1), "clicks": t.clicks.sum(1), "accepts": t.accepts.sum(1),
                "declines": t.declines.sum(1), "purchases": t.purchases.sum(1), "revenue": t.revenue.sum(1),
                "exposed": np.ones(t.n_units, bool)}
    return {"impressions": t.impressions[:, scope], "clicks": t.clicks[:, scope], "accepts": t.accepts[:, scope],
            "declines": t.declines[:, scope], "purchases": t.purchases[:, scope], "revenue": t.revenue[:, scope],
            "exposed": t.impressions[:, scope] > 0}


def _arm(vals: dict[str, np.ndarray], m: np.ndarray) -> dict:
    conv = vals["purchases"][m] > 0
    return {"n": int(m.sum()), "imp": vals["impressions"][m], "clk": vals["clicks"][m],
            "acc": vals["accepts"][m], "conv": conv, "rev": vals["revenue"][m],
            "counts": {"customers": int(m.sum()), "impressions": int(vals["impressions"][m].sum()),
                       "clicks": int(vals["clicks"][m].sum()), "accepts": int(vals["accepts"][m].sum()),
                       "declines": int(vals["declines"][m].sum()), "purchases": int(vals["purchases"][m].sum()),
                       "converted_customers": int(conv.sum()), "revenue": _r(float(vals["revenue"][m].sum()), 2)}}


def _estimates(a: dict) -> dict[str, Estimate]:
    return {"conversion": proportion(int(a["conv"].sum()), a["n"]),
            "revenue_per_customer": mean(a["rev"].astype(np.float64)),
            "click_through": ratio(a["clk"], a["imp"]),
            "acceptance": ratio(a["acc"], a["imp"])}


def _compare(a: dict, c: dict, alpha: float) -> dict[str, Comparison]:
    return {"conversion": compare_proportions(int(a["conv"].sum()), a["n"], int(c["conv"].sum()), c["n"], alpha),
            "revenue_per_customer": compare_means(a["rev"].astype(np.float64), c["rev"].astype(np.float64), alpha),
            "click_through": compare_ratios(a["clk"], a["imp"], c["clk"], c["imp"], alpha),
            "acceptance": compare_ratios(a["acc"], a["imp"], c["acc"], c["imp"], alpha)}


def analyse(design: Design, table: UnitTable, status: str | None = None, now: float | None = None) -> dict:
    """The report: per variant and scope (overall, then each channel shown) counts, metrics with 95%
    intervals, lift over control with the test's p-value; SRM; shown x bought; flags; verdicts."""
    alpha = design.alpha
    scopes: list[tuple[str, int | None]] = [("overall", None)]
    scopes += [(c, k) for k, c in enumerate(CHANNELS) if table.n_units and bool(table.impressions[:, k].any())]
    variants: dict[str, dict] = {v: {} for v in design.variants}
    comparisons: dict[tuple[str, str], dict[str, Comparison]] = {}
    arms: dict[tuple[str, str], dict] = {}
    for scope, k in scopes:
        vals = _scope_arrays(table, k)
        for vi, v in enumerate(design.variants):
            arms[(scope, v)] = _arm(vals, vals["exposed"] & (table.variant == vi))
        c_arm = arms[(scope, design.control)]
        for v in design.variants:
            a = arms[(scope, v)]
            est = _estimates(a)
            cmp = None if v == design.control else _compare(a, c_arm, alpha)
            if cmp is not None:
                comparisons[(scope, v)] = cmp
            variants[v][scope] = {
                **a["counts"],
                "metrics": {m: {**est[m].as_dict(), **(cmp[m].as_dict() if cmp else
                                                       {"lift": None, "lift_ci": [None, None], "p_value": None,
                                                        "significant": False})}
                            for m in METRICS},
            }
    observed = np.bincount(table.variant, minlength=len(design.variants)) if table.n_units else np.zeros(
        len(design.variants))
    expected = expected_counts(design, table.first_seen) if table.n_units else np.zeros(len(design.variants))
    srm = srm_check(observed, expected)
    srm.update(observed={v: int(o) for v, o in zip(design.variants, observed)},
               expected={v: _r(float(e), 2) for v, e in zip(design.variants, expected)})
    flags = channel_flags(design, comparisons, arms, [s for s, _ in scopes[1:]])
    verdict = {}
    for v in design.variants:
        if v == design.control:
            continue
        cmp = comparisons[("overall", v)][design.primary_metric]
        decision = "inconclusive"
        if cmp.significant and cmp.diff is not None:
            decision = "better" if cmp.diff > 0 else "worse"
        verdict[v] = {
            "metric": design.primary_metric, "decision": decision, **cmp.as_dict(),
            "trustworthy": not srm["mismatch"],
            "flagged_channels": sorted({f["channel"] for f in flags if f["variant"] == v
                                        and f["metric"] == design.primary_metric}),
        }
    n_c = len(CHANNELS)
    shown_bought = {}
    for vi, v in enumerate(design.variants):
        cells = []
        for s in range(n_c):
            for b in range(n_c):
                n = int(table.shown_bought[vi, s, b]) if table.n_units else 0
                if n:
                    cells.append({"shown": CHANNELS[s], "bought": CHANNELS[b], "purchases": n,
                                  "revenue": _r(float(table.shown_bought_revenue[vi, s, b]), 2)})
        shown_bought[v] = cells
    return {
        "experiment_id": design.experiment_id,
        "status": status,
        "generated_at": iso(now),
        "start": iso(design.start),
        "end": iso(design.end),
        "stopped_at": iso(design.stopped_at),
        "control": design.control,
        "primary_metric": design.primary_metric,
        "alpha": design.alpha,
        "attribution_window_hours": _r(design.window_s / 3600.0, 3),
        "tests": TESTS,
        "customers": table.n_units,
        "scopes": [s for s, _ in scopes],
        "variants": variants,
        "srm": srm,
        "shown_bought": shown_bought,
        "attribution": {"purchases_by_recommendation_id": table.credited_by_id,
                        "purchases_by_window": table.credited_by_window},
        "flags": flags,
        "verdict": verdict,
    }


def channel_flags(design: Design, comparisons: dict, arms: dict, channels: Sequence[str]) -> list[dict]:
    """A variant significantly better overall but worse on a channel: the channel discrimination the
    service exists to prevent. Flagged per metric when the channel's lift is negative with at least
    MIN_FLAG_CUSTOMERS customers per arm there; `significant` says whether that drop is itself
    significant."""
    out = []
    for v in design.variants:
        if v == design.control:
            continue
        for m in METRICS:
            overall = comparisons[("overall", v)][m]
            if not (overall.significant and overall.diff is not None and overall.diff > 0):
                continue
            for ch in channels:
                cmp = comparisons[(ch, v)][m]
                if (cmp.diff is None or cmp.diff >= 0 or arms[(ch, v)]["n"] < MIN_FLAG_CUSTOMERS
                        or arms[(ch, design.control)]["n"] < MIN_FLAG_CUSTOMERS):
                    continue
                out.append({"variant": v, "metric": m, "channel": ch, "overall_lift": _r(overall.lift),
                            **cmp.as_dict(),
                            "message": f"{v} is better than {design.control} overall on {m} "
                                       f"but worse on {ch}: the channel is treated worse"})
    return out


# -- presentation shared by the service's PNG and the CLI
def chart_panels(report: dict) -> list[dict]:
    """One panel per metric: groups = scopes, one series per variant with 95% interval whiskers."""
    panels = []
    for m in METRICS:
        series = []
        for v, scopes in report["variants"].items():
            vals, lows, highs = [], [], []
            for s in report["scopes"]:
                d = scopes.get(s, {}).get("metrics", {}).get(m, {})
                vals.append(d.get("value"))
                lo, hi = (d.get("ci") or [None, None])
                lows.append(lo)
                highs.append(hi)
            series.append({"variant": v, "values": vals, "low": lows, "high": highs})
        panels.append({"metric": m, "title": LABELS[m] + (" (primary)" if m == report["primary_metric"] else ""),
                       "groups": list(report["scopes"]), "series": series})
    return panels


def _pct(x) -> str:
    return "   n/a" if x is None else f"{100 * x:+6.1f}%"


def summary_lines(report: dict) -> list[str]:
    """A plain-text digest: per variant and scope, the primary metric with its interval and lift."""
    m = report["primary_metric"]
    out = [(f"experiment {report['experiment_id']} ({report['status']}): {report['customers']} customers, "
            f"primary metric {m}, control {report['control']}")]
    srm = report["srm"]
    out.append(f"sample ratio: observed {srm['observed']} expected {srm['expected']} "
               f"p={srm['p_value']} -> {'MISMATCH' if srm['mismatch'] else 'ok'}")
    out.append(f"{'variant':<10} {'scope':<12} {'customers':>9} {'impr.':>7} {m:>22} {'lift':>8} "
               f"{'lift 95% CI':>18} {'p':>8}")
    for v, scopes in report["variants"].items():
        for s in report["scopes"]:
            d = scopes[s]
            x = d["metrics"][m]
            val = "n/a" if x["value"] is None else (
                f"{x['value']:.4f} [{x['ci'][0] if x['ci'][0] is not None else float('nan'):.4f},"
                f"{x['ci'][1] if x['ci'][1] is not None else float('nan'):.4f}]")
            ci = "" if x["lift"] is None else f"[{_pct(x['lift_ci'][0])},{_pct(x['lift_ci'][1])}]"
            p = "" if x["p_value"] is None else f"{x['p_value']:.4f}"
            out.append(f"{v:<10} {s:<12} {d['customers']:>9} {d['impressions']:>7} {val:>22} "
                       f"{'' if x['lift'] is None else _pct(x['lift']):>8} {ci:>18} {p:>8}")
    for v, d in report["verdict"].items():
        out.append(f"verdict {v}: {d['decision']} on {d['metric']} (lift {_pct(d['lift'])}, p={d['p_value']})"
                   + ("" if d["trustworthy"] else " - NOT trustworthy: sample ratio mismatch"))
    for f in report["flags"]:
        out.append(f"FLAG {f['variant']} {f['metric']} on {f['channel']}: lift {_pct(f['lift'])} while "
                   f"{_pct(f['overall_lift'])} overall")
    return out

"""The report's PNG: one panel per metric, bars per channel and variant with 95% interval whiskers.

Drawn on an Agg canvas (no pyplot global state, safe in a threaded worker). In the core so that the
service's `?format=png` and `recsvc-train experiments report` draw the very same chart.
"""

from __future__ import annotations

import io

from recsvc.core.experiment_stats import chart_panels


def render_png(report: dict) -> bytes:
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = chart_panels(report)
    fig = Figure(figsize=(12, 8), dpi=100)
    FigureCanvasAgg(fig)
    for k, p in enumerate(panels):
        ax = fig.add_subplot(2, 2, k + 1)
        x = np.arange(len(p["groups"]))
        width = 0.8 / max(1, len(p["series"]))
        for i, s in enumerate(p["series"]):
            vals = [v if v is not None else 0.0 for v in s["values"]]
            lo = [max(0.0, v - lw) if lw is not None else 0.0 for v, lw in zip(vals, s["low"])]
            hi = [max(0.0, hg - v) if hg is not None else 0.0 for v, hg in zip(vals, s["high"])]
            ax.bar(x + (i - (len(p["series"]) - 1) / 2) * width, vals, width, yerr=[lo, hi], capsize=3,
                   label=s["variant"])
        ax.set_xticks(x)
        ax.set_xticklabels(p["groups"])
        ax.set_title(p["title"])
        ax.grid(axis="y", alpha=0.3)
        if not any(v for s in p["series"] for v in s["values"]):
            ax.text(0.5, 0.5, "no such events recorded yet", ha="center", va="center", transform=ax.transAxes)
        if k == 0:
            ax.legend(fontsize="small")
    srm = report["srm"]
    flags = ", ".join(f"{f['variant']} worse on {f['channel']} ({f['metric']})" for f in report["flags"])
    fig.suptitle(f"Experiment {report['experiment_id']} ({report['status']}): {report['customers']} customers; "
                 f"sample ratio {'MISMATCH' if srm['mismatch'] else 'ok'}"
                 + (f"; FLAGGED: {flags}" if flags else ""), fontsize="medium")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()

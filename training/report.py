"""The evaluation report a person reads at a glance: report.json, report.md, report.html and PNG charts.

`results` maps a model name to `training.evaluate.evaluate()` output, plus optionally
"fit_seconds" and "baseline": True (baselines are listed after the learners, in italics, and the
first one is the reference for the lift table unless `reference` names another).
"""

from __future__ import annotations

import html
import json
import math
import os
from dataclasses import dataclass

from training.evaluate import PER_CUSTOMER

COLUMNS = ("ndcg", "map", "precision", "recall", "hit_rate", "coverage")
LABELS = {
    "ndcg": "NDCG",
    "map": "MAP",
    "precision": "precision",
    "recall": "recall",
    "hit_rate": "hit rate",
    "coverage": "coverage",
}


@dataclass(frozen=True)
class Table:
    title: str
    note: str
    header: tuple[str, ...]
    rows: tuple[tuple[tuple[str, bool], ...], ...]  # (text, bold) per cell; first cell = model name


def write_report(
    results: dict, out_dir: str, title: str, reference: str | None = None, metric: str = "ndcg"
) -> dict[str, str]:
    """Write the report files into out_dir; returns {"json", "markdown", "html", "chart_channels",
    "chart_groups"} -> path."""
    if not results:
        raise ValueError("write_report: no results to report")
    os.makedirs(out_dir, exist_ok=True)
    names = _ordered(results)
    k = next(iter(results.values()))["k"]
    baselines = [n for n in names if results[n].get("baseline")]
    ref = reference if reference is not None else (baselines[0] if baselines else None)
    if ref is not None and ref not in results:
        raise ValueError(f"write_report: reference {ref!r} is not among the results ({', '.join(names)})")
    tables = _tables(results, names, k, ref, metric)
    paths = {
        "json": os.path.join(out_dir, "report.json"),
        "markdown": os.path.join(out_dir, "report.md"),
        "html": os.path.join(out_dir, "report.html"),
        "chart_channels": os.path.join(out_dir, f"{metric}_overall_channels.png"),
        "chart_groups": os.path.join(out_dir, f"{metric}_groups.png"),
    }
    with open(paths["json"], "w", encoding="utf-8") as f:
        json.dump(
            _clean({"title": title, "k": k, "reference": ref, "order": names, "results": results}),
            f,
            indent=2,
            sort_keys=False,
        )
    _bar_chart(
        results,
        names,
        k,
        metric,
        "channels",
        paths["chart_channels"],
        f"{LABELS[metric]}@{k} overall and per channel (95% CI)",
    )
    _bar_chart(
        results,
        names,
        k,
        metric,
        "groups",
        paths["chart_groups"],
        f"{LABELS[metric]}@{k} per customer group (95% CI)",
    )
    charts = [
        (os.path.basename(paths["chart_channels"]), "overall and per channel"),
        (os.path.basename(paths["chart_groups"]), "per customer group"),
    ]
    intro = (
        f"k = {k} · {next(iter(results.values())).get('customers', 0)} customers evaluated · "
        "95% bootstrap intervals in brackets · best per column in **bold** · baselines in *italics*"
    )
    with open(paths["markdown"], "w", encoding="utf-8") as f:
        f.write(_markdown(title, intro, tables, charts))
    with open(paths["html"], "w", encoding="utf-8") as f:
        f.write(
            _html(title, intro.replace("**bold**", "bold").replace("*italics*", "italics"), tables, charts)
        )
    return paths


# ---------------------------------------------------------------- tables
def _ordered(results: dict) -> list[str]:
    """Learners first, then baselines, each in the order given."""
    return [n for n in results if not results[n].get("baseline")] + [
        n for n in results if results[n].get("baseline")
    ]


def _num(x) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def _cell(sec: dict | None, key: str, ci: bool = True) -> tuple[str, float | None]:
    if not sec or _num(sec.get(key)) is None:
        return "–", None
    v = float(sec[key])
    text = f"{v:.4f}"
    iv = (sec.get("ci95") or {}).get(key)
    if ci and iv and all(_num(a) is not None for a in iv):
        text += f" [{iv[0]:.3f}, {iv[1]:.3f}]"
    return text, v


def _bold_best(
    names: list[str], cols: list[list[tuple[str, float | None]]], results: dict
) -> tuple[tuple[tuple[str, bool], ...], ...]:
    best = []
    for col in cols:
        vals = [v for _, v in col if v is not None]
        best.append(max(vals) if vals else None)
    rows = []
    for i, n in enumerate(names):
        label = f"*{n}*" if results[n].get("baseline") else n
        cells = [(label, False)]
        for j, col in enumerate(cols):
            text, v = col[i]
            cells.append((text, v is not None and best[j] is not None and v >= best[j] - 1e-12))
        rows.append(tuple(cells))
    return tuple(rows)


def _sections(results: dict, names: list[str], part: str) -> list[tuple[str, int]]:
    """(section name, customers) over all results, in first-seen order."""
    seen: dict[str, int] = {}
    for n in names:
        for s, sec in (results[n].get(part) or {}).items():
            seen[s] = max(seen.get(s, 0), int(sec.get("customers", 0)))
    return list(seen.items())


def _tables(results: dict, names: list[str], k: int, ref: str | None, metric: str) -> list[Table]:
    keys = [f"{c}@{k}" for c in COLUMNS]
    overall_cols = [
        [_cell(results[n].get("overall"), key, ci=key.split("@")[0] in PER_CUSTOMER) for n in names]
        for key in keys
    ]
    fit = [
        [
            (
                f"{results[n]['fit_seconds']:.1f}"
                if _num(results[n].get("fit_seconds")) is not None
                else "–",
                None,
            )
            for n in names
        ]
    ]
    rows = _bold_best(names, overall_cols, results)
    rows = tuple(r + ((fit[0][i][0], False),) for i, r in enumerate(rows))
    tables = [
        Table("Overall", "", ("model",) + tuple(f"{LABELS[c]}@{k}" for c in COLUMNS) + ("fit s",), rows)
    ]
    for part, label in (("per_channel", "channel"), ("per_group", "customer group")):
        secs = _sections(results, names, part)
        if not secs:
            continue
        for m in dict.fromkeys((metric, "map")):
            key = f"{m}@{k}"
            cols = [[_cell((results[n].get(part) or {}).get(s), key) for n in names] for s, _ in secs]
            tables.append(
                Table(
                    f"{LABELS[m]}@{k} per {label}",
                    "truth = held-out interactions on that channel" if part == "per_channel" else "",
                    ("model",) + tuple(f"{s} (n={c})" for s, c in secs),
                    _bold_best(names, cols, results),
                )
            )
    if ref is not None:
        key = f"{metric}@{k}"
        secs = (
            [("overall", None)]
            + [(s, "per_channel") for s, _ in _sections(results, names, "per_channel")]
            + [(s, "per_group") for s, _ in _sections(results, names, "per_group")]
        )

        def value(n: str, s: str, part: str | None) -> float | None:
            sec = results[n].get("overall") if part is None else (results[n].get(part) or {}).get(s)
            return _num((sec or {}).get(key))

        cols = []
        for s, part in secs:
            col = []
            for n in names:
                v, r = value(n, s, part), value(ref, s, part)
                if v is None or not r:
                    col.append(("–", None))
                else:
                    lift = v / r - 1.0
                    col.append((f"{lift:+.1%}", lift))
            cols.append(col)
        tables.append(
            Table(
                f"Lift of {LABELS[metric]}@{k} over {ref}",
                "relative to the reference baseline in the same column",
                ("model",) + tuple(s for s, _ in secs),
                _bold_best(names, cols, results),
            )
        )
    return tables


# ---------------------------------------------------------------- rendering
def _markdown(title: str, intro: str, tables: list[Table], charts: list[tuple[str, str]]) -> str:
    out = [f"# {title}", "", intro, ""]
    for t in tables:
        out += [f"## {t.title}", ""]
        if t.note:
            out += [f"_{t.note}_", ""]
        out.append("| " + " | ".join(t.header) + " |")
        out.append("|" + "|".join(["---"] + ["---:"] * (len(t.header) - 1)) + "|")
        for r in t.rows:
            out.append("| " + " | ".join(f"**{text}**" if bold else text for text, bold in r) + " |")
        out.append("")
    for path, what in charts:
        out += [f"![{what}]({path})", ""]
    return "\n".join(out)


CSS = (
    "body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;"
    "margin:0 0 1.5em}th,td{border:1px solid #ccc;padding:.3em .6em;text-align:right}"
    "th:first-child,td:first-child{text-align:left}th{background:#f3f3f3}.b{font-weight:700}"
    "em{color:#555}"
)


def _html(title: str, intro: str, tables: list[Table], charts: list[tuple[str, str]]) -> str:
    e = html.escape
    out = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(title)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        f"<p>{e(intro)}</p>",
    ]
    for t in tables:
        out.append(f"<h2>{e(t.title)}</h2>")
        if t.note:
            out.append(f"<p><em>{e(t.note)}</em></p>")
        out.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in t.header) + "</tr>")
        for r in t.rows:
            cells = []
            for j, (text, bold) in enumerate(r):
                inner = f"<em>{e(text.strip('*'))}</em>" if j == 0 and text.startswith("*") else e(text)
                cells.append(f'<td class="b">{inner}</td>' if bold else f"<td>{inner}</td>")
            out.append("<tr>" + "".join(cells) + "</tr>")
        out.append("</table>")
    for path, what in charts:
        out.append(
            f'<figure><img src="{e(path)}" alt="{e(what)}"><figcaption>{e(what)}</figcaption></figure>'
        )
    out.append("</body></html>")
    return "\n".join(out)


def _bar_chart(
    results: dict, names: list[str], k: int, metric: str, which: str, path: str, title: str
) -> None:
    """Grouped bars (one colour per model) with CI error bars. Agg canvas: no pyplot global state."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    key = f"{metric}@{k}"
    if which == "channels":
        secs = [("overall", None)] + [(s, "per_channel") for s, _ in _sections(results, names, "per_channel")]
    else:
        secs = [(s, "per_group") for s, _ in _sections(results, names, "per_group")]
    fig = Figure(figsize=(max(6.0, 0.45 * max(1, len(secs)) * max(1, len(names)) + 2), 4.8), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    if not secs:
        ax.text(0.5, 0.5, "no customer groups in these results", ha="center", va="center")
        ax.set_axis_off()
    else:
        x = np.arange(len(secs))
        width = 0.8 / max(1, len(names))
        for i, n in enumerate(names):
            vals, lo, hi = [], [], []
            for s, part in secs:
                sec = results[n].get("overall") if part is None else (results[n].get(part) or {}).get(s)
                v = _num((sec or {}).get(key))
                iv = (sec or {}).get("ci95", {}).get(key) if sec else None
                vals.append(v if v is not None else 0.0)
                if v is not None and iv and _num(iv[0]) is not None:
                    lo.append(max(0.0, v - iv[0]))
                    hi.append(max(0.0, iv[1] - v))
                else:
                    lo.append(0.0)
                    hi.append(0.0)
            hatch = "//" if results[n].get("baseline") else None
            ax.bar(
                x + (i - (len(names) - 1) / 2) * width,
                vals,
                width,
                yerr=[lo, hi],
                capsize=2,
                label=n,
                hatch=hatch,
            )
        ax.set_xticks(x)
        ax.set_xticklabels([s for s, _ in secs], rotation=20 if len(secs) > 4 else 0)
        ax.set_ylabel(f"{LABELS[metric]}@{k}")
        ax.legend(
            fontsize="small",
            ncols=min(4, len(names)),
            loc="upper center",
            bbox_to_anchor=(0.5, -0.12),
            frameon=False,
        )
        ax.grid(axis="y", alpha=0.3)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)


def _clean(o):
    """JSON-safe: numpy scalars/arrays to Python, NaN/inf to null."""
    import numpy as np

    if isinstance(o, dict):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if isinstance(o, np.ndarray):
        return _clean(o.tolist())
    if isinstance(o, np.generic):
        o = o.item()
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return o

"""The evaluation report: JSON, Markdown, HTML and charts from evaluate() results."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from training.evaluate import evaluate
from training.report import write_report

CUST = np.repeat(np.arange(40), 3)
ITEM = (CUST * 7 + np.tile([0, 1, 2], 40)) % 30
CHAN = np.where(CUST % 2 == 0, "store", "web")


def results() -> dict:
    def ranker(shift):
        return lambda rows: (rows[:, None] * 7 + np.arange(5)[None, :] + shift) % 30

    groups = {"light": np.arange(40) < 20, "heavy": np.arange(40) >= 20}
    good = evaluate(ranker(0), CUST, ITEM, CHAN, 5, 30, groups=groups, bootstrap=50)
    poor = evaluate(ranker(2), CUST, ITEM, CHAN, 5, 30, groups=groups, bootstrap=50)
    pop = evaluate(
        lambda rows: np.tile(np.arange(5), (len(rows), 1)),
        CUST,
        ITEM,
        CHAN,
        5,
        30,
        groups=groups,
        bootstrap=50,
    )
    return {
        "als": {**good, "fit_seconds": 1.25},
        "bpr": poor,
        "popularity (baseline)": {**pop, "baseline": True},
    }


def read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def test_report_files_and_contents(tmp_path):
    paths = write_report(results(), str(tmp_path / "rep"), "ML check")
    assert set(paths) == {"json", "markdown", "html", "chart_channels", "chart_groups"}
    for p in paths.values():
        assert os.path.getsize(p) > 0
    for png in (paths["chart_channels"], paths["chart_groups"]):
        with open(png, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    data = json.loads(read(paths["json"]))
    assert data["title"] == "ML check" and data["k"] == 5 and data["reference"] == "popularity (baseline)"
    assert data["order"] == ["als", "bpr", "popularity (baseline)"]
    assert data["results"]["als"]["overall"]["ndcg@5"] == pytest.approx(1.0)
    md = read(paths["markdown"])
    assert md.startswith("# ML check")
    for heading in (
        "## Overall",
        "## NDCG@5 per channel",
        "## MAP@5 per customer group",
        "## Lift of NDCG@5 over popularity (baseline)",
    ):
        assert heading in md
    overall = md.split("## Overall")[1].split("##")[0]
    als_row = next(line for line in overall.splitlines() if line.startswith("| als"))
    assert "**1.0000" in als_row and als_row.endswith("| 1.2 |")  # best NDCG in bold; fit seconds
    assert "| *popularity (baseline)* |" in overall  # baselines always listed, in italics
    assert "store (n=20)" in md and "web (n=20)" in md
    assert "![overall and per channel](ndcg_overall_channels.png)" in md
    html = read(paths["html"])
    assert "<table>" in html and "<em>popularity (baseline)</em>" in html


def test_report_refuses_nothing_and_unknown_reference(tmp_path):
    with pytest.raises(ValueError, match="no results"):
        write_report({}, str(tmp_path), "empty")
    with pytest.raises(ValueError, match="reference 'nope'"):
        write_report(results(), str(tmp_path), "t", reference="nope")

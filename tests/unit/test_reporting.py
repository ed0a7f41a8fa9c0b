"""The pages' shared parts (exfm/reporting): one number format, the page shell every template
extends, charts that escape what they draw, and templates loaded from the package's files."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

import exfm.reporting
from exfm.reporting import fmt, render, svg, trusted

TEMPLATES = Path(exfm.reporting.__file__).parent / "templates"


@pytest.mark.parametrize(
    ("value", "spec", "missing", "shown"),
    [
        (None, ".4g", "", ""),
        ("", ".4g", "-", "-"),
        (math.nan, ".4f", "-", "-"),
        (math.inf, ".4g", "", ""),
        (0.123456, ".4g", "", "0.1235"),
        (0.123456, ".3f", "-", "0.123"),
        (1234567, ".4g", "", "1,234,567"),
        (True, ".4g", "", "True"),
        ("feed", ".4g", "", "feed"),
    ],
)
def test_one_number_format(value: object, spec: str, missing: str, shown: str) -> None:
    assert fmt(value, spec, missing) == shown


def test_every_page_extends_the_shell_and_stays_offline() -> None:
    pages = sorted(p.name for p in TEMPLATES.glob("*.html") if p.name != "base.html")
    assert pages == ["drift_day.html", "drift_index.html", "pipeline.html", "results.html"]
    for page in pages:
        text = (TEMPLATES / page).read_text()
        assert text.startswith('{% extends "base.html" %}'), page
        assert "<script" not in text and "http" not in text, page
    html = render(
        "pipeline.html",
        source="world",
        days=["2026-01-05", "2026-01-06"],
        metrics={"all": {"variant": "ah_sa", "fm": {"ne": 0.94531}, "vm": None, "baseline": None}},
        charts=[("feed", trusted(svg.lines("ne-feed", ["2026-01-05"], {"fm": [0.9]})))],
        drift_href="drift/index.html",
        drift_uri="x",
        results_href=None,
    )
    assert html.startswith("<!doctype html>") and "<style>" in html
    assert '<td class="num">0.94531</td>' in html and 'data-plot="ne-feed"' in html
    assert "http" not in html and "<script" not in html


def test_charts_escape_what_they_draw_and_pages_escape_the_rest() -> None:
    chart = svg.bars("b<x>", [("<b>f&</b>", 0.5, "warn")])
    assert "<b>" not in chart and "&lt;b&gt;f&amp;&lt;/b&gt;" in chart
    html = render("drift_index.html", days=[], churn_features=["<i>"], charts={})
    assert "churn &lt;i&gt;" in html

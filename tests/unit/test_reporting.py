"""The pages' shared parts (exfm/reporting): one number format, the page shell every template
extends, charts that escape what they draw, and templates loaded from the package's files."""

from __future__ import annotations

import html
import itertools
import math
import re
from pathlib import Path

import pytest

import exfm.reporting
from data_checks.records import CheckResult, DayChecks
from data_checks.report import airflow_href, render_day, render_index
from exfm.config import Config, load_config
from exfm.config_schema import ThresholdConfig
from exfm.reporting import fmt, render, svg, trusted
from tests.conftest import REPO

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


# ------------------------------------------------------------------------- charts' geometry


def _boxes(chart: str) -> list[tuple[str, tuple[float, float, float, float]]]:
    """Every drawn text of a chart with its box (x0, y0, x1, y1) in the chart's coordinates:
    its width from `svg.text_width`, its height the font's ascent and descent, turned by its
    transform (rotate about a point, or translate then rotate)."""
    size = svg.FONT_SIZE
    out = []
    for attrs, body in re.findall(r"<text ([^>]*)>(.*?)</text>", chart):
        text = html.unescape(re.sub(r"<title>.*?</title>", "", body))
        a = dict(re.findall(r'([\w-]+)="([^"]*)"', attrs))
        w = svg.text_width(text)
        x0 = {"end": -w, "middle": -w / 2}.get(a.get("text-anchor", ""), 0.0)
        corners = [(x0 + dx, dy) for dx in (0, w) for dy in (-0.8 * size, 0.25 * size)]
        x, y, angle, cx, cy = float(a.get("x", 0)), float(a.get("y", 0)), 0.0, 0.0, 0.0
        move = re.search(r"translate\(([-\d.]+),\s*([-\d.]+)\)", a.get("transform", ""))
        turn = re.search(r"rotate\(([-\d.]+)(?: ([-\d.]+) ([-\d.]+))?\)", a.get("transform", ""))
        if move:
            x, y = x + float(move[1]), y + float(move[2])
        if turn:
            angle = math.radians(float(turn[1]))
            cx, cy = (float(turn[2]), float(turn[3])) if turn[2] else (x, y)
        points = []
        for dx, dy in corners:
            px, py = x + dx - cx, y + dy - cy
            points.append(
                (
                    cx + px * math.cos(angle) - py * math.sin(angle),
                    cy + px * math.sin(angle) + py * math.cos(angle),
                )
            )
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        out.append((text, (min(xs), min(ys), max(xs), max(ys))))
    return out


def _outside(chart: str) -> list[str]:
    """The texts of a chart that reach outside its viewBox."""
    _, _, width, height = (float(v) for v in re.search(r'viewBox="([^"]+)"', chart)[1].split())
    return [
        f"{text!r} {[round(v) for v in box]} in {width:.0f}x{height:.0f}"
        for text, box in _boxes(chart)
        if box[0] < -0.5 or box[1] < -0.5 or box[2] > width + 0.5 or box[3] > height + 0.5
    ]


LONG_IDS = [f"advertiser-{i:04d}-campaign-spring-sale-{i}" for i in range(40)] + ["other"]
EDGES = [f"{i}.123e+04" for i in range(10)]
INTERVALS = ["[-inf, 0.001234)", *(f"[{a}, {b})" for a, b in itertools.pairwise(EDGES)), "missing"]
CHARTS = {
    "histogram, 41 long category ids": svg.histogram("h", LONG_IDS, [1 / 41] * 41, [1 / 41] * 41),
    "histogram, dense intervals": svg.histogram("h", INTERVALS, [0.1] * 11, [0.1] * 11),
    "histogram, three short bins": svg.histogram(
        "h", ["1", "2", "other"], [0.5, 0.3, 0.2], [0.2] * 3
    ),
    "bars with a note": svg.bars(
        "b",
        [("ad_id", 0.93, "ungraded"), ("a_rather_long_feature_name_x", 0.2, "warn")],
        [(0.1, "warn"), (0.5, "fail")],
        notes={"ad_id": "ID, graded by churn: 4.3% (warn at 50%)"},
    ),
    "lines over 90 days, thresholds": svg.lines(
        "l",
        [f"2026-{1 + i // 28:02d}-{1 + i % 28:02d}" for i in range(90)],
        {"user_id": [0.1] * 90, "a much longer series name": [0.2] * 90},
        "2026-02-14",
        thresholds=[(0.5, "warn"), (0.9, "fail")],
        zero=True,
        y_label="share of rows",
    ),
    "lines, results page ticks": svg.lines(
        "l", ["a", "b"], {"x": [1.0, 2.0]}, ticks=["0 d", "30 d"]
    ),
}


@pytest.mark.parametrize("name", CHARTS)
def test_every_text_of_a_chart_fits_inside_it(name: str) -> None:
    assert _outside(CHARTS[name]) == []


def test_long_bin_labels_are_shortened_and_kept_whole_in_a_title() -> None:
    chart = CHARTS["histogram, 41 long category ids"]
    assert "<title>advertiser-0000-campaign-spring-sale-0</title>advertiser-0000-c…" in chart
    assert "rotate(-45" in chart  # too wide for their bins: turned, and the chart grows
    assert float(re.search(r'height="([\d.]+)"', chart)[1]) > 180
    short = CHARTS["histogram, three short bins"]
    assert "rotate" not in short and "<title>other</title>" not in short
    # the check itself can fail: a label drawn flat from the right edge sticks out
    assert _outside('<svg viewBox="0 0 100 50"><text x="90" y="20">advertiser</text></svg>')


def test_lines_draw_round_ticks_from_zero_labelled_thresholds_and_readable_days() -> None:
    days = [f"2026-01-{d:02d}" for d in range(1, 31)]
    chart = svg.lines(
        "churn",
        days,
        {"ad_id": [0.03 + d / 1000 for d in range(30)]},
        "2026-01-17",
        thresholds=[(0.5, "warn"), (0.9, "fail")],
        zero=True,
    )
    ticks = re.findall(r'text-anchor="end">([^<]+)</text>', chart)
    assert ticks == ["0.00", "0.25", "0.50", "0.75", "1.00"]
    assert ">warn 0.5</text>" in chart and ">fail 0.9</text>" in chart
    assert chart.count('stroke-dasharray="4 3"') == 2
    labels = [(box, text) for text, box in _boxes(chart) if re.fullmatch(r"\d\d-\d\d", text)]
    assert "01-17" in {t for _, t in labels}  # the day the page is about keeps its label
    assert all(a[2] + 4 < b[0] for (a, _), (b, _) in itertools.pairwise(labels)), "labels overlap"
    assert all(b[3] - b[1] < 2 * svg.FONT_SIZE for b, _ in labels), "labels are not turned"
    assert "<title>2026-01-17 ad_id: 0.046</title>" in chart  # each point tells its day
    # the pipeline report's and the results page's call is unchanged: no zero, no lines
    plain = svg.lines("ne-feed", ["2026-01-05", "2026-01-06"], {"fm": [0.91, 0.93]})
    assert "stroke-dasharray" not in plain
    assert re.findall(r'text-anchor="end">([^<]+)</text>', plain)[0] != "0"


def test_bars_mark_a_bar_not_graded_and_say_why() -> None:
    chart = CHARTS["bars with a note"]
    assert f'fill="{svg.COLORS["ungraded"]}"' in chart
    assert ">0.93 · ID, graded by churn: 4.3% (warn at 50%)</text>" in chart


# ------------------------------------------------------------------------ the drift report


def _checked(ds: str, reference: list[str], churn_ad_id: float | None = None) -> DayChecks:
    """A day's record as the gate writes it: ad_id's PSI past the fail line (not graded: an ID
    feature), category_id's past the warn line, ad_id's churn graded per scope."""
    day = DayChecks(ds=ds, reference_days=reference, verticals=["feed"], inputs={})
    psi = ThresholdConfig(warn=0.1, fail=0.5)
    churn = ThresholdConfig(warn=0.5, fail=0.9)
    if reference:
        for scope in ("all", "feed"):
            day.add(CheckResult.graded("drift", scope, "psi", "ad_id", 0.93, psi, "pass", "ids"))
            day.add(CheckResult.graded("drift", scope, "psi", "category_id", 0.2, psi, "warn"))
            day.add(
                CheckResult.graded("churn", scope, "churn", "ad_id", churn_ad_id, churn, "pass")
            )
        day.histograms["category_id"] = {
            "labels": ["1", "other"],
            "ref": [0.5] * 2,
            "cur": [0.5] * 2,
        }
    day.grade()
    return day


def _cfg(*overrides: str) -> Config:
    return load_config(REPO / "params.yaml", ["checks.id_features=[ad_id]", *overrides])


def test_an_id_feature_past_the_psi_lines_says_it_is_graded_by_churn() -> None:
    days = [_checked("2026-01-05", []), _checked("2026-01-06", ["2026-01-05"], 0.043)]
    page = render_day(days[1], days, _cfg())
    bars = page[page.index('data-plot="psi"') :]
    bars = bars[: bars.index("</svg>")]
    assert f'fill="{svg.COLORS["ungraded"]}"><title>ad_id: 0.93' in bars
    assert "0.93 · ID, graded by churn: 4.3% (warn at 50%)" in bars
    note = page[page.index('data-note="ids"') : page.index("PSI per feature and vertical")]
    assert "not graded by PSI" in note and "The churn check grades them" in note
    assert re.search(
        r"<td>ad_id</td><td class=\"num\">0.93</td>\s*<td class=\"num\">4.3%</td>", note
    )
    assert "50% / 90%" in note and '<td class="pass">pass</td>' in note
    assert "ad_id churn" in page and '<td class="num ungraded">0.93</td>' in page
    # the largest PSI of a day leaves the ID features out, on the index and its chart
    index = render_index(days, _cfg())
    assert re.search(r'<td class="num">0.2</td>', index) and "0.93" not in index


def test_the_first_day_says_when_its_drift_checks_start() -> None:
    first = _checked("2026-01-05", [])
    page = " ".join(render_day(first, [first], _cfg()).split())
    assert "No reference yet: the drift checks start on 2026-01-06." in page
    assert "Drift per feature" not in page and "PSI per feature" not in page
    assert "Most drifted" not in page and "<svg" not in page
    assert "No churn yet: it needs a reference window." in page
    later = [first, _checked("2026-01-09", ["2026-01-05"], 0.1)]  # days need not be adjacent
    assert "drift checks start on 2026-01-09." in render_day(first, later, _cfg())
    assert "No reference yet" not in render_day(later[1], later, _cfg())
    assert "(no reference: suite only)" in render_index(later, _cfg())


def test_trend_charts_draw_the_thresholds_of_the_config_they_are_built_with() -> None:
    days = [_checked("2026-01-05", []), _checked("2026-01-06", ["2026-01-05"], 0.043)]
    index = render_index(days, _cfg("checks.churn.warn=0.3", "checks.psi.fail=0.7"))
    churn = index[index.index('data-plot="churn"') :]
    assert ">warn 0.3</text>" in churn[: churn.index("</svg>")]
    assert ">fail 0.7</text>" in index[index.index('data-plot="max-psi"') :]


@pytest.mark.parametrize(
    ("ui_url", "href"),
    [
        (None, "/exfm/day/2026-01-06"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080/exfm/day/2026-01-06"),
        (
            "https://airflow.example.org/base/",
            "https://airflow.example.org/base/exfm/day/2026-01-06",
        ),
    ],
)
def test_a_day_links_to_itself_in_airflow(ui_url: str | None, href: str) -> None:
    cfg = _cfg(*([f"airflow.ui_url={ui_url}"] if ui_url else []))
    days = [_checked("2026-01-05", []), _checked("2026-01-06", ["2026-01-05"], 0.04)]
    page = render_day(days[1], days, cfg)
    assert f'<a href="{href}"' in page and ">this day in Airflow</a>" in page
    assert airflow_href(cfg, "2026-01-06") == href


def test_the_page_states_the_ks_bound_and_what_shift_measures() -> None:
    days = [_checked("2026-01-05", []), _checked("2026-01-06", ["2026-01-05"], 0.043)]
    page = " ".join(render_day(days[1], days, _cfg("checks.ks_grid=500")).split())
    note = page[page.index('data-note="dense"') :]
    note = note[: note.index("</p>")]
    assert "quantiles at 1/500 steps: at most 0.0020 below the exact value" in note
    assert "(warn at 0.1, fail at 0.5)" in note  # ks
    assert "a mean shift of 0.25 standard deviations reads 0.25 (warn at 0.2, fail at 1)" in note

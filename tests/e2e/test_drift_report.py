"""The data-drift report as people see it: static HTML that parses, holds every plot, references
nothing outside itself, and renders in headless Chromium (Debian's package, installed by
`make test`) to a page that is not blank."""

from __future__ import annotations

import json
import re
import subprocess
from html import unescape
from itertools import pairwise
from pathlib import Path

import pytest

from data_checks.gate import check_day
from exfm import das
from exfm.config import load_config
from exfm.data.schema import FeatureSpec
from exfm.data.world import generate
from exfm.lake import IMPRESSIONS, Lake
from exfm.reporting import svg
from exfm.trainee import build_trainee
from exfm.training import train_day
from tests.conftest import REPO, SMALL_WORLD, TINY_MODELS
from tests.e2e.browser import CHROMIUM, Page, screenshot

pytestmark = pytest.mark.slow

DAYS = ["2026-01-05", "2026-01-06", "2026-01-07"]


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three checked days of a tiny world with an FM and its DAS predictions; the reports are
    copied to a local folder (checks.report_dir)."""
    root = tmp_path_factory.mktemp("report")
    cfg = load_config(
        REPO / "params.yaml",
        [
            *SMALL_WORLD,
            *TINY_MODELS,
            "publish.max_ne=100",
            f"lake.root={root / 'lake'}",
            f"checks.report_dir={root / 'html'}",
        ],
    )
    lake = Lake.from_config(cfg.lake)
    generate(cfg, lake)
    spec = FeatureSpec.from_config(cfg.features)
    for i, ds in enumerate(DAYS):
        if i:
            das.backfill_day(cfg, lake, ds)
        check_day(cfg, lake, ds)
        train_day(cfg, lake, build_trainee(cfg, spec, "fm"), lake.read(IMPRESSIONS, ds=[ds]), ds)
    return root / "html"


def _parse(path: Path) -> tuple[str, Page]:
    text = path.read_text(encoding="utf-8")
    page = Page()
    page.feed(text)
    page.close()
    return text, page


def _plots(page: Page) -> set[str]:
    return {attrs.get("data-plot") or "" for tag, attrs in page.tags if tag == "svg"}


def test_pages_parse_hold_every_plot_and_link_each_other(reports: Path) -> None:
    assert sorted(p.name for p in reports.iterdir()) == [*(f"{d}.html" for d in DAYS), "index.html"]
    text, index = _parse(reports / "index.html")
    assert _plots(index) == {"ctr", "max-psi", "churn", "fm-calibration"}
    fm_chart = text[text.index('data-plot="fm-calibration"') :]
    assert "<polyline" in fm_chart[: fm_chart.index("</svg>")]  # the DAS-scored days are drawn
    links = {a["href"] for tag, a in index.tags if tag == "a"}
    assert links == {f"{d}.html" for d in DAYS}
    text, day = _parse(reports / f"{DAYS[2]}.html")
    plots = _plots(day)
    assert {"psi", "ctr", "churn", "fm-calibration"} <= plots
    assert len([p for p in plots if p.startswith("histogram-")]) == 3
    hrefs = {a["href"] for tag, a in day.tags if tag == "a"}
    # airflow.ui_url is null: the day in Airflow is root-relative, for the ExFM console
    assert hrefs == {"index.html", f"{DAYS[1]}.html", f"/exfm/day/{DAYS[2]}"}
    assert "FM predictions: fm-2026-01-06" in text
    first = " ".join((reports / f"{DAYS[0]}.html").read_text(encoding="utf-8").split())
    assert f"No reference yet: the drift checks start on {DAYS[1]}." in first


@pytest.mark.parametrize("name", ["index.html", *(f"{d}.html" for d in DAYS)])
def test_pages_reference_nothing_outside_themselves(reports: Path, name: str) -> None:
    text, page = _parse(reports / name)
    assert not [t for t, _ in page.tags if t in ("script", "link", "img", "iframe", "object")]
    for _, attrs in page.tags:
        for key in ("src", "href", "xlink:href", "action"):
            value = attrs.get(key) or ""
            assert not re.match(r"^\s*([a-z]+:)?//", value, re.I), (name, key, value)
    assert not re.search(r"https?:|url\(|@import", text, re.I)


@pytest.mark.parametrize("name", ["index.html", f"{DAYS[2]}.html"])
def test_chromium_renders_a_page_that_is_not_blank(
    reports: Path, tmp_path: Path, name: str
) -> None:
    width, height, pixels = screenshot(reports / name, tmp_path, 1280, 1600)
    assert (width, height) == (1280, 1600)
    # a blank page compresses to a handful of byte values; charts and text give many
    assert len(set(pixels)) > 50


# Measures, in the browser, every text of every chart against its <svg>'s box (a test harness
# only: the reports themselves carry no script).
MEASURE = """<script>
const clipped = [];
for (const chart of document.querySelectorAll("svg")) {
  const box = chart.getBoundingClientRect();
  for (const text of chart.querySelectorAll("text")) {
    const r = text.getBoundingClientRect();
    if (r.left < box.left - 1 || r.right > box.right + 1 || r.top < box.top - 1
        || r.bottom > box.bottom + 1) {
      clipped.push(chart.dataset.plot + ": " + text.textContent);
    }
  }
}
const out = document.createElement("pre");
out.id = "clipped";
out.textContent = JSON.stringify({charts: document.querySelectorAll("svg").length, clipped});
document.body.append(out);
</script>"""


def test_no_chart_text_is_cut_off_in_chromium(reports: Path, tmp_path: Path) -> None:
    """The day's real page, plus the long labels a real catalogue has (campaign names as ids,
    wide dense intervals) and an ID feature's note, rendered at the report's font."""
    ids = [f"advertiser-{i:04d}-spring-campaign-{i}" for i in range(50)] + ["other", "missing"]
    edges = [f"{i}.123e+04" for i in range(11)]
    extra = [
        svg.histogram("long-ids", ids, [1 / 52] * 52, [1 / 52] * 52),
        svg.histogram(
            "intervals", [f"[{a}, {b})" for a, b in pairwise(edges)], [0.1] * 10, [0.1] * 10
        ),
        svg.bars(
            "notes",
            [("ad_id", 0.93, "ungraded"), ("a_rather_long_feature_name", 0.2, "warn")],
            [(0.1, "warn"), (0.5, "fail")],
            notes={"ad_id": "ID, graded by churn: 4.3% (warn at 50%)"},
        ),
    ]
    page = (reports / f"{DAYS[2]}.html").read_text(encoding="utf-8")
    harness = tmp_path / "measure.html"
    harness.write_text(page.replace("</body>", "".join(extra) + MEASURE + "</body>"))
    dom = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1600,1200",
            "--dump-dom",
            harness.as_uri(),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    found = json.loads(unescape(re.search(r'<pre id="clipped">(.*?)</pre>', dom, re.S)[1]))
    assert found["charts"] >= 9 and found["clipped"] == []

"""The data-drift report people review: one static HTML page per checked day and an index across
days, written to the lake under `reports/drift/` (and to `checks.report_dir` when set).

Self-contained: inline CSS and inline SVG charts (exfm/reporting: the shared page shell, charts and
number format; this report's templates are drift_day.html and drift_index.html there), no scripts,
no external URL, so a page opens offline from a file. A day page shows the pass/warn/fail summary,
the failing and warning checks, per-feature drift bars, a feature x vertical PSI table, the
reference-vs-today histograms of the most drifted features, CTR, ID churn and FM calibration over
time, the suite's results, and links to the previous and next day and the index.

    exfm report [--out DIR]     rebuild every page from the stored check results
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data_checks.drift import ALL
from data_checks.records import DayChecks
from exfm.config import Config
from exfm.errors import ExfmError
from exfm.lake import Lake
from exfm.reporting import render, svg, trusted

PREFIX = "reports/drift"


def load_results(lake: Lake) -> list[DayChecks]:
    """Every stored check result, oldest first, each with the DAS's scoring facts of its day
    (`das`: the FM's calibration and NE on the day's labels) when the DAS has scored it: the
    DAS runs after the check in a day's pipeline, so these are read afresh at every render."""
    keys = [k for k in lake.list_keys("checks") if k.endswith("/result.json")]
    results = sorted(
        (DayChecks.from_json(json.loads(lake.get_bytes(k)), where=k) for k in keys),
        key=lambda r: r.ds,
    )
    scoring: dict[str, tuple[str, str]] = {}
    for key in lake.list_keys("das_stats"):
        parts = key.split("/")  # das_stats/ds=D/fm_version=V/scoring.json
        if len(parts) == 4 and parts[3] == "scoring.json":
            day, version = parts[1].removeprefix("ds="), parts[2]
            if version > scoring.get(day, ("", ""))[0]:
                scoring[day] = (version, key)
    for result in results:
        if result.ds in scoring:
            result.das = json.loads(lake.get_bytes(scoring[result.ds][1]))
    return results


@dataclass(frozen=True)
class DaySummary:
    """One row of the index page and one point of each chart over time."""

    ds: str
    status: str
    fail: int
    warn: int
    ctr: float | None
    max_psi: float | None
    churn: dict[str, float | None]
    fm_calibration: float | None


def _summary(result: DayChecks, churn_features: list[str]) -> DaySummary:
    label = result.pick("label_shift", ALL)
    fm = result.pick("fm_calibration", ALL)
    psis = [x.value for x in result if x.check == "psi" and x.scope == ALL]
    counts = result.counts()
    return DaySummary(
        ds=result.ds,
        status=result.status,
        fail=counts["fail"],
        warn=counts["warn"],
        ctr=label.details.get("ctr") if label else None,
        max_psi=max(psis) if psis else None,
        churn={f: getattr(result.pick("churn", ALL, f), "value", None) for f in churn_features},
        fm_calibration=(result.das or {}).get("fm", {}).get("calibration")
        or (fm.details.get("calibration") if fm else None),
    )


def _series(
    summaries: list[DaySummary], churn_features: list[str], highlight: str | None
) -> dict[str, Any]:
    days = [s.ds for s in summaries]
    return {
        "ctr": trusted(svg.lines("ctr", days, {"CTR": [s.ctr for s in summaries]}, highlight)),
        "psi": trusted(
            svg.lines("max-psi", days, {"max PSI": [s.max_psi for s in summaries]}, highlight)
        ),
        "churn": trusted(
            svg.lines(
                "churn",
                days,
                {f: [s.churn.get(f) for s in summaries] for f in churn_features},
                highlight,
            )
        ),
        "fm": trusted(
            svg.lines(
                "fm-calibration",
                days,
                {"FM calibration": [s.fm_calibration for s in summaries]},
                highlight,
            )
        ),
    }


def render_day(
    result: DayChecks,
    history: list[DayChecks],
    churn_features: list[str],
    psi_lines: list[tuple[float, str]],
) -> str:
    days = [h.ds for h in history]
    i = days.index(result.ds)
    summaries = [_summary(h, churn_features) for h in history]
    charts = _series(summaries, churn_features, result.ds)
    psi_all = [x for x in result if x.check == "psi" and x.scope == ALL]
    psi_all.sort(key=lambda x: -x.value)
    charts["psi"] = trusted(
        svg.bars("psi", [(x.feature, x.value, x.status) for x in psi_all], psi_lines)
    )
    charts["histograms"] = [
        (name, trusted(svg.histogram(f"histogram-{name}", h["labels"], h["ref"], h["cur"])))
        for name, h in result.histograms.items()
    ]
    psis = [x for x in result if x.check == "psi"]
    scopes = sorted({x.scope for x in psis})
    features = sorted({x.feature for x in psis})
    cells = {(x.feature, x.scope): x for x in psis}
    matrix = {
        "scopes": scopes,
        "rows": [(f, [cells.get((f, s)) for s in scopes]) for f in features],
    }
    flagged = sorted(
        (x for x in result if x.status != "pass"),
        key=lambda x: (x.status != "fail", x.check),
    )
    counts = result.counts()
    return render(
        "drift_day.html",
        r=result,
        prev=days[i - 1] if i > 0 else None,
        next=days[i + 1] if i + 1 < len(days) else None,
        counts=counts,
        flagged=flagged,
        charts=charts,
        matrix=matrix,
        suite=[x for x in result if x.kind == "suite"],
    )


def render_index(history: list[DayChecks], churn_features: list[str]) -> str:
    summaries = [_summary(h, churn_features) for h in history]
    return render(
        "drift_index.html",
        days=summaries,
        churn_features=churn_features,
        charts=_series(summaries, churn_features, None),
    )


def write_reports(cfg: Config, lake: Lake, ds: str | None = None, out: str | None = None) -> str:
    """Write the page of `ds` (every day when None), its neighbours' (their links change) and
    the index; returns the URI of the day's page (or of the index)."""
    history = load_results(lake)
    if not history:
        return ""
    churn = list(cfg.checks.id_features)
    lines = [(cfg.checks.psi.warn, "warn"), (cfg.checks.psi.fail, "fail")]
    days = [h.ds for h in history]
    if ds is None:
        todo = days
    elif ds not in days:
        raise ExfmError(f"ds={ds} has no check result: run `exfm check --ds {ds}` first")
    else:
        i = days.index(ds)
        todo = days[max(i - 1, 0) : i + 2]
    pages = {f"{d}.html": render_day(history[days.index(d)], history, churn, lines) for d in todo}
    pages["index.html"] = render_index(history, churn)
    targets = [out or cfg.checks.report_dir]
    for folder in filter(None, targets):
        try:
            Path(folder).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            why = e.strerror or str(e)
            raise ExfmError(f"cannot write the drift reports to {folder}: {why}") from None
    for name, html in pages.items():
        lake.put_bytes(f"{PREFIX}/{name}", html.encode())
        for folder in filter(None, targets):
            (Path(folder) / name).write_text(html, encoding="utf-8")
    return lake.uri(f"{PREFIX}/{ds}.html" if ds else f"{PREFIX}/index.html")

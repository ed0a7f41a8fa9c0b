"""The data-drift report people review: one static HTML page per checked day and an index across
days, written to the lake under `reports/drift/` (and to `checks.report_dir` when set).

Self-contained: inline CSS and inline SVG charts (exfm/reporting: the shared page shell, charts and
number format; this report's templates are drift_day.html and drift_index.html there), no scripts,
no external URL, so a page opens offline from a file. A day page shows the pass/warn/fail summary,
the failing and warning checks (each with its detail: a KS result says how it was computed and how
far from the exact value it may be, e.g. "KS on the reference's quantiles at 1/1000 steps: at most
0.001 below the exact value"; a shift result its Wasserstein-1 distance, the reference's standard
deviation it is divided by, and its bound), per-feature drift bars (ID features greyed, with the
churn that grades them), a feature x vertical PSI table, the reference-vs-today histograms of the
most drifted features, CTR, ID churn and FM calibration over time (zero-based, with the warn and
fail lines of the config the report is built with), the suite's results, and links to the previous
and next day, the index and the day in Airflow (`airflow.ui_url`, or root-relative for the ExFM
console). A day without a reference window says when its drift checks start.

    exfm report [--out DIR]     rebuild every page from the stored check results
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data_checks.drift import ALL
from data_checks.records import CheckResult, DayChecks
from exfm.config import Config
from exfm.config_schema import ThresholdConfig
from exfm.errors import ExfmError
from exfm.lake import Lake
from exfm.reporting import fmt, render, svg, trusted

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
    reference: bool
    ctr: float | None
    ref_ctr: float | None
    max_psi: float | None
    churn: dict[str, float | None]
    fm_calibration: float | None


def _graded_by_churn(result: DayChecks) -> set[str]:
    """The ID features of a day: their PSI is shown but the churn check grades them (gate.py),
    so no PSI line or verdict may count them."""
    return {x.feature for x in result if x.check == "churn" and x.feature}


def _summary(result: DayChecks, churn_features: list[str]) -> DaySummary:
    label = result.pick("label_shift", ALL)
    fm = result.pick("fm_calibration", ALL)
    ids = _graded_by_churn(result)
    psis = [x.value for x in result if x.check == "psi" and x.scope == ALL and x.feature not in ids]
    counts = result.counts()
    return DaySummary(
        ds=result.ds,
        status=result.status,
        fail=counts["fail"],
        warn=counts["warn"],
        reference=bool(result.reference_days),
        ctr=label.details.get("ctr") if label else None,
        ref_ctr=label.details.get("ref_ctr") if label else None,
        max_psi=max(psis) if psis else None,
        churn={f: getattr(result.pick("churn", ALL, f), "value", None) for f in churn_features},
        fm_calibration=(result.das or {}).get("fm", {}).get("calibration")
        or (fm.details.get("calibration") if fm else None),
    )


def _lines(threshold: ThresholdConfig) -> list[tuple[float, str]]:
    return [(threshold.warn, "warn"), (threshold.fail, "fail")]


def _trends(summaries: list[DaySummary], cfg: Config, highlight: str | None) -> dict[str, Any]:
    """The charts over days, on zero-based axes with the thresholds of `cfg` drawn: a reviewer
    reads how far a day sits from its warn and fail lines, not only how it moved."""
    days, checks = [s.ds for s in summaries], cfg.checks

    def chart(name: str, series: dict, lines: list[tuple[float, str]], y_label: str) -> Any:
        if all(v is None for values in series.values() for v in values):
            return None  # the page says why instead of drawing empty axes
        return trusted(
            svg.lines(name, days, series, highlight, thresholds=lines, zero=True, y_label=y_label)
        )

    cal = checks.fm_calibration
    # the FM's calibration is graded by |calibration - 1|: its lines lie on both sides of 1
    fm = [(1 + v, s) for v, s in _lines(cal)] + [(1 - v, s) for v, s in _lines(cal) if v <= 1]
    return {
        "ctr": chart(
            "ctr",
            {"CTR": [s.ctr for s in summaries], "reference CTR": [s.ref_ctr for s in summaries]},
            [],
            "CTR",
        ),
        "psi": chart(
            "max-psi", {"max PSI": [s.max_psi for s in summaries]}, _lines(checks.psi), "PSI"
        ),
        "churn": chart(
            "churn",
            {f: [s.churn.get(f) for s in summaries] for f in checks.id_features},
            _lines(checks.churn),
            "share of rows",
        ),
        "fm": chart(
            "fm-calibration",
            {"FM calibration": [s.fm_calibration for s in summaries]},
            fm,
            "mean prediction / CTR",
        ),
    }


@dataclass(frozen=True)
class IdFeature:
    """An ID feature of a day: its PSI (shown, not graded) beside the churn check grading it."""

    name: str
    psi: float | None
    churn: CheckResult | None


def _matrix(result: DayChecks) -> dict[str, Any]:
    """The feature x vertical PSI table; an ID feature's row is followed by its churn row."""
    ids = _graded_by_churn(result)
    psis = [x for x in result if x.check == "psi"]
    scopes = sorted({x.scope for x in psis})
    cells = {(x.check, x.feature, x.scope): x for x in result if x.check in ("psi", "churn")}
    return {
        "scopes": scopes,
        "rows": [
            (
                f,
                [cells.get(("psi", f, s)) for s in scopes],
                [cells.get(("churn", f, s)) for s in scopes] if f in ids else None,
            )
            for f in sorted({x.feature for x in psis})
        ],
    }


def _drift_start(result: DayChecks, days: list[str]) -> str:
    """The first day whose checks compare with this one: the next checked day, else the
    calendar day after."""
    i = days.index(result.ds)
    if i + 1 < len(days):
        return days[i + 1]
    return (dt.date.fromisoformat(result.ds) + dt.timedelta(days=1)).isoformat()


def airflow_href(cfg: Config, ds: str) -> str:
    """The day in Airflow: under airflow.ui_url, or root-relative, which the ExFM console plugin
    serves beside the lake's reports."""
    return f"{(cfg.airflow.ui_url or '').rstrip('/')}/exfm/day/{ds}"


def _psi_chart(result: DayChecks, cfg: Config) -> tuple[Any, list[IdFeature]]:
    """The day's PSI bars (all verticals) and its ID features: grey bars whose note says that
    churn grades them, so a long one past the fail line is not read as an unflagged failure."""
    ids = _graded_by_churn(result)
    psi_all = sorted(
        (x for x in result if x.check == "psi" and x.scope == ALL), key=lambda x: -x.value
    )
    id_rows = [
        IdFeature(x.feature, x.value, result.pick("churn", ALL, x.feature))
        for x in psi_all
        if x.feature in ids
    ]
    notes = {
        f.name: f"ID, graded by churn: {fmt(f.churn.value, '.1%')} "
        f"(warn at {fmt(f.churn.warn, '.0%')})"
        for f in id_rows
        if f.churn is not None
    }
    bars = [(x.feature, x.value, "ungraded" if x.feature in ids else x.status) for x in psi_all]
    chart = svg.bars("psi", bars, _lines(cfg.checks.psi), notes=notes)
    return trusted(chart), id_rows


def render_day(
    result: DayChecks,
    history: list[DayChecks],
    cfg: Config,
    summaries: list[DaySummary] | None = None,
) -> str:
    """The page of one day; `summaries`: the history's (`summarize`), when a caller renders many
    pages (each would otherwise summarize every day again: quadratic in the days)."""
    days = [h.ds for h in history]
    i = days.index(result.ds)
    if summaries is None:
        summaries = summarize(history, cfg)
    charts = _trends(summaries, cfg, result.ds)
    charts["psi"], id_rows = _psi_chart(result, cfg)
    charts["histograms"] = [
        (name, trusted(svg.histogram(f"histogram-{name}", h["labels"], h["ref"], h["cur"])))
        for name, h in result.histograms.items()
    ]
    flagged = sorted(
        (x for x in result if x.status != "pass"),
        key=lambda x: (x.status != "fail", x.check),
    )
    return render(
        "drift_day.html",
        r=result,
        prev=days[i - 1] if i > 0 else None,
        next=days[i + 1] if i + 1 < len(days) else None,
        counts=result.counts(),
        flagged=flagged,
        charts=charts,
        matrix=_matrix(result),
        ids=id_rows,
        drift_start=_drift_start(result, days),
        checks=cfg.checks,
        airflow=airflow_href(cfg, result.ds),
        airflow_console=cfg.airflow.ui_url is None,
        suite=[x for x in result if x.kind == "suite"],
    )


def summarize(history: list[DayChecks], cfg: Config) -> list[DaySummary]:
    """Each day's line of the index and point of the trend charts."""
    churn = list(cfg.checks.id_features)
    return [_summary(h, churn) for h in history]


def render_index(
    history: list[DayChecks], cfg: Config, summaries: list[DaySummary] | None = None
) -> str:
    if summaries is None:
        summaries = summarize(history, cfg)
    return render(
        "drift_index.html",
        days=summaries,
        churn_features=list(cfg.checks.id_features),
        charts=_trends(summaries, cfg, None),
    )


def report_uri(lake: Lake, ds: str) -> str:
    """Where the drift page of ds is (or will be, once written)."""
    return lake.uri(f"{PREFIX}/{ds}.html")


def write_reports(
    cfg: Config,
    lake: Lake,
    ds: str | None = None,
    out: str | None = None,
    days: Sequence[str] | None = None,
) -> str:
    """Write the page of `ds` (every day when None; the pages of `days` when given), their
    neighbours' (their links change) and the index; returns the URI of the day's page (or of the
    index). Every stored result is read once per call, so a range of days writes its pages with
    one call at its end (exfm.stages.Warm), not one per day."""
    history = load_results(lake)
    if not history:
        return ""
    have = [h.ds for h in history]
    wanted = [ds] if ds is not None else list(days) if days is not None else have
    todo: set[str] = set()
    for day in wanted:
        if day not in have:
            raise ExfmError(f"ds={day} has no check result: run `exfm check --ds {day}` first")
        i = have.index(day)
        todo.update(have[max(i - 1, 0) : i + 2])
    summaries = summarize(history, cfg)
    pages = {
        f"{d}.html": render_day(history[have.index(d)], history, cfg, summaries)
        for d in sorted(todo)
    }
    pages["index.html"] = render_index(history, cfg, summaries)
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

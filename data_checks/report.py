"""The data-drift report people review: one static HTML page per checked day and an index across
days, written to the lake under `reports/drift/` (and to `checks.report_dir` when set).

Self-contained: inline CSS and inline SVG charts (data_checks/svg.py), no scripts, no external URL,
so a page opens offline from a file. A day page shows the pass/warn/fail summary, the failing and
warning checks, per-feature drift bars, a feature x vertical PSI table, the reference-vs-today
histograms of the most drifted features, CTR, ID churn and FM calibration over time, the suite's
results, and links to the previous and next day and the index.

    exfm report [--out DIR]     rebuild every page from the stored check results
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jinja2 import Environment
from markupsafe import Markup

from data_checks import svg
from data_checks.drift import ALL
from exfm.config import Config
from exfm.errors import ExfmError
from exfm.lake import Lake

PREFIX = "reports/drift"

_CSS = """
body{font-family:system-ui,sans-serif;margin:24px auto;max-width:1100px;color:#222;padding:0 12px}
h1{font-size:22px} h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:left} th{background:#f4f4f4}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.pass{color:#3b7d3b}.warn{color:#c98a00}.fail{color:#c0392b}
.badge{display:inline-block;padding:2px 10px;border-radius:10px;color:#fff;font-weight:600}
.badge.pass{background:#3b7d3b}.badge.warn{background:#c98a00}.badge.fail{background:#c0392b}
td.pass{background:#eef7ee}td.warn{background:#fff5dc}td.fail{background:#fdeceb}
nav a{margin-right:14px} .muted{color:#777;font-size:13px} svg{max-width:100%;height:auto}
"""

_DAY = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Data drift {{ r.ds }}</title><style>{{ css }}</style></head><body>
<nav><a href="index.html">all days</a>
{% if prev %}<a href="{{ prev }}.html">&larr; {{ prev }}</a>{% endif %}
{% if next %}<a href="{{ next }}.html">{{ next }} &rarr;</a>{% endif %}</nav>
<h1>Data drift report {{ r.ds }} <span class="badge {{ r.status }}">{{ r.status }}</span></h1>
<p class="muted">Reference window: {{ r.reference_days|join(", ") or "none (first day)" }}.
Verticals: {{ r.verticals|join(", ") }}. {{ counts.pass }} passed, {{ counts.warn }} warned,
{{ counts.fail }} failed.{% if r.fm_versions %}
FM predictions: {{ r.fm_versions.values()|join(", ") }}.{% endif %}</p>
<h2>Failing and warning checks</h2>
{% if flagged %}<table><tr><th>status</th><th>check</th><th>scope</th><th>feature</th>
<th>value</th><th>warn / fail at</th><th>detail</th></tr>
{% for x in flagged %}<tr><td class="{{ x.status }}">{{ x.status }}</td><td>{{ x.check }}</td>
<td>{{ x.scope }}</td><td>{{ x.feature or "" }}</td><td class="num">{{ fmt(x.value) }}</td>
<td class="num">{{ fmt(x.warn) }} / {{ fmt(x.fail) }}</td><td>{{ x.message }}</td></tr>{% endfor %}
</table>{% else %}<p class="pass">Nothing failed or warned.</p>{% endif %}
<h2>Drift per feature (PSI, all verticals)</h2>{{ charts.psi }}
<h2>PSI per feature and vertical</h2>
{% if matrix.rows %}<table><tr><th>feature</th>
{% for s in matrix.scopes %}<th>{{ s }}</th>{% endfor %}</tr>
{% for f, cells in matrix.rows %}<tr><td>{{ f }}</td>{% for c in cells %}
<td class="num {{ c.status if c else '' }}">{{ fmt(c.value) if c else "" }}</td>
{% endfor %}</tr>{% endfor %}
</table>{% else %}<p class="muted">No reference window yet.</p>{% endif %}
<h2>Most drifted features: reference vs today</h2>
{% for name, chart in charts.histograms %}<h3>{{ name }}</h3>{{ chart }}{% endfor %}
<h2>CTR over time</h2>{{ charts.ctr }}
<h2>ID churn over time</h2>{{ charts.churn }}
<h2>FM calibration over time (mean prediction / CTR, from the DAS)</h2>{{ charts.fm }}
<h2>Great Expectations suite</h2>
<details><summary>{{ suite|length }} expectations over {{ r.verticals|length }} partitions</summary>
<table><tr><th>status</th><th>vertical</th><th>expectation</th><th>column</th><th>detail</th></tr>
{% for x in suite %}<tr><td class="{{ x.status }}">{{ x.status }}</td><td>{{ x.scope }}</td>
<td>{{ x.check }}</td><td>{{ x.feature or "" }}</td><td>{{ x.message }}</td></tr>{% endfor %}
</table></details>
<p class="muted">Checked in {{ r.seconds }} s. Thresholds: params.yaml, section checks.</p>
</body></html>"""

_INDEX = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Data drift reports</title><style>{{ css }}</style></head><body>
<h1>Data drift reports</h1>
<p class="muted">{{ days|length }} checked days. Each row links to the day's report.</p>
<table><tr><th>day</th><th>status</th><th>fail</th><th>warn</th><th>CTR</th><th>max PSI</th>
{% for f in churn_features %}<th>churn {{ f }}</th>{% endfor %}<th>FM calibration</th></tr>
{% for d in days|reverse %}<tr><td><a href="{{ d.ds }}.html">{{ d.ds }}</a></td>
<td class="{{ d.status }}">{{ d.status }}</td><td class="num">{{ d.fail }}</td>
<td class="num">{{ d.warn }}</td><td class="num">{{ fmt(d.ctr) }}</td>
<td class="num">{{ fmt(d.max_psi) }}</td>{% for f in churn_features %}
<td class="num">{{ fmt(d.churn.get(f)) }}</td>{% endfor %}
<td class="num">{{ fmt(d.fm_calibration) }}</td></tr>{% endfor %}</table>
<h2>CTR</h2>{{ charts.ctr }}<h2>Largest PSI of the day</h2>{{ charts.psi }}
<h2>ID churn</h2>{{ charts.churn }}<h2>FM calibration</h2>{{ charts.fm }}
</body></html>"""


def _fmt(x: Any) -> str:
    if x is None:
        return ""
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


def _svg(markup: str) -> Markup:
    """Trust a chart's markup: data_checks/svg.py escapes every text it embeds."""
    return Markup(markup)  # noqa: S704


def _env() -> Environment:
    env = Environment(autoescape=True)
    env.globals.update(fmt=_fmt, css=_svg(_CSS))
    return env


def load_results(lake: Lake) -> list[dict[str, Any]]:
    """Every stored check result, oldest first, each with the DAS's scoring facts of its day
    (`das`: the FM's calibration and NE on the day's labels) when the DAS has scored it: the
    DAS runs after the check in a day's pipeline, so these are read afresh at every render."""
    keys = [k for k in lake.list_keys("checks") if k.endswith("/result.json")]
    results = sorted((json.loads(lake.get_bytes(k)) for k in keys), key=lambda r: r["ds"])
    scoring: dict[str, tuple[str, str]] = {}
    for key in lake.list_keys("das_stats"):
        parts = key.split("/")  # das_stats/ds=D/fm_version=V/scoring.json
        if len(parts) == 4 and parts[3] == "scoring.json":
            day, version = parts[1].removeprefix("ds="), parts[2]
            if version > scoring.get(day, ("", ""))[0]:
                scoring[day] = (version, key)
    for result in results:
        if result["ds"] in scoring:
            result["das"] = json.loads(lake.get_bytes(scoring[result["ds"]][1]))
    return results


def _pick(
    result: dict[str, Any], check: str, scope: str = ALL, feature: str | None = None
) -> dict[str, Any] | None:
    for x in result["results"]:
        if (
            x["check"] == check
            and x["scope"] == scope
            and (feature is None or x["feature"] == feature)
        ):
            return x
    return None


def _summary(result: dict[str, Any], churn_features: list[str]) -> dict[str, Any]:
    label = _pick(result, "label_shift") or {}
    fm = _pick(result, "fm_calibration") or {}
    psis = [x["value"] for x in result["results"] if x["check"] == "psi" and x["scope"] == ALL]
    churn = {f: (_pick(result, "churn", ALL, f) or {}).get("value") for f in churn_features}
    return {
        "ds": result["ds"],
        "status": result["status"],
        "fail": sum(x["status"] == "fail" for x in result["results"]),
        "warn": sum(x["status"] == "warn" for x in result["results"]),
        "ctr": label.get("ctr"),
        "max_psi": max(psis) if psis else None,
        "churn": churn,
        "fm_calibration": (result.get("das") or {}).get("fm", {}).get("calibration")
        or fm.get("calibration"),
    }


def _series(
    summaries: list[dict[str, Any]], churn_features: list[str], highlight: str | None
) -> dict[str, Markup]:
    days = [s["ds"] for s in summaries]
    return {
        "ctr": _svg(svg.lines("ctr", days, {"CTR": [s["ctr"] for s in summaries]}, highlight)),
        "psi": _svg(
            svg.lines("max-psi", days, {"max PSI": [s["max_psi"] for s in summaries]}, highlight)
        ),
        "churn": _svg(
            svg.lines(
                "churn",
                days,
                {f: [s["churn"].get(f) for s in summaries] for f in churn_features},
                highlight,
            )
        ),
        "fm": _svg(
            svg.lines(
                "fm-calibration",
                days,
                {"FM calibration": [s["fm_calibration"] for s in summaries]},
                highlight,
            )
        ),
    }


def render_day(
    result: dict[str, Any],
    history: list[dict[str, Any]],
    churn_features: list[str],
    psi_lines: list[tuple[float, str]],
) -> str:
    days = [h["ds"] for h in history]
    i = days.index(result["ds"])
    summaries = [_summary(h, churn_features) for h in history]
    charts = _series(summaries, churn_features, result["ds"])
    psi_all = [x for x in result["results"] if x["check"] == "psi" and x["scope"] == ALL]
    psi_all.sort(key=lambda x: -x["value"])
    charts["psi"] = _svg(
        svg.bars("psi", [(x["feature"], x["value"], x["status"]) for x in psi_all], psi_lines)
    )
    charts["histograms"] = [
        (name, _svg(svg.histogram(f"histogram-{name}", h["labels"], h["ref"], h["cur"])))
        for name, h in result.get("histograms", {}).items()
    ]
    scopes = sorted({x["scope"] for x in result["results"] if x["check"] == "psi"})
    features = sorted({x["feature"] for x in result["results"] if x["check"] == "psi"})
    cells = {(x["feature"], x["scope"]): x for x in result["results"] if x["check"] == "psi"}
    matrix = {
        "scopes": scopes,
        "rows": [(f, [cells.get((f, s)) for s in scopes]) for f in features],
    }
    flagged = sorted(
        (x for x in result["results"] if x["status"] != "pass"),
        key=lambda x: (x["status"] != "fail", x["check"]),
    )
    counts = {k: sum(x["status"] == k for x in result["results"]) for k in ("pass", "warn", "fail")}
    return (
        _env()
        .from_string(_DAY)
        .render(
            r=result,
            prev=days[i - 1] if i > 0 else None,
            next=days[i + 1] if i + 1 < len(days) else None,
            counts=counts,
            flagged=flagged,
            charts=charts,
            matrix=matrix,
            suite=[x for x in result["results"] if x["kind"] == "suite"],
        )
    )


def render_index(history: list[dict[str, Any]], churn_features: list[str]) -> str:
    summaries = [_summary(h, churn_features) for h in history]
    return (
        _env()
        .from_string(_INDEX)
        .render(
            days=summaries,
            churn_features=churn_features,
            charts=_series(summaries, churn_features, None),
        )
    )


def write_reports(cfg: Config, lake: Lake, ds: str | None = None, out: str | None = None) -> str:
    """Write the page of `ds` (every day when None), its neighbours' (their links change) and
    the index; returns the URI of the day's page (or of the index)."""
    history = load_results(lake)
    if not history:
        return ""
    churn = list(cfg.checks.id_features)
    lines = [(cfg.checks.psi.warn, "warn"), (cfg.checks.psi.fail, "fail")]
    days = [h["ds"] for h in history]
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
    for name, html in pages.items():
        lake.put_bytes(f"{PREFIX}/{name}", html.encode())
        for folder in filter(None, targets):
            Path(folder).mkdir(parents=True, exist_ok=True)
            (Path(folder) / name).write_text(html, encoding="utf-8")
    return lake.uri(f"{PREFIX}/{ds}.html" if ds else f"{PREFIX}/index.html")

"""The pipeline report, `reports/index.html`: per vertical the pooled NE of the FM, the VM and the
baseline VM with the VM's NE gain and transfer ratio, NE per day as inline SVG curves, and links to
the metrics, the plot data and the drift reports. Static and offline, like the drift report."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from jinja2 import Environment
from markupsafe import Markup

from data_checks import svg
from exfm.config import Config
from exfm.files import write_text

_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>ExFM pipeline report</title><style>
body{font-family:system-ui,sans-serif;margin:24px auto;max-width:1100px;color:#222;padding:0 12px}
h1{font-size:22px} h2{font-size:17px;margin-top:26px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px} td,th{border:1px solid #ddd;padding:3px 8px}
th{background:#f4f4f4} td.num{text-align:right;font-variant-numeric:tabular-nums}
.muted{color:#777;font-size:13px} svg{max-width:100%;height:auto}
</style></head><body>
<h1>ExFM pipeline report</h1>
<p class="muted">Data: {{ source }}, {{ days|length }} days ({{ days[0] }} .. {{ days[-1] }}).
NE is pooled over the days every model was evaluated on (progressive evaluation: each day is
predicted before the model trains on it). Lower is better; the gain is relative to the baseline
VM on the same rows; the transfer ratio is the VM's gain over the FM's.</p>
<table><tr><th>vertical</th><th>VM variant</th><th>FM NE</th><th>VM NE</th><th>baseline NE</th>
<th>VM gain %</th><th>transfer ratio</th><th>VM AUC</th><th>VM calibration</th></tr>
{% for v, m in metrics.items() %}<tr><td>{{ v }}</td><td>{{ m.variant }}</td>
<td class="num">{{ fmt(m.fm and m.fm.ne) }}</td><td class="num">{{ fmt(m.vm and m.vm.ne) }}</td>
<td class="num">{{ fmt(m.baseline and m.baseline.ne) }}</td>
<td class="num">{{ fmt(m.vm and m.vm.ne_gain_pct) }}</td>
<td class="num">{{ fmt(m.vm and m.vm.transfer_ratio) }}</td>
<td class="num">{{ fmt(m.vm and m.vm.auc) }}</td>
<td class="num">{{ fmt(m.vm and m.vm.calibration) }}</td></tr>{% endfor %}</table>
<h2>NE per day</h2>
{% for v, chart in charts %}<h3>{{ v }}</h3>{{ chart }}{% endfor %}
<h2>Files</h2><ul>
<li><a href="metrics.json">metrics.json</a> (dvc metrics show)</li>
{% for v, _ in charts %}<li><a href="plots/ne_{{ v }}.csv">plots/ne_{{ v }}.csv</a></li>{% endfor %}
<li>Data-drift reports: {% if drift_href %}<a href="{{ drift_href }}">{{ drift_href }}</a>
{% else %}{{ drift_uri }}{% endif %}</li>
<li>The ExFM results (ablation ladder, freshness gap, transfer scaling, amortization, OBD):
{% if results_href %}<a href="{{ results_href }}">{{ results_href }}</a>{% else %}not run yet,
<code>make results</code>{% endif %}</li></ul>
</body></html>"""


def _fmt(x: Any) -> str:
    if x is None or x == "":
        return ""
    return f"{x:.5g}" if isinstance(x, float) else str(x)


def _curves(path: Path) -> tuple[list[str], dict[str, list[float | None]]]:
    import csv

    with path.open() as f:
        rows = list(csv.DictReader(f))
    series = {
        k: [float(r[k]) if r.get(k) else None for r in rows] for k in ("fm", "vm", "baseline")
    }
    return [r["ds"] for r in rows], {
        k: v for k, v in series.items() if any(x is not None for x in v)
    }


def write_report(cfg: Config, days: list[str]) -> Path:
    """reports/index.html for the pipeline's `days` (the days of impressions in the lake)."""
    from exfm.lake import Lake

    reports = Path(cfg.pipeline.reports_dir)
    metrics = json.loads((reports / "metrics.json").read_text())
    charts = []
    for vertical in cfg.features.verticals:
        plot = reports / "plots" / f"ne_{vertical}.csv"
        if plot.exists():
            xs, series = _curves(plot)
            markup = svg.lines(f"ne-{vertical}", xs, series)
            charts.append((vertical, Markup(markup)))  # noqa: S704 - svg.py escapes its text
    lake = Lake.from_config(cfg.lake)
    drift_uri = lake.uri("reports/drift/index.html")
    drift_href = None if lake.is_s3 else os.path.relpath(drift_uri, reports)
    results = Path(cfg.experiment.reports_dir) / "results.html"
    results_href = os.path.relpath(results, reports) if results.exists() else None
    env = Environment(autoescape=True)
    html = env.from_string(_PAGE).render(
        results_href=results_href,
        metrics=metrics,
        charts=charts,
        fmt=_fmt,
        days=days,
        source=cfg.pipeline.source,
        drift_uri=drift_uri,
        drift_href=drift_href,
    )
    path = reports / "index.html"
    write_text(path, html)
    return path


def summary_table(cfg: Config) -> str:
    """A short terminal table of reports/metrics.json."""
    metrics = json.loads((Path(cfg.pipeline.reports_dir) / "metrics.json").read_text())
    lines = [
        f"{'vertical':9} {'variant':8} {'FM NE':>8} {'VM NE':>8} {'base NE':>8} "
        f"{'gain %':>7} {'transfer':>8}"
    ]
    for vertical, m in metrics.items():
        fm, vm, base = m.get("fm") or {}, m.get("vm") or {}, m.get("baseline") or {}

        def cell(x: Any, width: int, spec: str = ".4f") -> str:
            return f"{x:{width}{spec}}" if isinstance(x, int | float) else " " * (width - 1) + "-"

        lines.append(
            f"{vertical:9} {m['variant']:8} {cell(fm.get('ne'), 8)} "
            f"{cell(vm.get('ne'), 8)} {cell(base.get('ne'), 8)} "
            f"{cell(vm.get('ne_gain_pct'), 7, '.2f')} "
            f"{cell(vm.get('transfer_ratio'), 8, '.2f')}"
        )
    return "\n".join(lines)

"""The pipeline report, `reports/index.html`: per vertical the pooled NE of the FM, the VM and the
baseline VM with the VM's NE gain and transfer ratio, NE per day as inline SVG curves, and links to
the metrics, the plot data and the drift reports. Static and offline, like every page of
exfm/reporting (its template is templates/pipeline.html there)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from exfm.config import Config
from exfm.files import write_text
from exfm.reporting import render, svg, trusted


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
            charts.append((vertical, trusted(svg.lines(f"ne-{vertical}", xs, series))))
    lake = Lake.from_config(cfg.lake)
    drift_uri = lake.uri("reports/drift/index.html")
    drift_href = None if lake.is_s3 else os.path.relpath(drift_uri, reports)
    results = Path(cfg.experiment.reports_dir) / "results.html"
    results_href = os.path.relpath(results, reports) if results.exists() else None
    html = render(
        "pipeline.html",
        results_href=results_href,
        metrics=metrics,
        charts=charts,
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

"""The pipeline report: per vertical the pooled NE of the FM, the VM and the baseline VM with the
VM's NE gain and transfer ratio, NE per day as inline SVG curves, and links to the metrics, the
plot data and the drift reports. Static and offline, like every page of exfm/reporting (its
template is templates/pipeline.html there).

Two writers share the summary and the page: `dvc repro` writes `reports/index.html` from its
metrics and plot files (exfm/pipeline.py's evaluate and report stages); Airflow's VM DAG ends with
`publish`, which evaluates what the lake holds and writes the page and its metrics into the lake
at `reports/pipeline/` (beside the drift reports, where the ExFM console in Airflow serves them).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from exfm.config import Config
from exfm.files import write_text
from exfm.lake import IMPRESSIONS, Lake
from exfm.variants import BASELINE, FM, POOLED, vm_model_name

LAKE_PREFIX = "reports/pipeline"
ROLES = ("fm", "vm", "baseline")
Curve = tuple[list[str], dict[str, list[float | None]]]


def variants(cfg: Config, vertical: str) -> list[str]:
    """The VM variants a vertical trains: its own, plus the baseline to compare with."""
    own = cfg.vm.for_vertical(vertical).variant
    return [own, BASELINE] if cfg.pipeline.compare_baseline and own != BASELINE else [own]


def models(cfg: Config) -> list[str]:
    """The registry names the pipeline evaluates: the FM and every vertical's VM variants."""
    return sorted(
        {FM}
        | {vm_model_name(v) for vertical in cfg.features.verticals for v in variants(cfg, vertical)}
    )


def summarize(
    cfg: Config, rows: Iterable[Mapping[str, Any]]
) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    """(metrics, NE per day) from the evaluation table's rows (exfm/evaluation.py). metrics:
    per vertical and pooled, the vertical's variant and the pooled NE, AUC, calibration and rows
    of the FM, the VM and the baseline, with the VM's NE gain and transfer ratio; NE per day:
    per vertical, rows {ds, fm, vm, baseline}."""
    from exfm.metrics import transfer_ratio

    rows = list(rows)
    pooled = {(r["model"], r["vertical"]): r for r in rows if r["ds"] == "pooled"}
    metrics: dict[str, Any] = {}
    curves: dict[str, list[dict[str, Any]]] = {}
    for vertical in [*cfg.features.verticals, POOLED]:
        own = cfg.vm.variant if vertical == POOLED else cfg.vm.for_vertical(vertical).variant
        entry: dict[str, Any] = {"variant": own}
        vm, base = vm_model_name(own), vm_model_name(BASELINE)
        for role, model in zip(ROLES, (FM, vm, base), strict=True):
            r = pooled.get((model, vertical))
            if r is not None:
                entry[role] = {k: r[k] for k in ("ne", "auc", "calibration", "rows")}
        if "baseline" in entry and "vm" in entry:
            base_ne, ne = entry["baseline"]["ne"], entry["vm"]["ne"]
            entry["vm"]["ne_gain_pct"] = pooled[(vm, vertical)]["ne_gain_pct"]
            if "fm" in entry:
                entry["vm"]["transfer_ratio"] = transfer_ratio(ne, base_ne, entry["fm"]["ne"])
        metrics[vertical] = entry
        if vertical != POOLED:
            roles = {FM: "fm", vm: "vm", base: "baseline"}  # the baseline VM: "baseline"
            by_day: dict[str, dict[str, Any]] = {}
            for r in rows:
                if r["vertical"] == vertical and r["ds"] != "pooled" and r["model"] in roles:
                    by_day.setdefault(r["ds"], {})[roles[r["model"]]] = r["ne"]
            curves[vertical] = [{"ds": ds, **by_day[ds]} for ds in sorted(by_day)]
    return metrics, curves


def _curve(rows: list[dict[str, Any]]) -> Curve:
    series = {k: [r.get(k) for r in rows] for k in ROLES}
    return [r["ds"] for r in rows], {
        k: v for k, v in series.items() if any(x is not None for x in v)
    }


def _csv_curve(path: Path) -> Curve:
    import csv

    with path.open() as f:
        rows = [
            {k: (float(v) if v and k != "ds" else v or None) for k, v in r.items()}
            for r in csv.DictReader(f)
        ]
    return _curve(rows)


def _page(
    cfg: Config,
    metrics: dict[str, Any],
    curves: dict[str, Curve],
    days: list[str],
    drift_uri: str,
    drift_href: str | None,
    results_href: str | None,
    plot_files: bool,
) -> str:
    from exfm.reporting import render, svg, trusted  # here: the other DVC stages do not load it

    charts = [
        (v, trusted(svg.lines(f"ne-{v}", *curves[v])))
        for v in cfg.features.verticals
        if v in curves
    ]
    return render(
        "pipeline.html",
        results_href=results_href,
        metrics=metrics,
        charts=charts,
        plot_files=plot_files,
        days=days,
        source=cfg.pipeline.source,
        drift_uri=drift_uri,
        drift_href=drift_href,
    )


def write_report(cfg: Config, days: list[str]) -> Path:
    """reports/index.html for the pipeline's `days` (the days of impressions in the lake), from
    the evaluate stage's reports/metrics.json and reports/plots/ne_<vertical>.csv."""
    reports = Path(cfg.pipeline.reports_dir)
    metrics = json.loads((reports / "metrics.json").read_text())
    curves = {}
    for vertical in cfg.features.verticals:
        plot = reports / "plots" / f"ne_{vertical}.csv"
        if plot.exists():
            curves[vertical] = _csv_curve(plot)
    lake = Lake.from_config(cfg.lake)
    drift_uri = lake.uri("reports/drift/index.html")
    drift_href = None if lake.is_s3 else os.path.relpath(drift_uri, reports)
    results = Path(cfg.experiment.reports_dir) / "results.html"
    results_href = os.path.relpath(results, reports) if results.exists() else None
    html = _page(cfg, metrics, curves, days, drift_uri, drift_href, results_href, True)
    path = reports / "index.html"
    write_text(path, html)
    return path


def publish(cfg: Config, lake: Lake) -> dict[str, Any]:
    """Evaluate every model of the pipeline on what the lake holds and write the page and its
    metrics into the lake (`reports/pipeline/index.html`, `metrics.json`); returns their URIs,
    the days and the metrics. The page links to the drift reports beside it."""
    from exfm.evaluation import evaluate

    days = sorted({p["ds"] for p in lake.partitions(IMPRESSIONS)})
    rows = evaluate(lake, None, None, models(cfg)).to_pylist()
    metrics, per_day = summarize(cfg, rows)
    curves = {v: _curve(r) for v, r in per_day.items() if r}
    # served together by the ExFM console in Airflow: the drift reports beside the page, the
    # results page (a local file of `make results`) at the console's /exfm/results/
    drift = "../drift/index.html"
    html = _page(cfg, metrics, curves, days, drift, drift, "/exfm/results/results.html", False)
    lake.put_bytes(
        f"{LAKE_PREFIX}/metrics.json", json.dumps(metrics, indent=2, sort_keys=True).encode()
    )
    lake.put_bytes(f"{LAKE_PREFIX}/index.html", html.encode())
    return {
        "report": lake.uri(f"{LAKE_PREFIX}/index.html"),
        "metrics_uri": lake.uri(f"{LAKE_PREFIX}/metrics.json"),
        "days": days,
        "metrics": metrics,
    }


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

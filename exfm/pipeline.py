"""The local pipeline that `dvc repro` runs (dvc.yaml), and `make run` with it: one function per DVC
stage, each looping over the days in streaming order through the same `exfm.stages` functions that
the Airflow tasks call.

    land -> checks -> fm -> das -> vm@<vertical> (one stage per vertical) -> evaluate -> report

The lake (local or S3) is external data to DVC: DVC would copy every partition and snapshot into
its cache, and cannot reach an S3 lake through our endpoint settings. Instead each stage writes a
small JSON record of what it wrote into `pipeline.state_dir` (partitions with row and click
counts, snapshot checksums, DAS versions...): that record is the stage's DVC output, so a
downstream stage re-runs exactly when the content it reads changed, and a no-op repro touches
nothing. Deleting lake data behind DVC's back is not seen: `dvc repro -f` (or `make clean`).

`evaluate` writes `reports/metrics.json` (dvc metrics: NE, AUC, calibration per vertical for the FM,
the VM and the baseline VM, with the VM's relative NE gain and transfer ratio) and
`reports/plots/ne_<vertical>.csv` (dvc plots: NE per day); `report` writes `reports/index.html`,
an offline page with the metrics, the NE curves as inline SVG and links to the drift reports.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

from exfm import stages
from exfm.config import Config
from exfm.errors import ExfmError
from exfm.lake import DAS, IMPRESSIONS, Lake

log = logging.getLogger(__name__)
STAGES = ("land", "checks", "fm", "das", "vm", "evaluate", "report")


def days(cfg: Config) -> list[str]:
    """The days of impressions in the lake, in streaming order."""
    found = sorted({p["ds"] for p in Lake.from_config(cfg.lake).partitions(IMPRESSIONS)})
    if not found:
        raise ExfmError(f"no impressions in {cfg.lake.root}: run the land stage first")
    return found


def _record(cfg: Config, name: str, data: dict[str, Any]) -> Path:
    path = Path(cfg.pipeline.state_dir) / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True, default=str))
    tmp.replace(path)
    return path


def land(cfg: Config) -> Path:
    """Simulate the configured days (pipeline.source world) or ingest the sources."""
    lake = Lake.from_config(cfg.lake)
    if cfg.pipeline.source == "world":
        from exfm.data.world import generate

        generate(cfg, lake)
    else:
        from exfm.data.ingest import ingest

        ingest(cfg, lake)
    from exfm.data.impressions import summarize

    summary = summarize(lake, distinct=()).to_pylist()
    return _record(
        cfg,
        "land",
        {
            "source": cfg.pipeline.source,
            "partitions": [
                {k: r[k] for k in ("ds", "vertical", "rows", "clicks")} for r in summary
            ],
        },
    )


def checks(cfg: Config) -> Path:
    """The data checks of every day; a failing day stops the pipeline (non-zero exit)."""
    out = {ds: stages.check(cfg, ds) for ds in days(cfg)}
    return _record(
        cfg, "checks", {ds: {"status": r["status"], "warn": r["warn"]} for ds, r in out.items()}
    )


def fm(cfg: Config) -> Path:
    """Train the FM day after day; record each snapshot's checksum and publish decision."""
    from exfm.registry import Registry

    registry = Registry(Lake.from_config(cfg.lake))
    record = {}
    for ds in days(cfg):
        result = stages.train_fm(cfg, ds)
        meta = registry.meta("fm", None, ds)
        record[ds] = {
            "sha256": meta.sha256,
            "published": result["published"],
            "eval_ne": result["eval_ne"],
        }
    return _record(cfg, "fm", record)


def das(cfg: Config) -> Path:
    """Score every day that an FM can score (the first days cannot: no FM is live yet)."""
    from exfm.das import NoLiveFM

    record: dict[str, Any] = {}
    for ds in days(cfg):
        try:
            result = stages.backfill_das(cfg, ds)
        except NoLiveFM as e:
            log.info("das %s skipped: %s", ds, e)
            record[ds] = {"skipped": str(e)}
            continue
        record[ds] = {"fm_version": result["fm_version"]}
    lake = Lake.from_config(cfg.lake)
    for part in lake.partitions(DAS):
        record.setdefault(part["ds"], {}).setdefault("versions", []).append(part["fm_version"])
    return _record(cfg, "das", record)


def variants(cfg: Config, vertical: str) -> list[str]:
    """The VM variants a vertical trains: its own, plus the baseline to compare with."""
    own = cfg.vm.for_vertical(vertical).variant
    return [own, "baseline"] if cfg.pipeline.compare_baseline and own != "baseline" else [own]


def vm(cfg: Config, vertical: str) -> Path:
    """Train the vertical's VM variants on every day the DAS scored (all variants alike)."""
    from exfm.registry import Registry

    lake = Lake.from_config(cfg.lake)
    registry = Registry(lake)
    scored = sorted({p["ds"] for p in lake.partitions(DAS)})
    record: dict[str, Any] = {}
    for variant in variants(cfg, vertical):
        record[variant] = {}
        for ds in scored:
            result = stages.train_vm(cfg, ds, vertical, variant)
            record[variant][ds] = {
                "sha256": registry.meta(result["model"], vertical, ds).sha256,
                "published": result["published"],
            }
    return _record(cfg, f"vm/{vertical}", record)


def evaluate(cfg: Config) -> Path:
    """reports/metrics.json and reports/plots/ne_<vertical>.csv (see the module docstring)."""
    from exfm.evaluation import evaluate as table_of
    from exfm.metrics import transfer_ratio

    lake = Lake.from_config(cfg.lake)
    models = {"fm"} | {
        f"vm_{v}" for vertical in cfg.features.verticals for v in variants(cfg, vertical)
    }
    rows = table_of(lake, models=sorted(models)).to_pylist()
    pooled = {(r["model"], r["vertical"]): r for r in rows if r["ds"] == "pooled"}
    metrics: dict[str, Any] = {}
    reports = Path(cfg.pipeline.reports_dir)
    (reports / "plots").mkdir(parents=True, exist_ok=True)
    for vertical in [*cfg.features.verticals, "all"]:
        own = cfg.vm.variant if vertical == "all" else cfg.vm.for_vertical(vertical).variant
        entry: dict[str, Any] = {"variant": own}
        for role, model in (("fm", "fm"), ("vm", f"vm_{own}"), ("baseline", "vm_baseline")):
            r = pooled.get((model, vertical))
            if r is not None:
                entry[role] = {k: r[k] for k in ("ne", "auc", "calibration", "rows")}
        if "baseline" in entry and "vm" in entry:
            base, ne = entry["baseline"]["ne"], entry["vm"]["ne"]
            entry["vm"]["ne_gain_pct"] = pooled[(f"vm_{own}", vertical)]["ne_gain_pct"]
            if "fm" in entry:
                entry["vm"]["transfer_ratio"] = transfer_ratio(ne, base, entry["fm"]["ne"])
        metrics[vertical] = entry
        if vertical != "all":
            _plot(reports / "plots" / f"ne_{vertical}.csv", rows, vertical, own)
    path = reports / "metrics.json"
    path.write_text(json.dumps(metrics, indent=1, sort_keys=True))
    return path


def _plot(path: Path, rows: list[dict[str, Any]], vertical: str, variant: str) -> None:
    """NE per day of the FM, the vertical's VM and the baseline (columns ds, fm, vm, baseline)."""
    roles = {"fm": "fm", f"vm_{variant}": "vm", "vm_baseline": "baseline"}
    by_day: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r["vertical"] == vertical and r["ds"] != "pooled" and r["model"] in roles:
            by_day.setdefault(r["ds"], {})[roles[r["model"]]] = r["ne"]
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["ds", "fm", "vm", "baseline"])
        writer.writeheader()
        for ds in sorted(by_day):
            writer.writerow({"ds": ds, **by_day[ds]})


def report(cfg: Config) -> Path:
    """reports/index.html: the pipeline's results, offline (see exfm/pipeline_report.py)."""
    from exfm.pipeline_report import write_report

    return write_report(cfg)

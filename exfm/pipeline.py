"""The local pipeline that `dvc repro` runs (dvc.yaml), and `make run` with it: one function per DVC
stage, each looping over the days in streaming order through the same `exfm.stages` functions that
the Airflow tasks call.

    land -> checks -> fm -> das -> vm@<vertical> (one stage per vertical) -> evaluate -> report

The lake (local or S3) is external data to DVC: DVC would copy every partition and snapshot into
its cache, and cannot reach an S3 lake through our endpoint settings. Instead each stage writes a
small JSON record into `pipeline.state_dir`, the stage's DVC output: the content ids of what it
wrote and of what it read (exfm/lineage.py: partition write ids, snapshot sha256s), and nothing
that changes when the content does not (no timings, no paths). So a downstream stage re-runs
exactly when the content it reads changed: a retrained FM re-scores the DAS, whose new partitions
retrain the VMs; a FM retrained to the same bytes changes nothing downstream; a no-op repro
touches nothing. Changing the lake behind DVC's back (`exfm world generate`, a backfill) is not
seen by DVC: `exfm lineage --stale` shows what went stale, `dvc repro -f` (or `make clean`)
rebuilds.

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
from exfm.files import write_json
from exfm.lake import DAS, IMPRESSIONS, Lake
from exfm.lineage import impressions_name, partition_inputs
from exfm.pipeline_report import models, summarize, variants
from exfm.variants import vm_model_name

log = logging.getLogger(__name__)
STAGES = ("land", "checks", "fm", "das", "vm", "evaluate", "report")


def days(cfg: Config) -> list[str]:
    """The days of impressions in the lake, in streaming order."""
    found = sorted({p["ds"] for p in Lake.from_config(cfg.lake).partitions(IMPRESSIONS)})
    if not found:
        raise ExfmError(f"no impressions in {cfg.lake.root}: run the land stage first")
    return found


def _record(cfg: Config, name: str, data: dict[str, Any]) -> Path:
    return write_json(Path(cfg.pipeline.state_dir) / f"{name}.json", data, sort_keys=True)


def land(cfg: Config) -> Path:
    """Simulate the configured days (pipeline.source world) or ingest the sources. Landing the
    same content again keeps every partition's content id."""
    lake = Lake.from_config(cfg.lake)
    if cfg.pipeline.source == "world":
        stages.land_world(cfg)
    else:
        stages.ingest(cfg)
    from exfm.data.impressions import summarize

    summary = summarize(lake, distinct=()).to_pylist()
    content = lake.content_ids(IMPRESSIONS)
    return _record(
        cfg,
        "land",
        {
            "source": cfg.pipeline.source,
            "partitions": [
                {
                    **{k: r[k] for k in ("ds", "vertical", "rows", "clicks")},
                    "content_id": content[impressions_name(r["ds"], r["vertical"])],
                }
                for r in summary
            ],
        },
    )


def checks(cfg: Config) -> Path:
    """The data checks of every day; a failing day stops the pipeline (non-zero exit). The
    record holds each verdict and the content ids it was made on."""
    from data_checks.gate import load_result

    lake = Lake.from_config(cfg.lake)
    record = {}
    with stages.Warm() as warm:  # the drift pages once, at the end
        for ds in days(cfg):
            result = stages.check(cfg, ds, warm)
            stored = load_result(lake, ds)
            # the verdict and what it was made on; not the warnings, which include the advisory
            # FM-score checks that depend on whether the day was scored yet
            inputs = (stored.inputs if stored else None) or {}
            record[ds] = {"status": result["status"], "inputs": inputs}
    return _record(cfg, "checks", record)


def fm(cfg: Config) -> Path:
    """Train the FM day after day; record each snapshot's content id, publish decision and what
    it was trained from."""
    record = {}
    warm = stages.Warm()  # one process, the model in memory across the days
    for ds in days(cfg):
        result = stages.train_fm(cfg, ds, warm=warm)
        assert result is not None
        record[ds] = {
            "sha256": result["sha256"],
            "published": result["published"],
            "eval_ne": result["eval_ne"],
            "inputs": result["inputs"],
        }
    return _record(cfg, "fm", record)


def das(cfg: Config) -> Path:
    """Score every day that an FM can score (the first days cannot: no FM is live yet); days
    whose stored predictions are current are skipped. Predictions of a day that another FM
    version made and that went stale (their FM snapshot or impressions changed) are removed:
    nothing can use them any more."""
    from exfm.das import NoLiveFM, prune_stale

    lake = Lake.from_config(cfg.lake)
    record: dict[str, Any] = {}
    with stages.Warm() as warm:
        for ds in days(cfg):
            try:
                result = stages.backfill_das(cfg, ds, warm=warm)
            except NoLiveFM as e:
                log.info("das %s skipped: %s", ds, e)
                record[ds] = {"skipped": str(e)}
                continue
            values = {"fm_version": result["fm_version"], "ds": ds}
            record[ds] = {
                "fm_version": result["fm_version"],
                "content_id": result["content_id"],
                "inputs": partition_inputs(lake, DAS, values),
                "removed_stale": prune_stale(cfg, lake, ds, keep=result["fm_version"]),
            }
    return _record(cfg, "das", record)


def vm(cfg: Config, vertical: str) -> Path:
    """Train the vertical's VM variants on every day the das stage scored (its record, a DVC
    dependency of this stage, names each day's FM version), all variants alike."""
    cfg.features.vertical(vertical)
    scored = _read_record(cfg, "das")
    days_ = sorted(d for d, r in scored.items() if "fm_version" in r)
    record: dict[str, Any] = {}
    for variant in variants(cfg, vertical):
        record[variant] = {}
        _forget_other_days(cfg, vm_model_name(variant), vertical, days_)
        warm = stages.Warm()
        for ds in days_:
            result = stages.train_vm(
                cfg, ds, vertical, variant, scored[ds]["fm_version"], warm=warm
            )
            record[variant][ds] = {
                "sha256": result["sha256"],
                "published": result["published"],
                "inputs": result["inputs"],
            }
    return _record(cfg, f"vm/{vertical}", record)


def _forget_other_days(cfg: Config, model: str, vertical: str, keep: list[str]) -> None:
    """Remove the model's snapshots and evaluations of days this run does not train (left by a
    run with other settings, e.g. another das.fm_delay_days): the chain it trains must start
    where a fresh run's would, not from a parent another configuration made."""
    from exfm.lake import EVALS
    from exfm.registry import Registry

    lake = Lake.from_config(cfg.lake)
    registry = Registry(lake)
    for meta in registry.history(model, vertical):
        if meta.ds not in keep:
            log.info(
                "vm %s/%s: removing %s, a day this run does not train", model, vertical, meta.label
            )
            registry.delete(model, vertical, meta.ds)
    for values in lake.partitions(EVALS, model=[model], vertical=[vertical]):
        if values["ds"] not in keep:
            lake.delete_partition(EVALS, values)


def _read_record(cfg: Config, name: str) -> dict[str, Any]:
    path = Path(cfg.pipeline.state_dir) / f"{name}.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ExfmError(f"{path} is missing: run the {name} stage first (dvc repro)") from None
    except ValueError as e:
        raise ExfmError(f"{path} is not valid JSON ({e}): run `dvc repro -f {name}`") from e


def evaluate(cfg: Config) -> Path:
    """reports/metrics.json and reports/plots/ne_<vertical>.csv (see the module docstring)."""
    read: dict[str, dict[str, Any]] = {}
    rows = stages.evaluate(cfg, models=models(cfg), read=read).to_pylist()
    _record(cfg, "evaluate", {"evals": read})
    metrics, curves = summarize(cfg, rows)
    reports = Path(cfg.pipeline.reports_dir)
    (reports / "plots").mkdir(parents=True, exist_ok=True)
    for vertical, by_day in curves.items():
        with (reports / "plots" / f"ne_{vertical}.csv").open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["ds", "fm", "vm", "baseline"])
            writer.writeheader()
            writer.writerows(by_day)
    path = reports / "metrics.json"
    write_json(path, metrics, sort_keys=True)
    return path


def report(cfg: Config) -> Path:
    """reports/index.html: the pipeline's results, offline (see exfm/pipeline_report.py)."""
    from exfm.pipeline_report import write_report

    return write_report(cfg, days(cfg))

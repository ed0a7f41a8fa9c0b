"""One function per stage and day: the only API that the Airflow DAGs, `dvc repro` and the CLI
call. Each takes the config, does its work through the library, and returns a small dict (paths,
counts, figures) fit for logs and XCom; data never travels through the return value.
"""

from __future__ import annotations

from typing import Any

from exfm.config import Config
from exfm.data.schema import FeatureSpec
from exfm.lake import IMPRESSIONS, Lake


def land(cfg: Config, ds: str) -> dict[str, Any]:
    """Demo mode: simulate day ds into the lake (the days before it are replayed, not written)."""
    from exfm.data.world import generate

    lake = Lake.from_config(cfg.lake)
    stats = generate(cfg, lake, days=1, start_ds=ds)[0]
    return {"ds": ds, "rows": sum(stats.rows.values()), "verticals": sorted(stats.rows)}


def landed(cfg: Config, ds: str) -> bool:
    """Sensor mode: have day ds's impressions arrived (a partition for every vertical)?"""
    lake = Lake.from_config(cfg.lake)
    have = {p["vertical"] for p in lake.partitions(IMPRESSIONS, ds=[ds])}
    return set(cfg.features.verticals) <= have


def report(cfg: Config, ds: str) -> dict[str, Any]:
    """Rebuild the drift report of ds (and the index); returns where it is."""
    from data_checks.report import write_reports

    uri = write_reports(cfg, Lake.from_config(cfg.lake), ds)
    return {"ds": ds, "report": uri, "index": uri.rsplit("/", 1)[0] + "/index.html"}


def check(cfg: Config, ds: str) -> dict[str, Any]:
    """Run the data checks of ds (suite + drift), store them and the drift report. Raises
    CheckFailed, after storing everything, when a check failed: the day must not train."""
    from data_checks.gate import CheckFailed, check_day, failure_message

    result = check_day(cfg, Lake.from_config(cfg.lake), ds)
    if result["status"] == "fail":
        raise CheckFailed(failure_message(result))
    return {
        "ds": ds,
        "status": result["status"],
        "report": result["report"],
        "warn": sum(r["status"] == "warn" for r in result["results"]),
        "reference_days": len(result["reference_days"]),
    }


def _gated_lake(cfg: Config, ds: str) -> Lake:
    """The lake, once ds's stored data check (if any) is known not to have failed."""
    from data_checks.gate import require_pass

    lake = Lake.from_config(cfg.lake)
    require_pass(lake, ds)
    return lake


def train_fm(cfg: Config, ds: str) -> dict[str, Any]:
    """Evaluate the latest FM on ds, train it one pass on every vertical of ds, snapshot it."""
    from exfm.trainee import build_trainee
    from exfm.training import train_day

    lake = _gated_lake(cfg, ds)
    spec = FeatureSpec.from_config(cfg.features)
    table = lake.read(IMPRESSIONS, ds=[ds])
    return train_day(cfg, lake, build_trainee(cfg, spec, "fm"), table, ds).summary()


def train_vm(cfg: Config, ds: str, vertical: str, variant: str | None = None) -> dict[str, Any]:
    """Train the VM of one vertical on ds (variant: vm.variant by default). Variants other than
    baseline read the FM's predictions for ds from the DAS store."""
    from exfm.trainee import build_trainee
    from exfm.training import train_day

    lake = _gated_lake(cfg, ds)
    spec = FeatureSpec.from_config(cfg.features)
    trainee = build_trainee(cfg, spec, "vm", vertical, variant)
    if trainee.needs_fm:
        from exfm.das import training_rows

        table, report = training_rows(cfg, lake, ds, vertical, consumer=trainee.name)
    else:
        table = lake.read(IMPRESSIONS, ds=[ds], vertical=[vertical])
        report = None
    result = train_day(cfg, lake, trainee, table, ds).summary()
    if report is not None:
        result.update(fm_version=report["fm_version"], fm_coverage=report["coverage"])
    return result


def backfill_das(
    cfg: Config, ds: str, fm_version: str | None = None, force: bool = False
) -> dict[str, Any]:
    """Score day ds with the FM that was live for it and store the predictions (DAS)."""
    from data_checks.gate import load_result
    from data_checks.report import write_reports
    from exfm.das import backfill_day

    lake = _gated_lake(cfg, ds)
    result = backfill_day(cfg, lake, ds, fm_version, force)
    if load_result(lake, ds) is not None:  # the day's drift page now shows the FM's calibration
        result["report"] = write_reports(cfg, lake, ds)
    return result

"""One function per stage and day: the only API that the Airflow DAGs, `dvc repro` and the CLI
call. Each takes the config, does its work through the library, and returns a small dict (paths,
counts, figures) fit for logs and XCom; data never travels through the return value.
"""

from __future__ import annotations

from typing import Any

from exfm.config import Config
from exfm.data.schema import FeatureSpec
from exfm.lake import IMPRESSIONS, Lake


def train_fm(cfg: Config, ds: str) -> dict[str, Any]:
    """Evaluate the latest FM on ds, train it one pass on every vertical of ds, snapshot it."""
    from exfm.trainee import build_trainee
    from exfm.training import train_day

    lake = Lake.from_config(cfg.lake)
    spec = FeatureSpec.from_config(cfg.features)
    table = lake.read(IMPRESSIONS, ds=[ds])
    return train_day(cfg, lake, build_trainee(cfg, spec, "fm"), table, ds).summary()


def train_vm(cfg: Config, ds: str, vertical: str, variant: str | None = None) -> dict[str, Any]:
    """Train the VM of one vertical on ds (variant: vm.variant by default). Variants other than
    baseline read the FM's predictions for ds from the DAS store."""
    from exfm.trainee import build_trainee
    from exfm.training import train_day

    lake = Lake.from_config(cfg.lake)
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
    from exfm.das import backfill_day

    return backfill_day(cfg, Lake.from_config(cfg.lake), ds, fm_version, force)

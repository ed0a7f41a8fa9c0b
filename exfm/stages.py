"""One function per stage and day: the only door through which the Airflow DAGs, `dvc repro`, the
CLI, distributed training and the experiments reach the lake. Each takes the config, does its work
through the library, and returns a small dict (paths, counts, content ids, figures) fit for logs
and XCom; data never travels through the return value.

Every stage that trains on or scores a day passes the gate first (`data_checks.gate.
require_pass`: the day's check must be current and must not have failed), and reads its inputs
with their content ids, which what it writes records (exfm/lineage.py). So the gate and the
lineage checks hold on every path.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from exfm.config import Config
from exfm.data.schema import FeatureSpec
from exfm.lake import IMPRESSIONS, Lake

if TYPE_CHECKING:
    import pyarrow as pa

    from exfm.ranks import Dist
    from exfm.trainee import Trainee

log = logging.getLogger(__name__)


@dataclass
class Warm:
    """What the days of a range keep in memory, in one process: each model's trainee (its
    weights, optimizer and compiled state), and the FM the DAS scored with last. A trainee goes
    on from memory only when it is exactly the snapshot the next day would load (the same
    sha256, exfm/training.py); otherwise the day loads its parent from the registry as a lone
    day would, so a range gives the bytes of the same days run one process each. One per range
    and process; pass the same one to every day of the range, in order."""

    trainees: dict[tuple[str | None, ...], Trainee] = field(default_factory=dict)
    scorer: dict[str, Any] = field(default_factory=dict)  # the DAS's FM (exfm/das.py)
    reports: set[str] = field(default_factory=set)  # days whose drift pages are due
    cfg: Config | None = None

    def trainee(self, key: tuple[str | None, ...], build: Any) -> Trainee:
        if key not in self.trainees:
            self.trainees[key] = build()
        return self.trainees[key]

    def report_later(self, cfg: Config, ds: str) -> None:
        self.cfg = cfg
        self.reports.add(ds)

    def __enter__(self) -> Warm:
        return self

    def __exit__(self, *exc: object) -> None:
        self.flush()

    def flush(self) -> None:
        """Write the drift pages the range's days made due (each day's check and its FM
        calibration once scored), reading the stored results once: one page per day would
        read every day's result each time, quadratic in a range's days. Leaving the `with`
        block does it, on success or error alike (the days done keep their pages)."""
        if self.reports and self.cfg is not None:
            from data_checks.report import write_reports

            days, self.reports = sorted(self.reports), set()
            write_reports(self.cfg, Lake.from_config(self.cfg.lake), days=days)


def present_days(
    cfg: Config, days: Sequence[str], vertical: str | None = None
) -> tuple[list[str], list[str]]:
    """(days with impressions, days without) among `days` (of the vertical, if given): a range
    runs the days that have partitions; real data has gaps and weekly partitions."""
    lake = Lake.from_config(cfg.lake)
    filters: dict[str, Any] = {"ds": list(days)}
    if vertical is not None:
        filters["vertical"] = [vertical]
    have = {p["ds"] for p in lake.partitions(IMPRESSIONS, **filters)}
    return [d for d in days if d in have], [d for d in days if d not in have]


def land(cfg: Config, ds: str) -> dict[str, Any]:
    """Demo mode: simulate day ds into the lake (the days before it are replayed, not written).
    Landing the same content again keeps the partitions and their content ids."""
    return land_world(cfg, ds, 1)[0]


def land_world(cfg: Config, start_ds: str | None = None, days: int | None = None) -> list[dict]:
    """Simulate `days` days (default world.days) from `start_ds` (default world.start_ds)."""
    from exfm.data.world import generate

    lake = Lake.from_config(cfg.lake)
    out = []
    for stats in generate(cfg, lake, days=days, start_ds=start_ds):
        ids_ = lake.content_ids(IMPRESSIONS, ds=[stats.ds])
        out.append(
            {
                "ds": stats.ds,
                "rows": sum(stats.rows.values()),
                "verticals": sorted(stats.rows),
                "content_ids": ids_,
            }
        )
    return out


def ingest(cfg: Config) -> dict[str, Any]:
    """Convert the ingest.sources files into the lake (bring your own data)."""
    from exfm.data.ingest import ingest as run

    lake = Lake.from_config(cfg.lake)
    written = run(cfg, lake)
    return {
        "rows": sum(w.rows for w in written),
        "partitions": len(written),
        "content_ids": {w.name: w.write_id for w in written},
        "where": lake.uri("impressions"),
    }


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


def check(cfg: Config, ds: str, warm: Warm | None = None) -> dict[str, Any]:
    """Run the data checks of ds (suite + drift), store them and the drift report (with `warm`,
    a range's: the pages when the range ends, `Warm.flush`). Raises CheckFailed, after storing
    everything, when a check failed: the day must not train."""
    from data_checks.gate import CheckFailed, check_day
    from exfm.errors import ExfmError

    lake = Lake.from_config(cfg.lake)
    if not lake.partitions(IMPRESSIONS, ds=[ds]):
        raise ExfmError(
            f"no impressions for ds={ds} in {lake.uri(IMPRESSIONS.name)}: nothing to check "
            "(nothing was stored)"
        )
    result = check_day(cfg, lake, ds, report=warm is None)
    if warm is not None:
        warm.report_later(cfg, ds)
    if result.status == "fail":
        raise CheckFailed(result.failure_message())
    return {  # for Airflow's XCom and the DVC record
        "ds": ds,
        "status": result.status,
        "report": result.report,
        "warn": result.counts()["warn"],
        "reference_days": len(result.reference_days),
        "impressions": {k: v for k, v in (result.inputs or {}).items() if f"/ds={ds}/" in k},
    }


def _expect(lake: Lake, expected: Mapping[str, str] | None, what: str) -> None:
    """Refuse to work from a message about content the lake no longer holds (an Airflow asset
    event names the content ids it announces): the newer content has its own event."""
    if not expected:
        return
    from exfm.lineage import StaleError, changes, describe_changes

    moved = changes(lake, expected)
    if moved:
        raise StaleError(
            f"{what} is about other content than the lake holds now: {describe_changes(moved)}"
        )


def _gated_lake(cfg: Config, ds: str) -> Lake:
    """The lake, once ds is known to have a current check that did not fail (the gate)."""
    from data_checks.gate import require_pass

    lake = Lake.from_config(cfg.lake)
    require_pass(cfg, lake, ds)
    return lake


def train_fm(
    cfg: Config, ds: str, dist: Dist | None = None, warm: Warm | None = None
) -> dict[str, Any] | None:
    """Evaluate the latest FM on ds, train it one pass on every vertical of ds, snapshot it.
    With `dist` (exfm/distributed.py) this process trains its shard; ranks other than 0 return
    None. `warm`: the range's models in memory (`Warm`)."""
    from exfm.trainee import build_trainee
    from exfm.training import train_day

    lake = _gated_lake(cfg, ds)
    spec = FeatureSpec.from_config(cfg.features)
    warm = warm or Warm()
    trainee = warm.trainee(("fm",), lambda: build_trainee(cfg, spec, "fm"))
    for day in _replay(lake, trainee, ds, dist):
        _gated_lake(cfg, day)
        table, inputs = lake.read_with_ids(IMPRESSIONS, ds=[day])
        train_day(cfg, lake, trainee, table, day, dist, inputs)
    table, inputs = lake.read_with_ids(IMPRESSIONS, ds=[ds])
    result = train_day(cfg, lake, trainee, table, ds, dist, inputs)
    return None if result is None else result.summary()


def _replay(lake: Lake, trainee: Trainee, ds: str, dist: Dist | None = None) -> list[str]:
    """The days to train again before ds because ds's parent snapshot has no optimizer state any
    more (exfm/registry.py keeps it at checkpoints): the days after the newest snapshot that has
    it, up to the parent. Trained again from the same inputs they give the same bytes (so
    nothing made from them goes stale); from changed inputs they are retrained, as they must."""
    from exfm.registry import Registry

    before = [m for m in Registry(lake).history(trainee.name, trainee.vertical) if m.ds < ds]
    if not before or before[-1].resumable or trainee.snapshot_sha256 == before[-1].sha256:
        return []
    if dist is not None and dist.distributed:
        return []  # every rank would have to agree while rank 0 rewrites: the load refuses
    resumable = [m.ds for m in before if m.resumable]
    days = [m.ds for m in before if not resumable or m.ds > resumable[-1]]
    log.info(
        "%s@%s: the parent %s has no optimizer state; training again from %s: %s",
        trainee.label,
        ds,
        before[-1].ds,
        f"the checkpoint {resumable[-1]}" if resumable else "the first day",
        ", ".join(days),
    )
    return days


def train_vm(
    cfg: Config,
    ds: str,
    vertical: str,
    variant: str | None = None,
    fm_version: str | None = None,
    model: str | None = None,
    expect: Mapping[str, str] | None = None,
    warm: Warm | None = None,
) -> dict[str, Any]:
    """Train the VM of one vertical on ds (variant: vm.variant by default). Variants other than
    baseline distill from the FM's current predictions of ds in the DAS store (`fm_version`: a
    chosen version, which must be current). `model` stores it under another registry name
    (experiments keep grid points side by side). `expect` (name -> content id, from an asset
    event) must still be the lake's content, or StaleError. `warm`: the range's models in
    memory (`Warm`)."""
    from exfm import ids
    from exfm.trainee import build_trainee

    cfg.features.vertical(vertical)
    lake = _gated_lake(cfg, ds)
    _expect(lake, expect, f"the request to train {vertical}@{ds}")
    spec = FeatureSpec.from_config(cfg.features)

    def build() -> Trainee:
        trainee = build_trainee(cfg, spec, "vm", vertical, variant)
        if model is not None:
            trainee.name = ids.version(model)
        return trainee

    warm = warm or Warm()
    trainee = warm.trainee(("vm", vertical, variant or "", model), build)
    for day in _replay(lake, trainee, ds):
        _gated_lake(cfg, day)
        _vm_day(cfg, lake, trainee, day, vertical, None)
    return _vm_day(cfg, lake, trainee, ds, vertical, fm_version)


def _vm_day(
    cfg: Config, lake: Lake, trainee: Trainee, ds: str, vertical: str, fm_version: str | None
) -> dict[str, Any]:
    from exfm.training import train_day

    if trainee.needs_fm:
        from exfm.das import training_rows

        table, joined = training_rows(cfg, lake, ds, vertical, fm_version, consumer=trainee.name)
        inputs = joined["inputs"]
    else:
        table, inputs = lake.read_with_ids(IMPRESSIONS, ds=[ds], vertical=[vertical])
        joined = None
    day = train_day(cfg, lake, trainee, table, ds, inputs=inputs)
    assert day is not None
    result = day.summary()
    if joined is not None:
        result.update(fm_version=joined["fm_version"], fm_coverage=joined["coverage"])
    return result


def backfill_das(
    cfg: Config,
    ds: str,
    fm_version: str | None = None,
    force: bool = False,
    expect: Mapping[str, str] | None = None,
    warm: Warm | None = None,
) -> dict[str, Any]:
    """Score day ds with the FM that was live for it and store the predictions (DAS). A day
    whose stored predictions are current is skipped (unless `force`). `expect` (name -> content
    id, from an asset event) must still be the lake's content, or StaleError. `warm`: keeps the
    FM in memory for the next day of a range that it scores too (`Warm`)."""
    from data_checks.gate import load_result
    from data_checks.report import report_uri, write_reports
    from exfm.das import backfill_day

    lake = _gated_lake(cfg, ds)
    _expect(lake, expect, f"the request to score {ds}")
    result = backfill_day(cfg, lake, ds, fm_version, force, (warm or Warm()).scorer)
    if not result["skipped"] and load_result(lake, ds) is not None:
        # the day's drift page now shows the FM's calibration
        if warm is None:
            result["report"] = write_reports(cfg, lake, ds)
        else:
            warm.report_later(cfg, ds)
            result["report"] = report_uri(lake, ds)
    return result


def das_join(cfg: Config, ds: str, vertical: str, fm_version: str | None = None) -> dict[str, Any]:
    """What a VM's training join of (ds, vertical) would read: version, coverage, content ids."""
    from exfm.das import training_rows

    cfg.features.vertical(vertical)
    _, joined = training_rows(cfg, Lake.from_config(cfg.lake), ds, vertical, fm_version)
    return joined


def das_stats(cfg: Config, ds: str, fm_version: str | None = None) -> dict[str, Any]:
    """Coverage and cost accounting of ds's predictions (the current version by default)."""
    from exfm.das import current_version, day_stats

    lake = Lake.from_config(cfg.lake)
    version = fm_version or current_version(cfg, lake, ds)[0]
    return day_stats(lake, ds, version)


def evaluate(
    cfg: Config,
    start: str | None = None,
    end: str | None = None,
    models: Sequence[str] | None = None,
    read: dict[str, dict[str, Any]] | None = None,
) -> pa.Table:
    """NE, AUC, calibration per model, vertical and day, and pooled (exfm/evaluation.py); refuses
    evaluations made on content that is no longer in the lake. `read` receives the content id
    and inputs of every evaluation partition pooled."""
    from exfm import ids
    from exfm.evaluation import evaluate as table_of

    start, end = (None if d is None else ids.ds(d) for d in (start, end))
    return table_of(Lake.from_config(cfg.lake), start, end, models, read)


def pipeline_report(cfg: Config) -> dict[str, Any]:
    """Evaluate every model of the pipeline (the FM, each vertical's VM and baseline) on what the
    lake holds and write the pipeline report and its metrics into the lake, `reports/pipeline/`
    (exfm/pipeline_report.py): what `dvc repro`'s evaluate and report stages show, for Airflow."""
    from exfm.pipeline_report import publish

    return publish(cfg, Lake.from_config(cfg.lake))


def reports(cfg: Config, out: str | None = None) -> str | None:
    """Rebuild every day's drift report and the index (also into the local folder `out`);
    returns the index's location, or None when no day was checked yet."""
    from data_checks.report import write_reports

    return write_reports(cfg, Lake.from_config(cfg.lake), None, out)


def lineage(cfg: Config, query: str | None = None, stale: bool = False) -> dict[str, Any]:
    """What artifacts were made from and what was made from them (exfm/lineage.py): one
    artifact or a day (`query`), or every stale artifact (`stale`)."""
    from exfm.lineage import Graph

    graph = Graph.build(Lake.from_config(cfg.lake), cfg.checks.reference_days)
    if stale:
        names = graph.all_stale()
        return {
            "stale": [
                {"name": n, "kind": graph.nodes[n].kind, "reasons": graph.stale(n)} for n in names
            ],
            "artifacts": len(graph.nodes),
        }
    if query is None:
        raise ValueError("give an artifact, a day, or stale=True")
    return {"artifacts": [graph.describe(n) for n in graph.select(query)]}

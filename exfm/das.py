"""The Data Augmentation System (DAS): the FM scores every example once, its prediction is stored
next to the example, and every VM reads it back; no FM runs inside a VM's training or serving.

The store: `das/fm_version=fm-<training day>/ds=<ds>/` in the lake (local or S3), one partition per
FM version and day holding example_id, vertical, fm_logit and written_at, with the FM snapshot's
checksum in the file's metadata. Writes go through `Lake.write_partition`: atomic and idempotent
(a rerun replaces the partition; a crash leaves the previous one readable). The catalog's `das`
view (exfm sql) queries it. Readers (VM trainings) use short-lived in-memory DuckDB connections over
the parquet files, so any number of them run while a backfill writes another day.

Which FM scores day ds: the latest *published* FM whose training day is at most
ds - 1 - das.fm_delay_days (the snapshot that was live when the traffic was logged). A snapshot
that trained on ds is never used for ds: its predictions would leak ds's labels into the VMs.

Lineage (exfm/lineage.py): each partition records, in its footer (`exfm.inputs`), the content ids
of the impressions it scored (every vertical of ds) and the FM snapshot's sha256. A backfill skips
a day only when the stored partition was made from the impressions the lake holds now by the very
same snapshot; otherwise it re-scores, without --force. A VM's training join reads the predictions
of ds that are *current* (made from today's impressions by a snapshot that is still the registry's
and published): by default the newest such version no newer than the live FM, or the version it
is given, which must be current; stale predictions are never joined.

Per day, `day_stats` reports coverage, the FM's score distribution and its calibration on the
day's labels, the FM inferences performed, the rows supplied to VM trainings (each training join
leaves a record), and the amortization factor against co-distillation.

    exfm das backfill --start D1 --end D2 [--fm-version fm-D0] [--force]
    exfm das join --ds D --vertical V        # coverage of a VM's training rows
    exfm das stats --ds D                    # JSON
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import time
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from exfm import ids
from exfm.config import Config
from exfm.data.schema import FeatureSpec, first_duplicate
from exfm.errors import ExfmError, LakeError, RegistryError
from exfm.inference import model_from_payload, predict, use_threads
from exfm.lake import DAS, IMPRESSIONS, Lake
from exfm.lineage import (
    Change,
    changes,
    describe_changes,
    inputs_metadata,
    partition_inputs,
)
from exfm.metrics import BinaryMetrics
from exfm.models.inputs import to_batch
from exfm.models.layers import TRAINING_PASSES
from exfm.progress import progress
from exfm.registry import Registry, SnapshotMeta
from exfm.variants import FM

log = logging.getLogger(__name__)
_VERSION = re.compile(r"^fm-(\d{4}-\d{2}-\d{2})$")
# Training a co-distilled teacher costs a forward and a backward pass: ~3x a forward's FLOPs.
CO_DISTILLATION_PASSES = TRAINING_PASSES


class DASError(ExfmError):
    """The DAS cannot score or supply a day (no live FM, bad coverage, duplicate ids...)."""


class NoLiveFM(DASError):
    """No published FM is old enough to score the day (the first days of a deployment)."""


def fm_version(meta: SnapshotMeta) -> str:
    return f"fm-{meta.ds}"


def version_day(version: str) -> str:
    """The training day of an FM version name 'fm-YYYY-MM-DD'."""
    match = _VERSION.match(version)
    if not match:
        raise DASError(f"invalid fm_version {version!r}: expected fm-YYYY-MM-DD")
    return ids.ds(match.group(1))


def live_fm(cfg: Config, registry: Registry, ds: str) -> SnapshotMeta:
    """The FM snapshot that was live for day ds's traffic (see the module docstring)."""
    cutoff = ids.ds_add(ds, -1 - cfg.das.fm_delay_days)
    meta = registry.latest_published(FM, None, as_of=cutoff)
    if meta is None:
        have = [
            f"{m.ds}{'' if m.published else ' (unpublished)'}" for m in registry.history(FM, None)
        ]
        raise NoLiveFM(
            f"no published FM trained on {cutoff} or earlier can score ds={ds} "
            f"(das.fm_delay_days={cfg.das.fm_delay_days}); FM snapshots: {have or 'none'}"
        )
    return meta


def _chosen_fm(cfg: Config, registry: Registry, ds: str, version: str | None) -> SnapshotMeta:
    if version is None:
        return live_fm(cfg, registry, ds)
    day = version_day(version)
    if day >= ds:
        raise DASError(
            f"{version} trained on {day}, which is not before ds={ds}: its "
            "predictions would leak that day's labels into the VMs"
        )
    meta = registry.meta(FM, None, day)
    if not meta.published:
        raise DASError(
            f"{version} is not published ({meta.publish_reason}); the DAS stores only "
            "published FMs' predictions"
        )
    return meta


def backfill_day(
    cfg: Config,
    lake: Lake,
    ds: str,
    version: str | None = None,
    force: bool = False,
    scorer: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Score every example of ds once with the chosen FM and store the predictions. `scorer`
    keeps the FM last used in memory (sha256 -> model and layout) for the next day of a range:
    a snapshot is loaded once however many days it scores."""
    started = time.perf_counter()
    registry = Registry(lake)
    spec = FeatureSpec.from_config(cfg.features)
    meta = _chosen_fm(cfg, registry, ids.ds(ds), version)
    values = {"fm_version": fm_version(meta), "ds": ds}
    stale = _stale(lake, values, {**lake.content_ids(IMPRESSIONS, ds=[ds]), meta.name: meta.sha256})
    if not force and stale == []:
        return {
            "ds": ds,
            "fm_version": values["fm_version"],
            "skipped": True,
            "content_id": lake.content_id(DAS, values),
        }
    if stale:
        log.info("das %s: re-scoring, %s", DAS.rel_dir(values), describe_changes(stale))
    table, impressions = lake.read_with_ids(IMPRESSIONS, ds=[ds])
    _check_unique(table, ds)
    model, layout = _scorer(registry, meta, spec, {} if scorer is None else scorer)
    data = to_batch(table, layout)
    with progress(
        total=len(data),
        desc=f"das {ds} <- {values['fm_version']}",
        unit="rows",
        unit_scale=True,
        disable=None,
        leave=False,
    ) as bar:

        def score(batch: Any) -> torch.Tensor:
            bar.update(len(batch))
            return model(batch.cat, batch.dense, batch.vertical)

        use_threads(cfg)
        logits = predict(score, data, cfg.das.batch_size, torch.device("cpu"))
    now = dt.datetime.now(dt.UTC)
    out = pa.table(
        {
            "example_id": table.column("example_id"),
            "vertical": table.column("vertical"),
            "fm_logit": pa.array(logits, pa.float32()),
            "written_at": pa.repeat(pa.scalar(now, pa.timestamp("us", tz="UTC")), table.num_rows),
        }
    )
    written = lake.write_partition(
        DAS,
        values,
        out,
        metadata={
            "exfm.fm_sha256": meta.sha256,
            "exfm.fm_ds": meta.ds,
            **inputs_metadata({**impressions, meta.name: meta.sha256}),
        },
    )
    stats = _write_stats(lake, ds, values["fm_version"], meta, table, logits)
    seconds = time.perf_counter() - started
    log.info("das %s <- %s: %d rows in %.1f s", ds, values["fm_version"], len(logits), seconds)
    return {
        "ds": ds,
        "fm_version": values["fm_version"],
        "skipped": False,
        "content_id": written.write_id,
        "rows": len(logits),
        "seconds": round(seconds, 3),
        "fm_ne": stats["fm"]["ne"],
        "fm_calibration": stats["fm"]["calibration"],
    }


def _scorer(
    registry: Registry, meta: SnapshotMeta, spec: FeatureSpec, scorer: dict[str, Any]
) -> tuple[torch.nn.Module, Any]:
    """The FM of `meta`, in eval mode, and its input layout. `scorer` holds the last one a range
    used: the same snapshot is not read again, another one of the same architecture loads its
    weights into the module in memory instead of building a new one, and one stored as a delta
    over the held weights reads only its delta."""
    if scorer.get("sha256") != meta.sha256:
        # until the new weights are in; a delta over the ones held starts from them
        sha256, weights = scorer.pop("sha256", None), scorer.pop("weights", None)
        held = (sha256, weights) if sha256 and weights is not None else None
        payload, _ = registry.load(FM, None, meta.ds, spec.fingerprint(), held=held)
        shape = (payload["model_config"], payload["layout"])
        if scorer.get("shape") == shape:
            scorer["model"].load_state_dict(payload["model"])
        else:
            scorer["model"], scorer["layout"] = model_from_payload(payload)
        scorer.update(sha256=meta.sha256, shape=shape, weights=payload)
    return scorer["model"], scorer["layout"]


def _stale(lake: Lake, values: dict[str, str], now: dict[str, str]) -> list[Change] | None:
    """How the stored partition's inputs differ from `now` (what scoring it now would read):
    [] when it is current, None when there is no partition."""
    if not lake.has_partition(DAS, values):
        return None
    recorded = partition_inputs(lake, DAS, values)
    if recorded is None:  # written before partitions recorded their inputs
        return [Change(k, None, v) for k, v in sorted(now.items())]
    return changes(lake, recorded, now)


def current_version(
    cfg: Config, lake: Lake, ds: str, version: str | None = None
) -> tuple[str, dict[str, str]]:
    """The DAS version of ds that consumers read, and the partition's recorded inputs: `version`
    if given (it must be current), else the newest current version no newer than the live FM
    (the module docstring says what current is). Raises DASError naming what is stale."""
    registry = Registry(lake)
    impressions = lake.content_ids(IMPRESSIONS, ds=[ids.ds(ds)])
    versions = _versions(lake, ds)
    if version is not None:
        if version not in versions:
            raise DASError(f"no predictions of {version} for ds={ds}; it has {versions}")
        candidates = [version]
    else:
        cutoff = ids.ds_add(ds, -1 - cfg.das.fm_delay_days)
        candidates = sorted(
            (v for v in versions if version_day(v) <= cutoff), key=version_day, reverse=True
        )
    problems = []
    for candidate in candidates:
        values = {"fm_version": candidate, "ds": ds}
        try:
            fm = registry.meta(FM, None, version_day(candidate))
        except RegistryError:
            problems.append(f"{candidate}: its FM snapshot is no longer in the registry")
            continue
        found = _stale(lake, values, {**impressions, fm.name: fm.sha256})
        if found:
            problems.append(f"{DAS.rel_dir(values)} is stale: {describe_changes(found)}")
        elif not fm.published:
            problems.append(f"{candidate} is not published ({fm.publish_reason})")
        else:
            for problem in problems:
                log.warning("das ds=%s: not using %s", ds, problem)
            recorded = partition_inputs(lake, DAS, values) or {}
            return candidate, recorded
    if not candidates:
        raise DASError(
            f"no FM predictions for ds={ds} in {lake.uri('das')} (versions there: "
            f"{versions or 'none'}): run `exfm das backfill --start {ds} --end {ds}` first"
        )
    raise DASError(
        f"no current FM predictions for ds={ds}: {'; '.join(problems)}; run "
        f"`exfm das backfill --start {ds} --end {ds}` (it re-scores what is stale)"
    )


def _check_unique(table: pa.Table, ds: str) -> None:
    for vertical in pc.unique(table.column("vertical")).to_pylist():
        ids_ = table.filter(pc.equal(table.column("vertical"), vertical)).column("example_id")
        dup = first_duplicate(ids_)
        if dup is not None:
            raise DASError(
                f"impressions ds={ds} vertical={vertical} holds example_id "
                f"{dup[0]!r} more than once (rows {dup[1]}); the DAS keys on it"
            )


def prune_stale(cfg: Config, lake: Lake, ds: str, keep: str) -> list[str]:
    """Delete ds's predictions by FM versions other than `keep` that are stale (their FM snapshot
    was retrained or removed, or the impressions changed): no consumer may read them, and they
    cannot become current again. Returns the partitions removed."""
    registry = Registry(lake)
    impressions = lake.content_ids(IMPRESSIONS, ds=[ds])
    removed = []
    for version in _versions(lake, ds):
        if version == keep:
            continue
        values = {"fm_version": version, "ds": ds}
        try:
            fm = registry.meta(FM, None, version_day(version))
            found = _stale(lake, values, {**impressions, fm.name: fm.sha256})
        except RegistryError:
            found = [Change(f"registry/fm/ds={version_day(version)}", "?", None)]
        if found:
            log.info("das: removing %s (%s)", DAS.rel_dir(values), describe_changes(found))
            lake.delete_partition(DAS, values)
            removed.append(DAS.rel_dir(values))
    return removed


def backfill(
    cfg: Config,
    lake: Lake,
    start: str,
    end: str,
    version: str | None = None,
    force: bool = False,
) -> list[dict[str, Any]]:
    """Backfill every day of a range, skipping days already done by the same FM (unless force):
    an interrupted backfill resumes where it stopped."""
    out: list[dict[str, Any]] = []
    scorer: dict[str, Any] = {}
    days = ids.ds_range(start, end)
    for ds in progress(days, desc="das backfill", unit="days", disable=None):
        out.append(backfill_day(cfg, lake, ds, version, force, scorer))
    return out


# ------------------------------------------------------------------------------- training join


def _versions(lake: Lake, ds: str) -> list[str]:
    return sorted(p["fm_version"] for p in lake.partitions(DAS, ds=[ds]))


def training_rows(
    cfg: Config,
    lake: Lake,
    ds: str,
    vertical: str,
    version: str | None = None,
    consumer: str | None = None,
) -> tuple[pa.Table, dict[str, Any]]:
    """The vertical's rows of ds with their FM prediction (`fm_logit`, null where missing),
    joined in DuckDB on (example_id, vertical), ordered by example_id; and a coverage report.
    Default version: the newest FM that scored ds. `consumer` (a VM model name) records the join
    for cost accounting. Raises DASError below das.min_coverage."""
    spec = FeatureSpec.from_config(cfg.features)
    if vertical not in spec.verticals:
        raise DASError(f"unknown vertical {vertical!r}; verticals: {list(spec.verticals)}")
    version, recorded = current_version(cfg, lake, ds, version)
    rows, read_ids = lake.read_with_ids(IMPRESSIONS, ds=[ds], vertical=[vertical])
    predictions, das_ids = lake.read_with_ids(
        DAS, fm_version=[version], ds=[ds], columns=["example_id", "vertical", "fm_logit"]
    )
    moved = changes(lake, {k: v for k, v in recorded.items() if k in read_ids}, read_ids)
    if moved:  # re-landed since the partition was chosen
        raise DASError(
            f"das {version} ds={ds} went stale while it was read ({describe_changes(moved)}); "
            "rerun the backfill"
        )
    con = duckdb.connect()
    try:
        con.register("imp", rows)
        con.register("das", predictions)
        dup = con.sql(
            "SELECT example_id, count(*) AS n FROM das WHERE vertical = ? "
            "GROUP BY example_id HAVING count(*) > 1 LIMIT 1",
            params=[vertical],
        ).fetchall()
        if dup:
            raise DASError(
                f"das {version} ds={ds} holds example_id {dup[0][0]!r} {dup[0][1]} "
                f"times for vertical {vertical}"
            )
        table = con.sql(
            "SELECT i.*, d.fm_logit FROM imp AS i LEFT JOIN "
            "(SELECT example_id, fm_logit FROM das WHERE vertical = ?) AS d "
            "USING (example_id) ORDER BY i.example_id",
            params=[vertical],
        ).to_arrow_table()
    finally:
        con.close()
    covered = table.num_rows - table.column("fm_logit").null_count
    report = {
        "ds": ds,
        "vertical": vertical,
        "fm_version": version,
        "rows": table.num_rows,
        "with_prediction": covered,
        "coverage": covered / max(table.num_rows, 1),
        "inputs": {**read_ids, **das_ids},
    }
    if report["coverage"] < cfg.das.min_coverage:
        raise DASError(
            f"only {covered} of {table.num_rows} rows of ds={ds} vertical={vertical} have a "
            f"prediction from {version} (coverage {report['coverage']:.2%} < das.min_coverage "
            f"{cfg.das.min_coverage:.2%}); rerun the backfill of {ds}"
        )
    if consumer is not None:
        key = (
            f"das_stats/ds={ds}/fm_version={version}/joins/vertical={vertical}/"
            f"{ids.version(consumer)}.json"
        )
        lake.put_bytes(key, json.dumps(report).encode())
    return table, report


# ------------------------------------------------------------------------------------- stats


def _write_stats(
    lake: Lake, ds: str, version: str, meta: SnapshotMeta, table: pa.Table, logits: np.ndarray
) -> dict[str, Any]:
    """Scoring facts of one day (the FM's calibration on ds's labels, score quantiles)."""
    labels = table.column("label").to_numpy()
    m = BinaryMetrics()
    m.update(logits, labels)
    probs = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    q = np.quantile(probs, [0.01, 0.1, 0.5, 0.9, 0.99]) if len(probs) else [None] * 5
    stats = {
        "ds": ds,
        "fm_version": version,
        "fm_snapshot_ds": meta.ds,
        "fm_sha256": meta.sha256,
        "rows_scored": len(logits),
        "fm": m.compute().to_dict(),
        "score_quantiles": dict(
            zip(["p01", "p10", "p50", "p90", "p99"], [float(x) for x in q], strict=True)
        ),
        "rows_by_vertical": {
            v: int(c)
            for v, c in zip(
                *np.unique(
                    table.column("vertical").to_numpy(zero_copy_only=False), return_counts=True
                ),
                strict=True,
            )
        },
        "fm_flops_per_row": float(meta.metrics.get("flops_per_example") or 0.0),
    }
    lake.put_bytes(
        f"das_stats/ds={ds}/fm_version={version}/scoring.json",
        json.dumps(stats, default=float).encode(),
    )
    return stats


def day_stats(lake: Lake, ds: str, version: str | None = None) -> dict[str, Any]:
    """Coverage and cost accounting of ds (see the module docstring), as plain JSON data."""
    versions = _versions(lake, ds)
    if not versions:
        raise DASError(f"no FM predictions for ds={ds}")
    version = version or max(versions, key=version_day)
    prefix = f"das_stats/ds={ds}/fm_version={version}"
    try:
        scoring = json.loads(lake.get_bytes(f"{prefix}/scoring.json"))
    except LakeError as e:
        raise DASError(f"no scoring record for {version} ds={ds}: rerun its backfill") from e
    joins = [json.loads(lake.get_bytes(k)) for k in lake.list_keys(f"{prefix}/joins")]
    supplied = sum(j["rows"] for j in joins)
    inferences = scoring["rows_scored"]
    impressions = lake.read(IMPRESSIONS, ds=[ds], columns=["label"]).num_rows
    flops = scoring["fm_flops_per_row"]
    return {
        **{k: scoring[k] for k in ("ds", "fm_version", "fm_snapshot_ds", "score_quantiles")},
        "coverage": inferences / max(impressions, 1),
        "fm_ne": scoring["fm"]["ne"],
        "fm_calibration": scoring["fm"]["calibration"],
        "fm_inferences": inferences,
        "vm_trainings": len(joins),
        "rows_supplied_to_vms": supplied,
        "join_coverage": {f"{j['vertical']}": j["coverage"] for j in joins},
        # co-distillation would run the teacher (forward + backward) on every row of every VM
        # training; the DAS runs one forward per example, whatever the number of VMs
        "amortization_factor": CO_DISTILLATION_PASSES * supplied / max(inferences, 1),
        "amortization_factor_forward_only": supplied / max(inferences, 1),
        "fm_flops_per_row": flops,
        "fm_gflops_das": flops * inferences / 1e9,
        "fm_gflops_co_distillation": CO_DISTILLATION_PASSES * flops * supplied / 1e9,
    }

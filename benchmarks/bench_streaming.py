"""What a range of days costs beyond the model itself: the FM streamed over N days of a fixed
total of rows (so fewer rows a day as N grows), and the DAS over the same days.

For each N of `--days`, in a fresh temporary lake (removed after it: the default FM's weights,
~46 MB whole, are kept for every day, as deltas between checkpoint days):
- setup, not timed: land N days of the simulated world and check each (the gate needs a stored
  check); its seconds are reported. The drift checks' fail thresholds are raised (they still run
  and warn): at a thousand rows a day the default world's day-to-day drift is sampling noise,
  which would fail days and stop the range; publishing is loosened as in bench_das.py so that
  snapshots publish.
- fm: `stages.train_fm` for every day with one `stages.Warm()` (what `exfm fm train --start
  --end` does), end to end, against the reference measured in the same run: the training pass
  alone (`trainee.step` over shuffled batches of train.batch_size, day by day, as
  exfm/training.py's `_train_pass`) over the same rows already in memory as tensors, measured
  first (so the process's one-time costs, torch's lazy imports, fall outside both figures).
  `ratio_to_model_only` = end-to-end rows/s / model-only rows/s (target >= 0.7);
  `overhead_per_day_s` = (end-to-end - model-only seconds) / N. The summary fits
  overhead = per_range + per_day * N across the N: per_day is the fixed cost of a day, per_range
  what does not depend on N at a fixed total of rows (per-row work outside the training step:
  the progressive evaluation's forward pass, hashing the features, metrics).
- lone (for N <= `--lone`, default 50; the second reference): the same days without a Warm,
  each day loading its parent from the registry as one process a day would (the FM's snapshots
  and evaluations are removed first, so it trains them anew); it must give the same snapshots.
- registry: bytes under <lake>/registry/fm per day against one snapshot's weights (the newest
  meta's `bytes`), target < 2 (weights kept every day, whole on checkpoint days and as deltas
  between, optimizer state at checkpoints).
- das: `stages.backfill_das` for every day with one Warm (days without a live FM are skipped,
  as the pipeline does) against the FM's forward pass alone over the same rows as in-memory
  tensors with the same snapshots (best of two); `ratio_to_forward` = forward / backfill
  seconds (target >= 0.9). das_one_version: the days after the first published FM, all scored by
  it (`fm_version`, `force`), the model loaded once, against the same forward pass.

    .venv/bin/python benchmarks/bench_streaming.py [--days 10 50 200] [--total-rows 200000]
        [--lone 50] [--set KEY=VALUE ...]

Prints one JSON object. The defaults take ~20 minutes on 2 cores, ~7 of them the untimed checks
(~2 s a day), and ~2 GB of disk at N=200 (freed after it).
"""

from __future__ import annotations

import itertools
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from harness import REPO, emit, parser, world_config

import exfm.training  # noqa: F401  (imported here, not inside the first timed day)
from exfm import stages
from exfm.config import Config, load_config
from exfm.config_schema import ThresholdConfig
from exfm.das import NoLiveFM, version_day
from exfm.data.schema import FeatureSpec
from exfm.inference import device_of, model_from_payload, predict, use_threads
from exfm.lake import EVALS, IMPRESSIONS, Lake
from exfm.models.inputs import Batch, batches, to_batch
from exfm.registry import Registry
from exfm.trainee import build_trainee, seed_of
from exfm.variants import FM

FM_TARGET, DAS_TARGET, REGISTRY_TARGET = 0.7, 0.9, 2.0
FLAT_TOLERANCE = 1.5  # a day's marginal cost is "flat" in N when it grows by at most this

PUBLISH = ["publish.max_ne=100", "publish.min_calibration=0", "publish.max_calibration=100"]


def relaxed_checks() -> list[str]:
    """The drift checks run (and warn) but cannot fail a day (the module docstring): every
    warn/fail threshold of the checks section gets fail=1000."""
    checks = load_config(REPO / "params.yaml").checks
    return [
        f"checks.{name}.fail=1000.0" for name, value in checks if isinstance(value, ThresholdConfig)
    ]


def _seconds(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _rate(rows: int, seconds: float) -> int:
    return round(rows / seconds) if seconds > 0 else 0


def day_batches(lake: Lake, days: list[str], layout: Any) -> dict[str, Batch]:
    """Each day's impressions as tensors, read and converted once (not timed)."""
    return {ds: to_batch(lake.read(IMPRESSIONS, ds=[ds]), layout) for ds in days}


def model_only(cfg: Config, lake: Lake, days: list[str]) -> float:
    """Seconds of the training pass alone over the days' rows in memory: a fresh FM trainee's
    `step` over each day's shuffled batches of train.batch_size, as `_train_pass` does."""
    trainee = build_trainee(cfg, FeatureSpec.from_config(cfg.features), "fm")
    device = device_of(cfg)
    trainee.model.to(device)
    data = day_batches(lake, days, trainee.layout)
    use_threads(cfg)
    trainee.model.train()
    seconds = 0.0
    for ds, day in data.items():
        generator = torch.Generator().manual_seed(seed_of(cfg.train.seed, FM, None, ds))
        steps = batches(
            len(day), cfg.train.batch_size, torch.randperm(len(day), generator=generator)
        )
        start = time.perf_counter()
        for index in steps:
            trainee.step(day.take(index).to(device))
        seconds += time.perf_counter() - start
    return seconds


def forward_only(cfg: Config, lake: Lake, scored: dict[str, str], repeats: int = 2) -> float:
    """Seconds of the FM's forward pass alone (batches of das.batch_size) over each day's rows in
    memory, with the snapshot that scored it (`scored`: ds -> FM snapshot day), the best of
    `repeats` per day. One snapshot in memory at a time (a range of 200 days has ~200)."""
    registry, spec = Registry(lake), FeatureSpec.from_config(cfg.features)
    use_threads(cfg)
    cpu = torch.device("cpu")
    loaded: dict[str, Any] = {}
    total = 0.0
    for ds, snapshot in scored.items():
        if snapshot not in loaded:
            payload, _ = registry.load(FM, None, snapshot, spec.fingerprint())
            loaded = {snapshot: model_from_payload(payload)}
        model, layout = loaded[snapshot]
        data = to_batch(lake.read(IMPRESSIONS, ds=[ds]), layout)
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            predict(lambda b, m=model: m(b.cat, b.dense, b.vertical), data, cfg.das.batch_size, cpu)
            best = min(best, time.perf_counter() - start)
        total += best
    return total


def registry_bytes(cfg: Config, lake: Lake, days: int) -> dict[str, Any]:
    """The FM's registry on disk per day against one snapshot's weights."""
    root = Path(cfg.lake.root) / "registry" / FM
    files = [p for p in root.rglob("*") if p.is_file()]
    total = sum(p.stat().st_size for p in files)
    history = Registry(lake).history(FM, None)
    snapshot = history[-1].bytes
    ratio = total / days / snapshot
    return {
        "bytes": total,
        "bytes_per_day": round(total / days),
        "reference": "one snapshot's whole weights (the newest day's, as snapshot.pt)",
        "snapshot_bytes": snapshot,
        "ratio_to_snapshot": round(ratio, 3),
        "target_ratio": REGISTRY_TARGET,
        "meets_target": ratio < REGISTRY_TARGET,
        "snapshots": len(history),
        "weights_files": sum(p.name == "snapshot.pt" for p in files),
        "delta_files": sum(p.name == "delta.pt" for p in files),
        "delta_bytes": sum(p.stat().st_size for p in files if p.name == "delta.pt"),
        "optimizer_files": sum(p.name == "optimizer.pt" for p in files),
        "optimizer_bytes": sum(p.stat().st_size for p in files if p.name == "optimizer.pt"),
        "published": sum(m.published for m in history),
        "pruned": sum(bool(m.pruned) for m in history),
    }


def das_figure(
    seconds: float, rows: int, days: int, forward_s: float, **extra: Any
) -> dict[str, Any]:
    ratio = forward_s / seconds
    return {
        "days_scored": days,
        "rows": rows,
        **extra,
        "seconds": round(seconds, 3),
        "rows_per_s": _rate(rows, seconds),
        "reference": "FM forward pass alone over the same rows as in-memory tensors, same FM",
        "reference_seconds": round(forward_s, 3),
        "reference_rows_per_s": _rate(rows, forward_s),
        "ratio_to_forward": round(ratio, 3),
        "target_ratio": DAS_TARGET,
        "meets_target": ratio >= DAS_TARGET,
        "overhead_per_day_s": round((seconds - forward_s) / max(days, 1), 4),
    }


def forget_fm(lake: Lake) -> None:
    """Remove the FM's snapshots and progressive evaluations: the next training is a first."""
    registry = Registry(lake)
    for meta in registry.history(FM, None):
        registry.delete(FM, None, meta.ds)
    for values in lake.partitions(EVALS, model=[FM]):
        lake.delete_partition(EVALS, values)


def one_range(n: int, total_rows: int, lone_max: int, overrides: list[str]) -> dict[str, Any]:
    started = time.perf_counter()
    rows_per_day = total_rows // n
    with tempfile.TemporaryDirectory() as tmp:
        cfg = world_config(
            rows_per_day,
            f"world.days={n}",
            f"lake.catalog={tmp}/c.duckdb",
            *PUBLISH,
            *relaxed_checks(),
            *overrides,
            root=tmp,
        )
        lake = Lake.from_config(cfg.lake)

        # setup, not timed: the days and their checks
        start = time.perf_counter()
        landed = stages.land_world(cfg)
        land_s = time.perf_counter() - start
        days = [d["ds"] for d in landed]
        rows = sum(d["rows"] for d in landed)
        with stages.Warm() as checks:  # the drift pages once, at the end (as a range does)
            check_s = _seconds(lambda: [stages.check(cfg, ds, checks) for ds in days])

        # the reference first: it also takes the process's one-time costs (torch's lazy
        # imports, first calls) out of the end-to-end figure of the first N
        model_s = model_only(cfg, lake, days)

        # the FM, end to end: the range in one process
        warm = stages.Warm()
        results = []
        start = time.perf_counter()
        for ds in days:
            results.append(stages.train_fm(cfg, ds, warm=warm))
        fm_s = time.perf_counter() - start
        shas = {r["ds"]: r["sha256"] for r in results}
        in_train_day = sum(r["seconds"] for r in results)
        registry = registry_bytes(cfg, lake, n)
        ratio = model_s / fm_s
        fm = {
            "seconds": round(fm_s, 3),
            "rows_per_s": _rate(rows, fm_s),
            "in_train_day_s": round(in_train_day, 3),  # the rest: the gate, reads, replay check
            "reference": "the training pass alone (trainee.step over each day's batches of "
            "train.batch_size) over the same rows in memory as tensors",
            "reference_seconds": round(model_s, 3),
            "reference_rows_per_s": _rate(rows, model_s),
            "ratio_to_model_only": round(ratio, 3),
            "target_ratio": FM_TARGET,
            "meets_target": ratio >= FM_TARGET,
            "overhead_s": round(fm_s - model_s, 3),
            "overhead_per_day_s": round((fm_s - model_s) / n, 4),
            "published": sum(bool(r["published"]) for r in results),
        }

        # the DAS over the same days: the live FM of each day, one Warm
        scored: dict[str, str] = {}
        das_rows = 0
        start = time.perf_counter()
        with stages.Warm() as warm2:  # timed with its end: the drift pages it makes due
            for ds in days:
                try:
                    result = stages.backfill_das(cfg, ds, warm=warm2)
                except NoLiveFM:
                    continue
                scored[ds] = version_day(result["fm_version"])
                das_rows += result["rows"]
        das_s = time.perf_counter() - start
        das = (
            das_figure(das_s, das_rows, len(scored), forward_only(cfg, lake, scored))
            if scored
            else {"days_scored": 0, "skipped": "no day has a live FM"}
        )

        # ... and every day after the first published FM, all scored by it (loaded once)
        first = next((m for m in Registry(lake).history(FM, None) if m.published), None)
        later = [ds for ds in days if first is not None and ds > first.ds]
        if first is not None and later:
            version = f"fm-{first.ds}"
            one_rows = 0
            start = time.perf_counter()
            with stages.Warm() as warm3:
                for ds in later:
                    result = stages.backfill_das(cfg, ds, version, force=True, warm=warm3)
                    one_rows += result["rows"]
            one_s = time.perf_counter() - start
            forward_s = forward_only(cfg, lake, dict.fromkeys(later, first.ds))
            one = das_figure(one_s, one_rows, len(later), forward_s, fm_version=version)
        else:
            one = {"days_scored": 0, "skipped": "no published FM before the last day"}

        # the old way: no Warm, each day loads its parent from the registry
        if n <= lone_max:
            forget_fm(lake)
            lone_results = []
            start = time.perf_counter()
            for ds in days:
                lone_results.append(stages.train_fm(cfg, ds))
            lone_s = time.perf_counter() - start
            lone = {
                "seconds": round(lone_s, 3),
                "rows_per_s": _rate(rows, lone_s),
                "speedup_of_warm": round(lone_s / fm_s, 3),
                "saved_per_day_s": round((lone_s - fm_s) / n, 4),
                "same_snapshots": {r["ds"]: r["sha256"] for r in lone_results} == shas,
            }
        else:
            lone = {"skipped": f"{n} days > --lone {lone_max}"}

    return {
        "days": n,
        "rows_per_day": rows_per_day,
        "rows": rows,
        "setup": {
            "timed": False,
            "land_s": round(land_s, 3),
            "check_s": round(check_s, 3),
            "check_per_day_s": round(check_s / n, 3),
        },
        "fm": fm,
        "lone": lone,
        "registry": registry,
        "das": das,
        "das_one_version": one,
        "wall_s": round(time.perf_counter() - started, 1),
    }


def fit(ns: list[int], overheads: list[float]) -> dict[str, float] | None:
    """Least squares overhead = per_range + per_day * N (None with fewer than two N)."""
    if len(set(ns)) < 2:
        return None
    mean_n, mean_o = statistics.fmean(ns), statistics.fmean(overheads)
    slope = sum((n - mean_n) * (o - mean_o) for n, o in zip(ns, overheads, strict=True)) / sum(
        (n - mean_n) ** 2 for n in ns
    )
    return {
        "per_day_s": round(slope, 4),
        "per_range_s": round(mean_o - slope * mean_n, 3),
    }


def flatness(ranges: list[dict[str, Any]], figure: str) -> dict[str, Any]:
    """The overhead per day of `figure` across N: its values, the marginal cost of a day between
    consecutive N (what the overhead grows by per added day: the fixed cost of a day, without
    the per-row work that the average per day spreads over N), whether that is flat (it grows by
    at most FLAT_TOLERANCE from one step of N to the next; falling is flat), and the fit."""
    pairs = [(r["days"], r[figure]) for r in ranges if "overhead_per_day_s" in r.get(figure, {})]
    per_day = {str(n): f["overhead_per_day_s"] for n, f in pairs}
    values = [v for v in per_day.values() if v > 0]
    spread = max(values) / min(values) if len(values) == len(per_day) and values else None
    totals = sorted((n, f["overhead_per_day_s"] * n) for n, f in pairs)
    marginal = {
        f"{a}-{b}": round((tb - ta) / (b - a), 4) for (a, ta), (b, tb) in itertools.pairwise(totals)
    }
    steps = list(marginal.values())
    growth = (
        max(b / a for a, b in itertools.pairwise(steps))
        if len(steps) >= 2 and all(v > 0 for v in steps)
        else None
    )
    return {
        "overhead_per_day_s": per_day,
        "max_over_min": None if spread is None else round(spread, 3),
        "marginal_per_day_s": marginal,
        "marginal_growth": None if growth is None else round(growth, 3),
        "flat": None if growth is None else growth <= FLAT_TOLERANCE,
        "flat_tolerance": FLAT_TOLERANCE,
        "fit": fit([n for n, _ in pairs], [f["overhead_per_day_s"] * n for n, f in pairs]),
    }


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--days", type=int, nargs="+", default=[10, 50, 200], metavar="N")
    cli.add_argument("--total-rows", type=int, default=200_000, help="rows of every range")
    cli.add_argument(
        "--lone",
        type=int,
        default=50,
        metavar="MAX_DAYS",
        help="train the days one process each (no Warm) for N <= MAX_DAYS (0: never)",
    )
    cli.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override params.yaml (repeatable), e.g. smaller models for a smoke run",
    )
    args = cli.parse_args()
    if min(args.days) < 2:
        cli.error("--days: every N must be at least 2 (the DAS scores from the second day)")
    started, load = time.perf_counter(), os.getloadavg()
    ranges = [one_range(n, args.total_rows, args.lone, args.set) for n in args.days]
    emit(
        {
            "benchmark": "streaming",
            "total_rows": args.total_rows,
            "overrides": [*PUBLISH, *relaxed_checks(), *args.set],
            "ranges": ranges,
            "summary": {
                "fm": flatness(ranges, "fm"),
                "das": flatness(ranges, "das"),
                "fm_ratio_to_model_only": {
                    str(r["days"]): r["fm"]["ratio_to_model_only"] for r in ranges
                },
                "das_ratio_to_forward": {
                    str(r["days"]): r["das"].get("ratio_to_forward") for r in ranges
                },
                "registry_ratio_to_snapshot": {
                    str(r["days"]): r["registry"]["ratio_to_snapshot"] for r in ranges
                },
            },
            "wall_s": round(time.perf_counter() - started, 1),
            # other work on the machine skews the figures: the 1-minute load before and after
            "load_average": [round(load[0], 2), round(os.getloadavg()[0], 2)],
        }
    )


if __name__ == "__main__":
    main()

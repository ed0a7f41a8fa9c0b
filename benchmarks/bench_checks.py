"""Cost of the daily checks on one simulated day of ~1M rows (and a reference day of the same
size), over every feature; with --detection, also what the drift statistics catch.

Prints one JSON object:
- drift: every drift statistic of the day (PSI, JS, KS, shift, label shift, churn; per vertical
  and overall) in DuckDB, against the reference measured in the same run: one DuckDB pass
  computing count, null count, min and max of every column of both days (the floor of any scan).
- suite: the Great Expectations suite on each vertical's partition of the day, against the same
  checks (nulls, ranges, label set, unique ids) computed directly with pyarrow.compute.
- detection (with --detection): a synthetic pair of days of `--detection-rows` rows each, one
  vertical, 20 columns (14 dense, 6 categorical) of which 11 are truly changed in varied ways
  (0.25-sd mean shifts of four shapes, two scale changes, a larger point mass, missing values,
  a categorical reordering, new categories, one category's share) and 9 are drawn alike on both
  days. The drift statistics run on them through the gate's own code (data_checks.gate
  drift_checks, the default thresholds of params.yaml): their seconds against the same
  one-pass scan, which columns warn or fail and by which statistic, true and false positives.

    .venv/bin/python benchmarks/bench_checks.py [--rows 1000000] [--detection]
        [--detection-rows 1000000]
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from harness import against, emit, parser, world_config

from data_checks.drift import ALL, Drift
from data_checks.gate import drift_checks
from data_checks.records import DayChecks
from data_checks.suite import Bands, SuiteRunner
from exfm.config import Config, replace
from exfm.config_schema import FeatureConfig, FeaturesConfig
from exfm.data.impressions import write_impressions
from exfm.data.schema import FeatureSpec
from exfm.data.world import World
from exfm.lake import IMPRESSIONS, Lake

SCAN = "one DuckDB pass: count, nulls, min, max of every column"
Draw = Callable[[np.random.Generator, int], np.ndarray]


def _zipf(k: int, a: float = 1.1) -> np.ndarray:
    shares = 1.0 / np.arange(1, k + 1) ** a
    return shares / shares.sum()


def _ids(shares: np.ndarray, ids: np.ndarray | None = None) -> Draw:
    """Ids 0.. (or `ids`) drawn with `shares`."""
    values = np.arange(len(shares)) if ids is None else ids
    return lambda rng, n: values[rng.choice(len(shares), n, p=shares)]


def _zero_inflated(zeros: float) -> Draw:
    return lambda rng, n: np.where(rng.random(n) < zeros, 0.0, rng.exponential(1.0, n))


def _with_nulls(share: float, draw: Draw) -> Draw:
    return lambda rng, n: np.where(rng.random(n) < share, np.nan, draw(rng, n))


_LOGNORMAL_SD = float(np.sqrt((np.exp(0.75**2) - 1) * np.exp(0.75**2)))
_REVERSED = np.concatenate([_zipf(50)[:10][::-1], _zipf(50)[10:]])
_ONE_SHARE = np.array([0.25, *[0.75 / 9] * 9])
_NEW_IDS = np.concatenate([np.full(20, 0.8 / 20), np.full(20, 0.2 / 20)])

# name: (kind, the reference's draw, today's draw, how today differs or None)
DETECTION: dict[str, tuple[str, Draw, Draw, str | None]] = {
    "normal": ("dense", lambda r, n: r.normal(0, 1, n), lambda r, n: r.normal(0, 1, n), None),
    "lognormal": (
        "dense",
        lambda r, n: r.lognormal(0, 0.75, n),
        lambda r, n: r.lognormal(0, 0.75, n),
        None,
    ),
    "uniform": ("dense", lambda r, n: r.uniform(0, 10, n), lambda r, n: r.uniform(0, 10, n), None),
    "exponential": (
        "dense",
        lambda r, n: r.exponential(1, n),
        lambda r, n: r.exponential(1, n),
        None,
    ),
    "counts": ("dense", lambda r, n: r.poisson(3, n), lambda r, n: r.poisson(3, n), None),
    "zero_inflated": ("dense", _zero_inflated(0.3), _zero_inflated(0.3), None),
    "zipf_ids": ("categorical", _ids(_zipf(200)), _ids(_zipf(200)), None),
    "uniform_ids": ("categorical", _ids(np.full(10, 0.1)), _ids(np.full(10, 0.1)), None),
    "many_ids": ("categorical", _ids(_zipf(100_000, 1.05)), _ids(_zipf(100_000, 1.05)), None),
    "normal_mean": (
        "dense",
        lambda r, n: r.normal(0, 1, n),
        lambda r, n: r.normal(0.25, 1, n),
        "mean +0.25 sd",
    ),
    "lognormal_mean": (
        "dense",
        lambda r, n: r.lognormal(0, 0.75, n),
        lambda r, n: r.lognormal(0, 0.75, n) + 0.25 * _LOGNORMAL_SD,
        "mean +0.25 sd",
    ),
    "exponential_mean": (
        "dense",
        lambda r, n: r.exponential(1, n),
        lambda r, n: r.exponential(1, n) + 0.25,
        "mean +0.25 sd",
    ),
    "counts_mean": (
        "dense",
        lambda r, n: r.poisson(4, n),
        lambda r, n: r.poisson(4.5, n),
        "Poisson mean 4 -> 4.5 (+0.25 sd)",
    ),
    "normal_scale": (
        "dense",
        lambda r, n: r.normal(0, 1, n),
        lambda r, n: r.normal(0, 1.5, n),
        "sd x1.5",
    ),
    "uniform_scale": (
        "dense",
        lambda r, n: r.uniform(0, 10, n),
        lambda r, n: r.uniform(2, 8, n),
        "range x0.6 about its centre",
    ),
    "zero_inflated_share": (
        "dense",
        _zero_inflated(0.3),
        _zero_inflated(0.45),
        "zeros 30% -> 45%",
    ),
    "missing_values": (
        "dense",
        lambda r, n: r.normal(0, 1, n),
        _with_nulls(0.1, lambda r, n: r.normal(0, 1, n)),
        "10% missing",
    ),
    "reordered_ids": (
        "categorical",
        _ids(_zipf(50)),
        _ids(_REVERSED),
        "the top 10 ids' shares reversed",
    ),
    "new_ids": (
        "categorical",
        _ids(np.full(20, 0.05)),
        _ids(_NEW_IDS, np.arange(40)),
        "20% of rows on 20 unseen ids",
    ),
    "one_share": (
        "categorical",
        _ids(np.full(10, 0.1)),
        _ids(_ONE_SHARE),
        "one id's share 10% -> 25%",
    ),
}


def _day(rng: np.random.Generator, rows: int, today: bool) -> pa.Table:
    """One synthetic day of the detection columns (a 2% CTR label, ids, the 20 features)."""
    columns: dict[str, Any] = {
        "example_id": pa.array(np.arange(rows), pa.int64()),
        "label": pa.array((rng.random(rows) < 0.02).astype(np.int8)),
    }
    for name, (kind, ref_draw, cur_draw, _) in DETECTION.items():
        values = (cur_draw if today else ref_draw)(rng, rows)
        if kind == "dense":
            columns[name] = pa.array(values.astype(np.float32), from_pandas=True)
        else:
            columns[name] = pa.array(values.astype(np.int64))
    return pa.table(columns)


def detection(cfg: Config, rows: int, seed: int = 7) -> dict[str, Any]:
    """The drift statistics of the gate on the synthetic pair of days (module docstring)."""
    vertical, ref_day, day = "feed", "2026-01-05", "2026-01-06"
    features = FeaturesConfig(
        verticals=(vertical,),
        features={name: FeatureConfig(kind=kind) for name, (kind, *_) in DETECTION.items()},
    )
    cfg = replace(cfg, features=features, checks=replace(cfg.checks, id_features=()))
    spec = FeatureSpec.from_config(features)
    lake = Lake.from_config(cfg.lake)
    rng = np.random.default_rng(seed)
    for ds, today in ((ref_day, False), (day, True)):
        lake.write_partition(IMPRESSIONS, {"ds": ds, "vertical": vertical}, _day(rng, rows, today))

    start = time.perf_counter()
    drift = Drift(lake, spec, cfg.checks, day, [ref_day])
    load_s = time.perf_counter() - start
    result = DayChecks(day, [ref_day], [vertical], inputs={})
    start, cpu = time.perf_counter(), time.process_time()
    drift_checks(drift, spec, cfg, [vertical, ALL], result)
    stats_s, cpu_s = time.perf_counter() - start, time.process_time() - cpu
    scan_s = _scan(drift)
    drift.close()

    # cpu_seconds: every thread's, DuckDB's included; other load on the machine barely moves it
    timed = against(
        stats_s,
        rows,
        SCAN,
        scan_s,
        digits=1,
        statistics=len(result.results),
        cpu_seconds=round(cpu_s, 3),
    )
    return {
        "rows": rows,
        "reference_rows": rows,
        "columns": len(DETECTION),
        "statistics": timed,
        "load_seconds": round(load_s, 3),
        **_caught(result, cfg),
        "goal": "the 11 changed columns flagged, 0 others; <= 6 s for the statistics on 2 cores",
    }


def _caught(result: DayChecks, cfg: Config) -> dict[str, Any]:
    """Which columns a drift statistic warned or failed on, against which truly changed."""
    changed = {name for name, (*_, how) in DETECTION.items() if how}
    flags: dict[str, dict[str, str]] = {}
    for r in result:
        if r.kind == "drift" and r.status != "pass":
            flags.setdefault(r.feature or "", {})[f"{r.check} [{r.scope}]"] = r.status
    values = {(r.check, r.feature): r.value for r in result if r.kind == "drift" and r.scope == ALL}
    statistics = ("psi", "js", "ks", "shift")
    return {
        "changed_columns": len(changed),
        "thresholds": {
            name: {"warn": getattr(cfg.checks, name).warn, "fail": getattr(cfg.checks, name).fail}
            for name in statistics
        },
        "flagged": sorted(flags),
        "true_positives": len(changed & set(flags)),
        "false_positives": len(set(flags) - changed),
        "missed": sorted(changed - set(flags)),
        "false_alarms": sorted(set(flags) - changed),
        "per_column": {
            name: {
                "kind": kind,
                "change": how,
                "flagged_by": flags.get(name, {}),
                **{s: values[s, name] for s in statistics if (s, name) in values},
            }
            for name, (kind, *_, how) in DETECTION.items()
        },
    }


def _scan(drift: Drift) -> float:
    """Seconds of one DuckDB pass over both days: count, nulls, min and max of every column."""
    columns = [
        c
        for c in drift.con.execute("SELECT * FROM cur LIMIT 0").fetchnumpy()
        if c not in ("ds", "vertical")
    ]
    aggregates = ", ".join(f'count("{c}"), min("{c}"), max("{c}")' for c in columns)
    start = time.perf_counter()
    for side in ("ref", "cur"):
        drift.con.execute(f"SELECT count(*), {aggregates} FROM {side}").fetchall()
    return time.perf_counter() - start


def main() -> None:
    cli = parser(__doc__, 1_000_000)
    cli.add_argument("--detection", action="store_true", help="also the detection section")
    cli.add_argument("--detection-rows", type=int, default=1_000_000, help="rows of each day")
    args = cli.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = world_config(args.rows, root=tmp)
        spec = FeatureSpec.from_config(cfg.features)
        lake = Lake.from_config(cfg.lake)
        world = World(cfg.world, spec)
        for table, _ in world.days(2):
            write_impressions(lake, spec, table, source="bench")
        ref_day, day = cfg.world.start_ds, "2026-01-06"
        rows = lake.read(IMPRESSIONS, ds=[day], columns=["label"]).num_rows

        start = time.perf_counter()
        drift = Drift(lake, spec, cfg.checks, day, [ref_day])
        result = DayChecks(day, [ref_day], list(spec.verticals), inputs={})
        drift_checks(drift, spec, cfg, [*spec.verticals, ALL], result)
        drift_s = time.perf_counter() - start
        scan_s = _scan(drift)
        drift.close()

        runner = SuiteRunner(spec, cfg.checks)
        partitions = [
            lake.read_partition(IMPRESSIONS, {"ds": day, "vertical": v}) for v in spec.verticals
        ]
        start = time.perf_counter()
        for v, t in zip(spec.verticals, partitions, strict=True):
            runner.run(t, v, Bands())
        suite_s = time.perf_counter() - start
        start = time.perf_counter()
        for t in partitions:
            for name in t.column_names:
                pc.count(t.column(name), mode="only_null").as_py()
            for name, (lo, hi) in cfg.checks.dense_ranges.items():
                bounds = pc.min_max(t.column(name)).as_py()
                if bounds["min"] is not None:  # all null where the vertical lacks the feature
                    assert lo <= bounds["min"] and bounds["max"] <= hi
            pc.all(pc.is_in(t.column("label"), value_set=pa.array([0, 1], pa.int8()))).as_py()
            assert len(pc.unique(t.column("example_id"))) == t.num_rows
        direct_s = time.perf_counter() - start
    found: dict[str, Any] = {}
    if args.detection:
        with tempfile.TemporaryDirectory() as tmp:
            found["detection"] = detection(world_config(args.rows, root=tmp), args.detection_rows)

    emit(
        {
            "benchmark": "checks",
            "rows": rows,
            "reference_rows": rows,
            "drift": against(
                drift_s,
                rows,
                SCAN,
                scan_s,
                digits=1,
                statistics=len(result.results),
            ),
            "suite": against(
                suite_s,
                rows,
                "the same checks with pyarrow.compute",
                direct_s,
                digits=1,
                partitions=len(partitions),
            ),
            **found,
        }
    )


if __name__ == "__main__":
    main()

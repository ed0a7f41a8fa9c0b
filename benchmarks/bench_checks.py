"""Cost of the daily checks on one simulated day of ~1M rows (and a reference day of the same
size), over every feature.

Prints one JSON object:
- drift: every drift statistic of the day (PSI, JS, KS, label shift, churn; per vertical and
  overall) in DuckDB, against the reference measured in the same run: one DuckDB pass computing
  count, null count, min and max of every column of both days (the floor of any scan).
- suite: the Great Expectations suite on each vertical's partition of the day, against the same
  checks (nulls, ranges, label set, unique ids) computed directly with pyarrow.compute.

    .venv/bin/python benchmarks/bench_checks.py [--rows 1000000]
"""

from __future__ import annotations

import tempfile
import time

import pyarrow as pa
import pyarrow.compute as pc
from harness import against, emit, parser, world_config

from data_checks.drift import ALL, Drift
from data_checks.gate import drift_checks
from data_checks.records import DayChecks
from data_checks.suite import Bands, SuiteRunner
from exfm.data.impressions import write_impressions
from exfm.data.schema import FeatureSpec
from exfm.data.world import World
from exfm.lake import IMPRESSIONS, Lake


def main() -> None:
    args = parser(__doc__, 1_000_000).parse_args()
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
        columns = [
            c
            for c in drift.con.execute("SELECT * FROM cur LIMIT 0").fetchnumpy()
            if c not in ("ds", "vertical")
        ]
        aggregates = ", ".join(f'count("{c}"), min("{c}"), max("{c}")' for c in columns)
        start = time.perf_counter()
        for side in ("ref", "cur"):
            drift.con.execute(f"SELECT count(*), {aggregates} FROM {side}").fetchall()
        scan_s = time.perf_counter() - start
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

    emit(
        {
            "benchmark": "checks",
            "rows": rows,
            "reference_rows": rows,
            "drift": against(
                drift_s,
                rows,
                "one DuckDB pass: count, nulls, min, max of every column",
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
        }
    )


if __name__ == "__main__":
    main()

"""Throughput of the simulated world and the lake: generating, writing and reading back ~1M rows.

Prints one JSON object. Each figure comes with a reference measured in the same run on the same
machine, so that ratios can be quoted:
- generate: World.step() at `--rows` impressions a day, against drawing 20 float64 uniforms per
  row with numpy (a floor for any vectorized simulator of that width);
- write: Lake.write_partition per (ds, vertical) with validation, against pyarrow.parquet
  writing the same table to one file (no validation, no atomic publish);
- read: Lake.read of the day, against pyarrow.parquet reading the reference file.
The issue's target is 1M rows generated in at most 15 s on 2 cores (`meets_target`).

    .venv/bin/python benchmarks/bench_world.py [--rows 1000000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from exfm.config import load_config
from exfm.data.impressions import split_partitions
from exfm.data.schema import FeatureSpec
from exfm.data.world import World
from exfm.lake import IMPRESSIONS, Lake

REPO = Path(__file__).resolve().parents[1]


def best_of(repeats: int, fn: Callable[[], object]) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    cfg = load_config(
        REPO / "params.yaml",
        [f"world.impressions_per_day={args.rows}", "world.weekly_traffic_amplitude=0"],
    )
    spec = FeatureSpec.from_config(cfg.features)

    def one_day() -> pa.Table:
        return World(cfg.world, spec).step()[0]

    World(cfg.world, spec).step()  # warm-up (imports, allocator)
    init_s, _ = best_of(args.repeats, lambda: World(cfg.world, spec))
    gen_s, table = best_of(args.repeats, one_day)
    gen_s -= init_s  # the day itself, without building the populations
    rows = table.num_rows
    rng = np.random.default_rng(0)
    ref_gen_s, _ = best_of(args.repeats, lambda: rng.random((rows, 20)))

    with tempfile.TemporaryDirectory() as tmp:
        lake = Lake(str(Path(tmp) / "lake"))

        def write() -> None:
            for ds, vertical, part in split_partitions(table, spec, "bench"):
                lake.write_partition(IMPRESSIONS, {"ds": ds, "vertical": vertical}, part)

        write_s, _ = best_of(args.repeats, write)
        ref_file = Path(tmp) / "ref.parquet"
        ref_write_s, _ = best_of(
            args.repeats, lambda: pq.write_table(table, ref_file, compression="zstd")
        )
        read_s, back = best_of(args.repeats, lambda: lake.read(IMPRESSIONS))
        ref_read_s, _ = best_of(args.repeats, lambda: pq.read_table(ref_file))
        assert back.num_rows == rows

    result = {
        "benchmark": "world",
        "rows": rows,
        "generate": {
            "seconds": round(gen_s, 3),
            "rows_per_s": round(rows / gen_s),
            "world_init_seconds": round(init_s, 3),
            "reference": "numpy: 20 uniforms per row",
            "reference_seconds": round(ref_gen_s, 3),
            "ratio_to_reference": round(gen_s / ref_gen_s, 2),
        },
        "write": {
            "seconds": round(write_s, 3),
            "rows_per_s": round(rows / write_s),
            "reference": "pyarrow.parquet.write_table, one file, no validation",
            "reference_seconds": round(ref_write_s, 3),
            "ratio_to_reference": round(write_s / ref_write_s, 2),
        },
        "read": {
            "seconds": round(read_s, 3),
            "rows_per_s": round(rows / read_s),
            "reference": "pyarrow.parquet.read_table of the reference file",
            "reference_seconds": round(ref_read_s, 3),
            "ratio_to_reference": round(read_s / ref_read_s, 2),
        },
        "target": "1M rows generated in <= 15 s",
        "meets_target": gen_s * 1_000_000 / rows <= 15.0,
        "machine": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "numpy": np.__version__,
            "pyarrow": pa.__version__,
        },
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

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

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from harness import against, emit, parser, world_config

from exfm.data.impressions import split_partitions
from exfm.data.schema import FeatureSpec
from exfm.data.world import World
from exfm.lake import IMPRESSIONS, Lake


def best_of(repeats: int, fn: Callable[[], object]) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    cli = parser(__doc__, 1_000_000)
    cli.add_argument("--repeats", type=int, default=3)
    args = cli.parse_args()

    cfg = world_config(args.rows)
    spec = FeatureSpec.from_config(cfg.features)

    def one_day() -> tuple[float, pa.Table]:
        """Seconds of the day itself (a fresh world's first step, its populations built
        untimed), and the day."""
        world = World(cfg.world, spec)
        start = time.perf_counter()
        day = world.step()[0]
        return time.perf_counter() - start, day

    World(cfg.world, spec).step()  # warm-up (imports, allocator)
    init_s, _ = best_of(args.repeats, lambda: World(cfg.world, spec))
    gen_s, table = min((one_day() for _ in range(args.repeats)), key=lambda run: run[0])
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

    emit(
        {
            "benchmark": "world",
            "rows": rows,
            "generate": against(
                gen_s,
                rows,
                "numpy: 20 uniforms per row",
                ref_gen_s,
                world_init_seconds=round(init_s, 3),
            ),
            "write": against(
                write_s, rows, "pyarrow.parquet.write_table, one file, no validation", ref_write_s
            ),
            "read": against(
                read_s, rows, "pyarrow.parquet.read_table of the reference file", ref_read_s
            ),
            "target": "1M rows generated in <= 15 s",
            "meets_target": gen_s * 1_000_000 / rows <= 15.0,
        }
    )


if __name__ == "__main__":
    main()

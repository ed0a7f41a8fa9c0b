"""What lineage costs on a default day: the share of each stage's time spent reading content ids,
comparing them and recording them (exfm/lineage.py), for the check, the DAS backfill and a VM's
training day, on the default world and models (params.yaml).

Every lineage entry point (content ids of partitions, footer metadata, the comparisons, the
snapshots' ids, the id reads around `read_with_ids`) is wrapped with a timer while the real stage
runs; nested calls are counted once. The reference is the stage itself, measured in the same run,
so the figure is a ratio: lineage seconds / stage seconds.

    .venv/bin/python benchmarks/bench_lineage.py [--days 3] [--repeat 3] [--set KEY=VALUE ...]

Prints one JSON object.
"""

from __future__ import annotations

import functools
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

from harness import REPO, emit, parser

import data_checks.drift
import data_checks.gate
import exfm.das
import exfm.evaluation
import exfm.lake
import exfm.lineage
import exfm.training
from exfm import stages
from exfm.config import load_config
from exfm.lake import Lake


class Timer:
    """Seconds spent inside the wrapped functions, outermost calls only."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.depth = 0

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            self.depth += 1
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.depth -= 1
                if self.depth == 0:
                    self.seconds += time.perf_counter() - start

        return timed


def instrument(timer: Timer) -> None:
    """Wrap every lineage entry point where the stages call it."""
    lake_cls = exfm.lake.Lake
    for name in ("content_id", "content_ids", "partition_metadata"):
        setattr(lake_cls, name, timer.wrap(getattr(lake_cls, name)))
    # read_with_ids = content ids + the read + content ids: only the id reads are lineage, and
    # they are the wrapped content_ids calls above; the read itself is the stage's work
    for module in (exfm.lineage, data_checks.gate, data_checks.drift, exfm.das, exfm.evaluation):
        for name in ("changes", "current_id", "partition_inputs", "inputs_metadata"):
            if hasattr(module, name):
                setattr(module, name, timer.wrap(getattr(module, name)))
    for name in ("check_inputs",):
        setattr(data_checks.gate, name, timer.wrap(getattr(data_checks.gate, name)))
    for name in ("_stale",):
        setattr(exfm.das, name, timer.wrap(getattr(exfm.das, name)))
    exfm.training.inputs_metadata = timer.wrap(exfm.training.inputs_metadata)


def measure(timer: Timer, run: Callable[[], Any], repeat: int) -> dict[str, float]:
    shares, totals, lineage = [], [], []
    for _ in range(repeat):
        timer.seconds = 0.0
        start = time.perf_counter()
        run()
        total = time.perf_counter() - start
        totals.append(total)
        lineage.append(timer.seconds)
        shares.append(timer.seconds / total)
    return {
        "stage_s": round(statistics.median(totals), 3),
        "lineage_s": round(statistics.median(lineage), 4),
        "share_pct": round(100 * statistics.median(shares), 3),
    }


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--days", type=int, default=3, help="days of the default world (>= 3)")
    cli.add_argument("--repeat", type=int, default=3)
    cli.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override params.yaml (repeatable), e.g. a smaller world for a smoke run",
    )
    args = cli.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(
            REPO / "params.yaml",
            [
                f"lake.root={tmp}/lake",
                f"lake.catalog={tmp}/c.duckdb",
                f"world.days={args.days}",
                *args.set,
            ],
        )
        lake = Lake.from_config(cfg.lake)
        days = [d["ds"] for d in stages.land_world(cfg)]
        for ds in days:
            stages.check(cfg, ds)
        for ds in days[:-1]:
            stages.train_fm(cfg, ds)
        day, vertical = days[-1], "search"
        stages.backfill_das(cfg, day)
        for ds in days[1:-1]:  # the VM's parent, so that its day evaluates before it trains
            stages.backfill_das(cfg, ds)
            stages.train_vm(cfg, ds, vertical)
        rows = lake.read(exfm.lake.IMPRESSIONS, ds=[day], columns=["label"]).num_rows

        timer = Timer()
        instrument(timer)
        emit(
            {
                "benchmark": "lineage_overhead",
                "day": day,
                "rows": rows,
                "check": measure(timer, lambda: stages.check(cfg, day), args.repeat),
                "das_backfill": measure(
                    timer, lambda: stages.backfill_das(cfg, day, force=True), args.repeat
                ),
                "vm_train": measure(
                    timer, lambda: stages.train_vm(cfg, day, vertical), args.repeat
                ),
            }
        )


if __name__ == "__main__":
    main()

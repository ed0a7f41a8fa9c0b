"""How long `dvc repro` takes when nothing changed (after `make run`): DVC hashes every stage's
code dependencies, params and records, and runs nothing. The reference, measured in the same run,
is `dvc --version` (DVC's own start-up), so the ratio says what the pipeline's size adds.

    make run && .venv/bin/python benchmarks/bench_dvc_noop.py [--repeat 3] [--project DIR]

Prints one JSON object; `ran` lists stages that were not up to date (then it was not a no-op:
run `make run` first).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from harness import REPO, emit, parser


def timed(command: list[str], cwd: Path) -> tuple[float, str]:
    env = {
        **os.environ,
        "DVC_NO_ANALYTICS": "1",
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
    }
    start = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed: {result.stderr[-2000:]}")
    return seconds, result.stdout


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--repeat", type=int, default=3)
    cli.add_argument("--project", type=Path, default=REPO)
    args = cli.parse_args()
    dvc = str(Path(sys.executable).parent / "dvc")
    repro, startup, ran = [], [], set()
    for _ in range(args.repeat):
        seconds, out = timed([dvc, "repro"], args.project)
        repro.append(seconds)
        ran |= {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")}
        startup.append(timed([dvc, "--version"], args.project)[0])
    noop, ref = statistics.median(repro), statistics.median(startup)
    emit(
        {
            "benchmark": "dvc_repro_noop",
            "noop_repro_s": round(noop, 2),
            "dvc_startup_s": round(ref, 2),
            "ratio_to_startup": round(noop / ref, 2),
            "ran": sorted(ran),
        }
    )


if __name__ == "__main__":
    main()

"""`make test`'s runner: the whole suite as two pytest processes at once, each with its own part.

The suite spends about half of its time waiting (Airflow's schedulers and workers, services
starting, subprocesses' imports) and trains with one torch thread per process (train.threads),
so one pytest process keeps about one of two cores busy. Two processes, one with the heaviest
local training (`dvc repro` of both pipelines, the unit tier, the CLI's evaluation) and one with
everything else (the Airflow, stack, CLI and integration tiers), finish in about the time of the
longer one. Tests marked `bench` (a benchmark run whole) are `make test-bench`'s, not these.

Each shard's output comes line by line with its name in front, and its summary whole at its end;
the exit status is the first non-zero one of the shards (0 when both passed). Ctrl-C reaches both
pytest processes (they are in the terminal's process group) and the runner waits for them to
stop. Tests are written to be independent of each other and of the order they run in: each
starts what it needs on free ports and in its own temporary folders.

    python -m tests.shards [PYTEST_ARGS...]   # arguments go to both shards (--durations=30, -x)
    python -m tests.shards --list             # which test files each shard runs
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# the heaviest local training (`dvc repro` of both pipelines) and the unit tier, with the CLI's
# evaluation file: about half of the suite's time (`make test PYTEST_ARGS=--durations=0` gives
# each test's); the rest of tests/ is the other shard, so a new test file lands there unless named
# here
COMPUTE = [
    "tests/cli/test_evaluation_cli.py",
    "tests/e2e/test_experiments.py",
    "tests/e2e/test_dvc_pipeline.py",
    "tests/e2e/test_dvc_lock.py",
    "tests/integration/test_das_robustness.py",
    "tests/unit",
]

# what `make test` leaves to `make test-bench`: a benchmark run whole (the stack benchmark starts
# two production stacks one after the other, about 5 minutes of both cores)
NOT_IN_MAKE_TEST = ["-m", "not bench"]


def shards() -> dict[str, list[str]]:
    """Each shard's pytest arguments that choose its tests."""
    missing = [p for p in COMPUTE if not (REPO / p).exists()]
    if missing:
        raise SystemExit(f"tests/shards.py names tests that do not exist: {missing}")
    return {
        "compute": [*COMPUTE, *NOT_IN_MAKE_TEST],
        "services": ["tests", *(f"--ignore={p}" for p in COMPUTE), *NOT_IN_MAKE_TEST],
    }


def _relay(name: str, proc: subprocess.Popen, lock: threading.Lock) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        with lock:
            sys.stdout.write(f"[{name}] {line}")
            sys.stdout.flush()


def run(args: list[str], parts: dict[str, list[str]] | None = None) -> int:
    """Run the shards (`parts`, default shards()) at once with `args`; the first failure's exit
    status, 130 after Ctrl-C."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    lock = threading.Lock()
    procs: dict[str, subprocess.Popen] = {}
    relays = []
    started = time.monotonic()
    for name, chosen in (parts or shards()).items():
        cmd = [sys.executable, "-m", "pytest", *chosen, *args]
        print(f"[{name}] {' '.join(cmd[1:])}", flush=True)
        proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
        procs[name] = proc
        relay = threading.Thread(target=_relay, args=(name, proc, lock), daemon=True)
        relay.start()
        relays.append(relay)
    try:
        codes = {name: proc.wait() for name, proc in procs.items()}
    except KeyboardInterrupt:
        # the terminal's SIGINT reached the shards too: they stop their tests and report
        for proc in procs.values():
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        return 130
    for relay in relays:
        relay.join()
    took = time.monotonic() - started
    summary = ", ".join(f"{name} exit {code}" for name, code in codes.items())
    print(f"shards: {summary} in {took:.0f} s", flush=True)
    return next((code for code in codes.values() if code != 0), 0)


def main(argv: list[str]) -> int:
    if argv == ["--list"]:
        for name, chosen in shards().items():
            print(f"{name}: {' '.join(chosen)}")
        return 0
    return run(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""The production stack under load: N demo days through `make stack` against `make airflow`.

Both run the same demo (N simulated days, the fan-out over the 4 verticals, the lake on an S3
endpoint) from nothing, started as a user starts them: `docker/stack.py` (the CeleryExecutor on
PostgreSQL and Redis, a default worker of 4 slots and two torch workers of 1) and `make airflow`
(the LocalExecutor on its own metadata database, 4 slots; the S3 endpoint is the stack's own S3
process, started beside it). The user unpauses the four DAGs through the REST API; the FM DAG
catches up over the days one at a time and the Assets start the rest (exfm_data_quality runs
--max-active-runs days at once, the only DAG whose days are independent). Measured, for each:

- wall_s: from the unpause to the last run's end (every FM day, every VM of every day after the
  first, no run left queued or running); ready_s: from the start to a logged-in API;
- queued_s: per task instance, from queued to started (the executor's pickup, broker included),
  as total, mean, p95 and max, and the same for the torch tasks alone;
- peak memory (PSS, sampled every --sample-s s: shared pages split among the processes sharing
  them, so the sum is what they take): of the processes that run tasks (the Celery workers'
  trees; the LocalExecutor: the scheduler's child processes) and of everything the command
  started (PostgreSQL, Redis and S3 included).

The ratios are stack / make airflow. The days, rows and DAG runs are the same in both, and the
benchmark checks it: every run succeeded, and both trained the same VMs.

    python benchmarks/bench_stack.py --days 14        # about 18 minutes on 2 cores
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
from harness import REPO, emit, parser

LOOPBACK = "127.0.0.1"
DAGS = ["exfm_das_backfill", "exfm_data_quality", "exfm_vm_finetune", "exfm_fm_daily"]
TORCH_TASKS = {"train_fm", "score", "train_vm"}
# the demo as tests/conftest.py's airflow_demo_params has it: a small world, small models, the
# lake on the S3 endpoint, the torch tasks on the torch queue (the LocalExecutor ignores queues)
PARAMS = """
world: {{days: {days}, impressions_per_day: {rows}, n_users: 2000, n_ads: 300, n_advertisers: 40,
        n_contexts: 100}}
fm: {{embedding_dim: 8, vertical_dim: 4, cross_layers: 1, deep_layers: [32, 16]}}
vm: {{embedding_dim: 4, hidden: [16, 8], aux_hidden: 4, max_hash_buckets: 512}}
publish: {{max_ne: 100}}
lake: {{root: s3://exfm/lake}}
airflow: {{schedule: "@daily", retries: 3, retry_delay_s: 5, max_active_runs: {runs},
          torch_queue: torch, pool_slots: 2}}
pipeline: {{compare_baseline: {baseline}}}
"""
VERTICALS = 4  # each trains its variant (and with --baseline the baseline VM beside it)


class BenchError(RuntimeError):
    """A run that cannot be measured (a failed DAG run, a command that exited, a timeout)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def free_ports(n: int) -> int:
    """A port whose next n - 1 are free too."""
    for _ in range(100):
        base = free_port()
        if base + n <= 65535 and all(_free(base + i) for i in range(n)):
            return base
    raise BenchError(f"no {n} consecutive free ports on {LOOPBACK}")


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


class Api:
    """Airflow's REST API with a Bearer token."""

    def __init__(self, base: str) -> None:
        self.base, self.token = base, ""

    def call(self, method: str, path: str, body: dict | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read() or b"null")

    def pages(self, path: str, key: str) -> list[dict]:
        out: list[dict] = []
        while True:
            sep = "&" if "?" in path else "?"
            page = self.call("GET", f"{path}{sep}limit=100&offset={len(out)}")
            out += page[key]
            if not page[key] or len(out) >= page["total_entries"]:
                return out

    def runs(self, dag_id: str) -> list[dict]:
        return self.pages(f"/api/v2/dags/{dag_id}/dagRuns", "dag_runs")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        run = urllib.parse.quote(run_id, safe="")
        return self.pages(f"/api/v2/dags/{dag_id}/dagRuns/{run}/taskInstances", "task_instances")


def wait(what: str, probe: Callable[[], Any], timeout: float, every: float = 1.0) -> Any:
    """probe() until it returns something true; connection errors count as not yet."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
            if last:
                return last
        except (urllib.error.URLError, OSError, KeyError, ValueError) as e:
            last = e
        time.sleep(every)
    raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}; last: {last}")


@dataclass
class Started:
    """A started command (its own session and process group, as a terminal's job)."""

    name: str
    proc: subprocess.Popen
    output: Path
    api: Api
    workers: Callable[[], list[psutil.Process]]
    peak: dict[str, float] = field(default_factory=lambda: {"workers": 0.0, "all": 0.0})
    beside: list[subprocess.Popen] = field(
        default_factory=list
    )  # started for it (make airflow's S3)

    def tree(self) -> list[psutil.Process]:
        out: list[psutil.Process] = []
        for pid in (self.proc.pid, *(p.pid for p in self.beside)):
            with contextlib.suppress(psutil.Error):
                root = psutil.Process(pid)
                out += [root, *root.children(recursive=True)]
        return out

    def tail(self, lines: int = 25) -> str:
        text = self.output.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def alive(self) -> None:
        if self.proc.poll() is not None:
            raise BenchError(f"{self.name} exited ({self.proc.returncode}):\n{self.tail()}")


def pss_mb(processes: list[psutil.Process]) -> float:
    total = 0
    for p in processes:
        with contextlib.suppress(psutil.Error):
            info = p.memory_full_info()
            total += getattr(info, "pss", info.rss)
    return total / 2**20


@contextlib.contextmanager
def sampling(started: Started, every: float) -> Iterator[None]:
    """Peak memory of the task processes and of everything, sampled in a thread."""
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(every):
            started.peak["workers"] = max(started.peak["workers"], pss_mb(started.workers()))
            started.peak["all"] = max(started.peak["all"], pss_mb(started.tree()))

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def ctrl_c(started: Started, timeout: float = 180) -> None:
    """SIGINT to the command's process group, as a terminal's Ctrl-C; what is left of it, and
    what was started beside it, is killed."""
    seen = started.tree()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(started.proc.pid, signal.SIGINT)
    with contextlib.suppress(subprocess.TimeoutExpired):
        started.proc.wait(timeout=timeout)
    for p in seen:
        with contextlib.suppress(psutil.Error):
            p.kill()
    for proc in (started.proc, *started.beside):
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def _env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("AIRFLOW__CORE__UNIT_TEST_MODE", None)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


# a process whose SIGINT is the default (a benchmark started in the background inherits it
# ignored, which no handler of the command could undo); it becomes the command
DEFAULT_SIGINT = [
    sys.executable,
    "-c",
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.argv[1], sys.argv[1:])",
]


def _ready(started: Started, what: str, password: Callable[[], str | None]) -> str:
    """The admin password once the command printed it; a command that never gets there is
    stopped before the error propagates."""
    try:
        return wait(f"{what} to be ready", password, 600)
    except BaseException:
        ctrl_c(started)
        raise


def start_stack(home: Path, params: Path) -> tuple[Started, str]:
    """docker/stack.py, as `make stack` runs it; returns once it printed that it is ready."""
    port, base = free_port(), free_ports(5)
    output = home / "stack.out"
    argv = [sys.executable, str(REPO / "docker" / "stack.py"), "--home", str(home / "stack")]
    argv += ["--params", str(params), "--port", str(port), "--base-port", str(base)]
    with open(output, "w") as out:
        proc = subprocess.Popen(
            [*DEFAULT_SIGINT, *argv],
            cwd=REPO,
            env=_env(home),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    pids = home / "stack" / "state" / "pids.json"

    def workers() -> list[psutil.Process]:
        out: list[psutil.Process] = []
        with contextlib.suppress(OSError, ValueError):
            for name, pid in json.loads(pids.read_text()).items():
                if name.startswith("worker"):
                    with contextlib.suppress(psutil.Error):
                        root = psutil.Process(pid)
                        out += [root, *root.children(recursive=True)]
        return out

    started = Started("make stack", proc, output, Api(f"http://{LOOPBACK}:{port}"), workers)

    def ready() -> str | None:
        started.alive()
        found = re.search(r"login admin / (\S+)", output.read_text(errors="replace"))
        return found[1] if found else None

    return started, _ready(started, "the stack", ready)


def start_local(home: Path, params: Path) -> tuple[Started, str]:
    """`make airflow` with the lake on the stack's S3 process (started here, beside it)."""
    make = shutil.which("make")
    if make is None:
        raise BenchError("make is not installed")
    s3_port, port = free_port(), free_port()
    credentials = home / "s3-lake-user.json"
    s3_log = open(home / "s3.out", "w")  # noqa: SIM115 (closed with the process)
    s3 = subprocess.Popen(
        [
            *(sys.executable, str(REPO / "docker" / "stack.py"), "s3", "--port", str(s3_port)),
            *("--bucket", "exfm", "--credentials", str(credentials)),
        ],
        cwd=REPO,
        env=_env(home),
        stdout=s3_log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    s3_log.close()
    try:
        wait("the S3 endpoint", lambda: s3.poll() is None and credentials.exists(), 120, 0.5)
    except BaseException:
        s3.kill()
        s3.wait()
        raise
    key = json.loads(credentials.read_text())
    env = {
        **_env(home),
        "AIRFLOW_HOME": str(home / "airflow"),
        "AIRFLOW_PORT": str(port),
        "EXFM_PARAMS": str(params),
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        "AWS_ENDPOINT_URL": f"http://{LOOPBACK}:{s3_port}",
        "AWS_ACCESS_KEY_ID": key["access_key"],
        "AWS_SECRET_ACCESS_KEY": key["secret_key"],
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        env.pop(name, None)
    output = home / "airflow.out"
    with open(output, "w") as out:
        proc = subprocess.Popen(
            [*DEFAULT_SIGINT, make, "--no-print-directory", "-s", "-o", "setup", "airflow"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def workers() -> list[psutil.Process]:
        # the LocalExecutor's workers and their tasks: the scheduler's child processes
        def scheduler(p: psutil.Process) -> bool:
            argv = p.cmdline()
            return len(argv) > 2 and Path(argv[1]).name == "airflow" and argv[2] == "scheduler"

        for p in started.tree():
            with contextlib.suppress(psutil.Error):
                if scheduler(p) and not scheduler(p.parent()):
                    return p.children(recursive=True)
        return []

    started = Started("make airflow", proc, output, Api(f"http://{LOOPBACK}:{port}"), workers)
    started.beside.append(s3)

    def ready() -> str | None:
        started.alive()
        found = re.search(r"Airflow login: admin / (\S+)", output.read_text(errors="replace"))
        return found[1] if found else None

    return started, _ready(started, "make airflow", ready)


def login(api: Api, password: str) -> None:
    def token() -> str:
        return api.call("POST", "/auth/token", {"username": "admin", "password": password})[
            "access_token"
        ]

    api.token = wait("a login", token, 300)


def run_days(started: Started, days: int, timeout: float, poll_s: float) -> dict[str, Any]:
    """Unpause the DAGs; poll until every day is done; the runs' task instances."""
    api = started.api
    wait("the four DAGs", lambda: api.call("GET", "/api/v2/dags")["total_entries"] == 4, 300)
    t0 = time.monotonic()
    for dag_id in DAGS:  # the FM DAG last: its catch-up starts the chain
        api.call("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
    done_tis: dict[tuple[str, str], list[dict]] = {}

    def finished() -> bool:
        started.alive()
        runs = {d: api.runs(d) for d in DAGS}
        failed = [(d, r["dag_run_id"]) for d in DAGS for r in runs[d] if r["state"] == "failed"]
        if failed:
            raise BenchError(f"failed runs: {failed}\n{started.tail()}")
        fm = [r for r in runs["exfm_fm_daily"] if r["state"] == "success"]
        if len(fm) < days or any(
            r["state"] in ("queued", "running") for d in DAGS for r in runs[d]
        ):
            return False
        for d in DAGS:
            for r in runs[d]:
                if (d, r["dag_run_id"]) not in done_tis:
                    done_tis[d, r["dag_run_id"]] = api.task_instances(d, r["dag_run_id"])
        trained = [
            t
            for (d, _), tis in done_tis.items()
            if d == "exfm_vm_finetune"
            for t in tis
            if t["task_id"] == "train_vm" and t["state"] == "success"
        ]
        return len(trained) >= VERTICALS * (days - 1)

    try:
        wait(f"{days} days through {started.name}", finished, timeout, poll_s)
    except BenchError as e:
        raise BenchError(f"{e}\n{started.tail()}") from None
    wall = time.monotonic() - t0
    return {"wall_s": wall, "task_instances": done_tis}


def _seconds(a: str | None, b: str | None) -> float | None:
    if not a or not b:
        return None
    return (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds()


def _stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    return {
        "n": len(ordered),
        "total_s": round(sum(ordered), 1),
        "mean_s": round(sum(ordered) / len(ordered), 3),
        "p95_s": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 2),
        "max_s": round(ordered[-1], 2),
    }


def summarize(result: dict[str, Any], started: Started, ready_s: float) -> dict[str, Any]:
    tis = [t for ts in result["task_instances"].values() for t in ts]
    executed = [t for t in tis if t["state"] == "success"]
    queued = [(t, _seconds(t.get("queued_when"), t.get("start_date"))) for t in executed]
    runs = Counter(dag_id for dag_id, _ in result["task_instances"])
    return {
        "ready_s": round(ready_s, 1),
        "wall_s": round(result["wall_s"], 1),
        "dag_runs": dict(sorted(runs.items())),
        "tasks_succeeded": len(executed),
        "tasks_retried": sum(1 for t in executed if t.get("try_number", 1) > 1),
        "vms_trained": sum(1 for t in executed if t["task_id"] == "train_vm"),
        "queued": _stats([s for _, s in queued if s is not None]),
        "queued_torch": _stats(
            [s for t, s in queued if s is not None and t["task_id"] in TORCH_TASKS]
        ),
        "peak_pss_mb": {k: round(v, 1) for k, v in started.peak.items()},
    }


def measure(
    name: str,
    start: Callable[[Path, Path], tuple[Started, str]],
    args: Any,
) -> dict[str, Any]:
    # PostgreSQL runs as the `postgres` user when this runs as root: its folders must be
    # reachable, which a 0700 temporary folder is not
    home = Path(tempfile.mkdtemp(prefix=f"exfm-bench-{name}-", dir="/tmp"))
    home.chmod(0o711)
    params = home / "params.yaml"
    params.write_text(
        PARAMS.format(
            days=args.days,
            rows=args.rows,
            runs=args.max_active_runs,
            baseline=str(args.baseline).lower(),
        )
    )
    print(f"bench_stack: {name}: starting ({home})", file=sys.stderr, flush=True)
    t0 = time.monotonic()
    started, password = start(home, params)
    try:
        login(started.api, password)
        ready_s = time.monotonic() - t0
        print(f"bench_stack: {name}: ready in {ready_s:.0f} s", file=sys.stderr, flush=True)
        with sampling(started, args.sample_s):
            result = run_days(started, args.days, args.timeout_s, args.poll_s)
        out = summarize(result, started, ready_s)
        print(f"bench_stack: {name}: {json.dumps(out)}", file=sys.stderr, flush=True)
        return out
    finally:
        ctrl_c(started)
        if args.keep:
            print(f"bench_stack: {name}: kept {home}", file=sys.stderr)
        else:
            shutil.rmtree(home, ignore_errors=True)


def main() -> int:
    p = parser(__doc__)
    p.add_argument("--days", type=int, default=14, help="demo days (default 14)")
    p.add_argument("--rows", type=int, default=4000, help="impressions a day (default 4000)")
    p.add_argument(
        "--max-active-runs",
        type=int,
        default=4,
        help="airflow.max_active_runs: exfm_data_quality's days at once (default 4)",
    )
    p.add_argument("--baseline", action="store_true", help="the baseline VM beside each variant")
    p.add_argument("--timeout-s", type=float, default=3600.0, help="per command (default 3600)")
    p.add_argument("--poll-s", type=float, default=5.0, help="REST polling interval (default 5)")
    p.add_argument("--sample-s", type=float, default=1.0, help="memory sampling (default 1)")
    p.add_argument("--keep", action="store_true", help="keep each home (logs, task logs)")
    args = p.parse_args()
    if args.days < 2:
        p.error("--days must be at least 2 (the first day has no FM before it to distill from)")
    try:
        stack = measure("stack", start_stack, args)
        local = measure("local", start_local, args)
    except BenchError as e:
        print(f"bench_stack: error: {e}", file=sys.stderr)
        return 1
    if stack["vms_trained"] != local["vms_trained"]:
        print(
            f"bench_stack: error: the stack trained {stack['vms_trained']} VMs, make airflow "
            f"{local['vms_trained']}",
            file=sys.stderr,
        )
        return 1

    def ratio(a: float | None, b: float | None) -> float | None:
        return round(a / b, 2) if a and b else None

    emit(
        {
            "benchmark": "stack",
            "days": args.days,
            "rows_per_day": args.rows,
            "verticals": VERTICALS,
            "max_active_runs": args.max_active_runs,
            "stack": stack,
            "reference": "make airflow (LocalExecutor), the same days",
            "local": local,
            "ratio_to_reference": {
                "wall": ratio(stack["wall_s"], local["wall_s"]),
                "queued_mean": ratio(stack["queued"].get("mean_s"), local["queued"].get("mean_s")),
                "queued_torch_mean": ratio(
                    stack["queued_torch"].get("mean_s"), local["queued_torch"].get("mean_s")
                ),
                "workers_peak_pss": ratio(
                    stack["peak_pss_mb"]["workers"], local["peak_pss_mb"]["workers"]
                ),
                "all_peak_pss": ratio(stack["peak_pss_mb"]["all"], local["peak_pss_mb"]["all"]),
            },
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

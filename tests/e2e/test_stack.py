"""End to end through the production stack as `make stack` starts it (docker/stack.py), from
nothing: a private PostgreSQL cluster, Redis, the S3 endpoint with the lake user (moto's server for
MinIO), Airflow with the CeleryExecutor, a default worker and two torch workers, all on 127.0.0.1.

Through the REST API the user unpauses the four DAGs on a 3-day demo world (lake on S3): the FM
DAG lands, checks and trains each day; the Assets start the DAS backfills of the days after the
first (which has no FM before it), the VM fan-out over the 4 verticals, the pipeline report and
the data-quality reports. While
that runs, four faults, each at the moment it hurts most:
- PostgreSQL is stopped (fast shutdown) while the first day's `check` runs; the supervisor starts
  it again, the scheduler and workers reconnect, the run completes;
- the torch worker running the second day's `train_fm` is killed (SIGKILL to its session); the
  scheduler fails the orphaned try after the heartbeat timeout and the retry runs on a live worker;
  the registry holds one FM snapshot for the day, and it loads (its content id checks);
- the S3 endpoint goes down for 20 s (SIGUSR1) while the DAS `score` task runs; the task fails and
  is retried with back-off, and the DAS partition of the day is whole (as many rows as the day's
  impressions; nothing partial is listed);
- Redis is stopped (SIGTERM) while a VM task is queued and started again; no task is lost (every
  run succeeds with no retry) and none runs twice (each try was executed by exactly one worker).
  The torch pool has a third slot here for the two torch workers (-c 1 each): while both train,
  a third torch task waits in Redis's queue for the length of a training, not for the instant
  between the scheduler sending it and a free worker taking it (which polling can miss).
Both torch workers ran some of the torch tasks. Ctrl-C (SIGINT to the launcher's process group, as
a terminal sends it) stops everything: no process of the stack is left."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psutil
import pytest

from exfm.config import load_config
from exfm.data.schema import FeatureSpec
from exfm.lake import DAS, IMPRESSIONS, Lake
from exfm.registry import Registry
from tests.conftest import REPO, airflow_demo_params, free_port, free_ports
from tests.e2e import airflow_process as af

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

DAYS = ["2026-01-05", "2026-01-06", "2026-01-07"]
VERTICALS = 4
DAGS = ["exfm_das_backfill", "exfm_data_quality", "exfm_vm_finetune", "exfm_fm_daily"]
EXECUTED = re.compile(
    r"Executing workload in Celery: .*?log_path='dag_id=(?P<dag>[^/]+)/run_id=(?P<run>[^/]+)/"
    r"task_id=(?P<task>[^/]+)/(?:map_index=(?P<map>\d+)/)?attempt=(?P<try>\d+)\.log'"
)


def stack_params() -> str:
    """The 3-day demo (airflow_demo_params) with the lake on the stack's S3, the torch tasks on the
    torch queue, a pool slot more than the torch workers (a torch task waits queued in Redis while
    both train), and retries enough to outlast a 20 s outage (5, 10, 20 s)."""
    params = airflow_demo_params(retry_delay_s=5, days=len(DAYS))
    params = params.replace(
        "lake: {root: lake, catalog: exfm.duckdb}", "lake: {root: s3://exfm/lake}"
    )
    assert "retries: 1, " in params
    return params.replace("airflow: {", "airflow: {torch_queue: torch, pool_slots: 3, ").replace(
        "retries: 1, ", "retries: 3, "
    )


@dataclass
class Stack:
    proc: subprocess.Popen
    home: Path
    output: Path
    api: af.Api
    s3_port: int
    seen: set[psutil.Process] = field(default_factory=set)

    def pids(self) -> dict[str, int]:
        return json.loads((self.home / "state" / "pids.json").read_text())

    def log(self, name: str) -> str:
        return (self.home / "logs" / f"{name}.log").read_text(errors="replace")

    def note(self) -> None:
        self.seen.update(af.descendants(self.proc))

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.output.read_text(errors="replace").splitlines()[-lines:])

    def executions(self) -> list[tuple[str, tuple[str, str, str, int, int]]]:
        """(worker, (dag, run, task, map index, try)) for each try a worker executed."""
        out = []
        for path in sorted((self.home / "logs").glob("worker*.log")):
            for m in EXECUTED.finditer(path.read_text(errors="replace")):
                key = (m["dag"], m["run"], m["task"], int(m["map"] or -1), int(m["try"]))
                out.append((path.stem, key))
        return out


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    # PostgreSQL runs as the `postgres` user when the tests run as root: its folder must be
    # reachable, which pytest's tmp_path (0700 parents) is not
    home = Path(tempfile.mkdtemp(prefix="exfm-stack-", dir="/tmp"))
    home.chmod(0o711)
    params = tmp_path / "params.yaml"
    params.write_text(stack_params())
    port = free_port()
    env = {
        **os.environ,
        # quicker than production: a dead worker's task is failed after 20 s without heartbeat
        # (60 s in docker/stack.env), DAG files are parsed every 5 s
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
    }
    env.pop("AIRFLOW__CORE__UNIT_TEST_MODE", None)
    output = tmp_path / "stack.out"
    argv = [sys.executable, str(REPO / "docker" / "stack.py"), "--home", str(home)]
    base = free_ports(5)  # PostgreSQL, Redis, S3, the two log servers
    argv += ["--params", str(params), "--port", str(port), "--base-port", str(base)]
    with open(output, "w") as out:
        # its own session and process group, led by the launcher: what a terminal's Ctrl-C signals
        proc = subprocess.Popen(
            [*af.WITH_DEFAULT_SIGINT, *argv],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    handle = Stack(proc, home, output, af.Api(f"http://{af.LOOPBACK}:{port}"), base + 2)
    try:
        deadline = time.monotonic() + 420
        while "stack: ready" not in output.read_text():
            handle.note()
            assert proc.poll() is None, f"the stack exited ({proc.returncode}):\n{handle.tail()}"
            assert time.monotonic() < deadline, f"the stack is not ready:\n{handle.tail()}"
            time.sleep(1)
        yield handle
    finally:
        try:
            _ctrl_c(handle)
        finally:
            # the processes' output and the task logs stay with the test's tmp_path
            for src, dst in ((home / "logs", "stack-logs"), (home / "state/airflow/logs", "tasks")):
                with contextlib.suppress(OSError):
                    shutil.copytree(src, tmp_path / dst)
            shutil.rmtree(home, ignore_errors=True)


def _ctrl_c(stack: Stack) -> None:
    """SIGINT to the launcher's process group; every process the stack ever had must be gone."""
    stack.note()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(stack.proc.pid, signal.SIGINT)
    with contextlib.suppress(subprocess.TimeoutExpired):
        stack.proc.wait(timeout=120)
    left = af.alive(stack.seen)
    described = [af._describe(p) for p in left]
    for p in left:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    if stack.proc.poll() is None:
        stack.proc.kill()
    assert not left, f"{len(left)} processes left after Ctrl-C: {described}\n{stack.tail()}"
    assert stack.proc.returncode == 130, stack.tail()
    assert "stack: stopped" in stack.output.read_text()


def _kill_session(pid: int) -> None:
    for p in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if os.getsid(p.pid) == pid:
                p.kill()


class Faults:
    """Each fault fires once, when its moment comes (`when` is polled with every run's TIs)."""

    def __init__(self, stack: Stack) -> None:
        self.stack, self.fired, self.tried, self.hits = stack, {}, set(), {}

    def maybe(self, name: str, when: Callable[[], Any], act: Callable[[Any], None]) -> None:
        if name in self.fired:
            return
        hit = when()
        if hit:
            act(hit)
            self.fired[name], self.hits[name] = time.monotonic(), hit


def _running(tis: list[dict], task: str, state: str = "running") -> list[dict]:
    return [t for t in tis if t["task_id"] == task and t["state"] == state]


def _returned(api: af.Api, dag_id: str, run_id: str, task_id: str) -> Any:
    path = f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}"
    value = api.call("GET", f"{path}/taskInstances/{task_id}/xcomEntries/return_value")["value"]
    return json.loads(value) if isinstance(value, str) else value


def _planned(api: af.Api, run: dict) -> int:
    return len(_returned(api, "exfm_vm_finetune", run["dag_run_id"], "plan"))


def test_the_stack_runs_the_demo_through_four_faults(stack: Stack, monkeypatch: Any) -> None:
    out = stack.output.read_text()
    password = re.search(r"login admin / (\S+)", out)[1]  # type: ignore[index]
    api = stack.api
    api.login(password)
    api.wait("the four DAGs", lambda: len(api.call("GET", "/api/v2/dags")["dags"]) == 4, 180)
    for dag_id in DAGS:  # the FM DAG last: its catch-up starts the chain
        api.call("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})

    faults = Faults(stack)
    tis: dict[str, list[dict]] = {}
    runs: dict[str, list[dict]] = {}

    def fm_run(day: str) -> str | None:
        return next(
            (
                r["dag_run_id"]
                for r in runs.get("exfm_fm_daily", [])
                if r["logical_date"][:10] == day
            ),
            None,
        )

    def fm_done(day: str) -> bool:
        run = fm_run(day)
        return any(
            r["dag_run_id"] == run and r["state"] == "success" for r in runs["exfm_fm_daily"]
        )

    def fm_tis(day: str) -> list[dict]:
        run = fm_run(day)
        return [t for t in tis.get("exfm_fm_daily", []) if t.get("dag_run_id") == run]

    def kill_train_fm(ti: dict) -> None:
        # the torch worker whose log shows it executing this try: killed with its whole session
        run = ti["dag_run_id"]
        for name, pid in stack.pids().items():
            if name.startswith("worker-torch") and (
                f"run_id={run}/task_id=train_fm/attempt={ti['try_number']}.log" in stack.log(name)
            ):
                _kill_session(pid)
                faults.tried.add(name)
                return
        raise AssertionError(f"no torch worker's log shows train_fm of {run}")

    def refresh() -> bool:
        stack.note()
        assert stack.proc.poll() is None, f"the stack exited:\n{stack.tail()}"
        for dag_id in DAGS:
            runs[dag_id] = api.runs(dag_id)
            tis[dag_id] = [
                {**t, "dag_run_id": r["dag_run_id"]}
                for r in runs[dag_id]
                for t in api.task_instances(dag_id, r["dag_run_id"])
            ]
            failed = [r["dag_run_id"] for r in runs[dag_id] if r["state"] == "failed"]
            assert not failed, f"{dag_id} failed: {failed}\n{stack.tail()}"
        faults.maybe(
            "postgres",
            lambda: _running(fm_tis(DAYS[0]), "check"),
            lambda _: os.kill(stack.pids()["postgres"], signal.SIGINT),
        )
        faults.maybe(
            "worker",
            lambda: (_running(fm_tis(DAYS[1]), "train_fm") or [None])[0],
            kill_train_fm,
        )
        faults.maybe(  # a backfill that scores: not the first day's alone (no FM can score it)
            "s3",
            lambda: (
                fm_done(DAYS[0])
                and [
                    t
                    for t in _running(tis["exfm_das_backfill"], "score")
                    if set(_returned(api, "exfm_das_backfill", t["dag_run_id"], "days")) - {DAYS[0]}
                ]
            ),
            lambda _: os.kill(stack.pids()["s3"], signal.SIGUSR1),
        )
        faults.maybe(
            "redis",
            lambda: _running(tis["exfm_vm_finetune"], "train_vm", "queued"),
            lambda _: os.kill(stack.pids()["redis"], signal.SIGTERM),
        )
        finished = [r for r in runs["exfm_fm_daily"] if r["state"] == "success"]
        vms = _running(tis["exfm_vm_finetune"], "train_vm", "success")
        return (
            len(finished) == len(DAYS)
            and len(vms) == VERTICALS * len(DAYS[1:])
            and not any(r["state"] in ("queued", "running") for rs in runs.values() for r in rs)
        )

    api.wait("the 3-day demo through the faults", refresh, 1100)
    assert set(faults.fired) == {"postgres", "worker", "s3", "redis"}, faults.fired
    log = stack.output.read_text()
    for restarted in ("postgres", "redis", faults.tried.pop()):
        assert f"stack: {restarted} exited" in log and f"stack: {restarted} started again" in log
    assert "s3: down for 20 s" in stack.log("s3") and "s3: up again" in stack.log("s3")

    # the lake and the registry as the stack's lake user sees them
    creds = json.loads((stack.home / "state" / "s3-lake-user.json").read_text())
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{af.LOOPBACK}:{stack.s3_port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", creds["access_key"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", creds["secret_key"])
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    cfg = load_config(stack.home / "state" / "params.yaml")
    lake = Lake.from_config(cfg.lake)
    registry = Registry(lake)

    # the worker fault: the orphaned try failed, the retry completed; one whole snapshot
    train_fm = _running(fm_tis(DAYS[1]), "train_fm", "success")
    assert len(train_fm) == 1 and train_fm[0]["try_number"] >= 2, train_fm
    snapshots = [m for m in registry.history("fm", None) if m.ds == DAYS[1]]
    assert len(snapshots) == 1, snapshots
    registry.load("fm", None, DAYS[1], FeatureSpec.from_config(cfg.features).fingerprint())

    # the S3 fault: each scored day's DAS is whole, and nothing partial is listed
    parts = lake.partitions(DAS)
    assert sorted(p["ds"] for p in parts) == DAYS[1:]
    for day in DAYS[1:]:
        rows = lake.read(DAS, ds=[day]).num_rows
        assert rows == lake.read(IMPRESSIONS, ds=[day]).num_rows > 0, day
    score = [t for t in tis["exfm_das_backfill"] if t["task_id"] == "score"]
    assert {t["state"] for t in score} <= {"success", "skipped"} and score
    # the backfill the outage hit failed, was retried with back-off, and completed
    hit = faults.hits["s3"][0]["dag_run_id"]
    (retried,) = [t for t in score if t["dag_run_id"] == hit]
    assert retried["state"] == "success" and retried["try_number"] >= 2, retried

    # the VM fan-out: one VM per vertical, over both torch workers
    trains = [t for t in tis["exfm_vm_finetune"] if t["task_id"] == "train_vm"]
    assert {t["state"] for t in trains} == {"success"}
    assert len(cfg.features.verticals) == VERTICALS
    assert sorted(t["map_index"] for t in trains) == sorted(
        [i for r in runs["exfm_vm_finetune"] for i in range(_planned(api, r))]
    )
    # the pipeline report of the last VM run (the first may have nothing evaluated yet)
    reports = [t["state"] for t in tis["exfm_vm_finetune"] if t["task_id"] == "report"]
    assert "success" in reports and set(reports) <= {"success", "skipped"}, reports
    # the Redis fault: nothing lost (no VM task needed a second try), nothing run twice (each
    # try was executed by one worker, once)
    assert {t["try_number"] for t in trains} == {1}, trains
    executed = stack.executions()
    keys = [key for _, key in executed]
    assert len(keys) == len(set(keys)), sorted(k for k in keys if keys.count(k) > 1)
    torch_tasks = {"train_fm", "score", "train_vm"}
    torch_workers = {w for w, key in executed if key[2] in torch_tasks}
    assert torch_workers == {"worker-torch-1", "worker-torch-2"}, executed
    assert not [k for w, k in executed if w == "worker" and k[2] in torch_tasks]
    for dag_id in DAGS:
        assert runs[dag_id] and {r["state"] for r in runs[dag_id]} == {"success"}, runs[dag_id]

"""End to end through the real Airflow, started the way a user starts it: `make airflow` (API
server, scheduler, DAG processor, triggerer, LocalExecutor and the task log servers) on free local
ports in a temporary AIRFLOW_HOME. Nothing of it listens beyond 127.0.0.1, and what it writes under
AIRFLOW_HOME (the admin password, the metadata database, the task logs) is readable by this user
only. The FM DAG is triggered for two demo days through the REST API with a token; the
Asset-triggered DAS and VM DAGs must follow on their own, the VMs with one mapped task per vertical;
then Ctrl-C (SIGINT to the terminal's foreground process group) stops every process and none is
left behind."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import stat
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

from exfm import das
from exfm.config import load_config, resolve_paths
from exfm.lake import DAS, IMPRESSIONS, Lake
from exfm.registry import Registry
from tests.conftest import REPO, airflow_params, free_port

pytestmark = pytest.mark.slow

DAYS = ["2026-01-05", "2026-01-06"]
TIMEOUT_S = 600


class Api:
    def __init__(self, base: str) -> None:
        self.base, self.token = base, ""

    def call(self, method: str, path: str, body: dict | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"null")

    def wait(self, what: str, probe: Any, timeout: float = TIMEOUT_S) -> Any:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = probe()
                if last:
                    return last
            except (urllib.error.URLError, OSError, KeyError, ValueError) as e:
                last = e
            time.sleep(2)
        raise AssertionError(f"timed out waiting for {what}; last: {last}")

    def runs(self, dag_id: str) -> list[dict]:
        return self.call("GET", f"/api/v2/dags/{dag_id}/dagRuns?limit=100")["dag_runs"]

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{urllib.request.quote(run_id)}/taskInstances"
        return self.call("GET", path + "?limit=100")["task_instances"]


LOOPBACK = "127.0.0.1"


@dataclass
class Airflow:
    api: Api
    cfg: Any
    proc: subprocess.Popen
    home: Path
    listeners: set[tuple[str, int]]
    seen: set[psutil.Process] = field(default_factory=set)


@pytest.fixture
def standalone(tmp_path: Path):
    """A running `make airflow` on a tiny config; stopped with Ctrl-C (and checked) afterwards."""
    params = tmp_path / "params.yaml"
    params.write_text(airflow_params(retry_delay_s=5))
    port, worker_logs, trigger_logs = free_port(), free_port(), free_port()
    home = tmp_path / "airflow"
    env = {
        **os.environ,
        # what `make airflow` reads: the home, the UI port and the params file
        "AIRFLOW_HOME": str(home),
        "AIRFLOW_PORT": str(port),
        "EXFM_PARAMS": str(params),
        # the log servers' ports (8793 and 8794 by default) are Airflow's own options
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(worker_logs),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(trigger_logs),
        # a quicker demo: unpaused DAGs, a short parse interval and heartbeat
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
    }
    env.pop("AIRFLOW__CORE__UNIT_TEST_MODE", None)
    make = shutil.which("make")
    assert make, "make is not installed"
    log = open(tmp_path / "airflow.log", "w")  # noqa: SIM115 - closed below
    # -o setup: the venv this test runs in is the one `make airflow` uses; do not reinstall it.
    # A new session: make is the leader of the process group that Ctrl-C would signal.
    proc = subprocess.Popen(
        [make, "--no-print-directory", "-s", "-o", "setup", "airflow"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    api = Api(f"http://{LOOPBACK}:{port}")
    listeners = {(LOOPBACK, port), (LOOPBACK, worker_logs), (LOOPBACK, trigger_logs)}
    seen: set[psutil.Process] = set()
    try:
        api.wait("the API server", lambda: api.call("GET", "/api/v2/monitor/health"), 240)
        password_file = home / "simple_auth_manager_passwords.json.generated"
        api.wait("the admin password", password_file.exists, 60)
        password = json.loads(password_file.read_text())["admin"]
        api.token = api.call("POST", "/auth/token", {"username": "admin", "password": password})[
            "access_token"
        ]
        # the UI and both task log servers listen, on 127.0.0.1 only, and nothing else does
        api.wait("the log servers", lambda: _listening(proc) >= listeners, 60)
        assert _listening(proc) == listeners
        for log_port in (worker_logs, trigger_logs):  # Airflow's log server: a token is required
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(f"http://{LOOPBACK}:{log_port}/log/x", timeout=10)
            assert refused.value.code == 403
        for private in (password_file, home / "airflow.db"):
            assert _mode(private) == 0o600, f"{private}: {_mode(private):o}"
        cfg = resolve_paths(load_config(params), tmp_path)
        yield Airflow(api, cfg, proc, home, listeners, seen)
    finally:
        seen.update(_descendants(proc))
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the terminal signals its foreground group
        stopping = time.monotonic()
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            seen.add(psutil.Process(proc.pid))
            raise
        finally:
            log.close()
            deadline = time.monotonic() + (60 if proc.returncode is not None else 0)
            alive = _alive(seen)
            while alive and time.monotonic() < deadline:
                time.sleep(1)
                alive = _alive(seen)
            for p in alive:
                with contextlib.suppress(psutil.NoSuchProcess):
                    p.kill()
        print(f"Ctrl-C stopped {len(seen)} processes in {time.monotonic() - stopping:.1f} s")
        assert not alive, f"processes left behind: {alive}"


def _descendants(proc: subprocess.Popen) -> set[psutil.Process]:
    try:
        return set(psutil.Process(proc.pid).children(recursive=True))
    except psutil.NoSuchProcess:
        return set()


def _alive(processes: set[psutil.Process]) -> list[psutil.Process]:
    alive = []
    for p in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                alive.append(p)
    return alive


def _listening(proc: subprocess.Popen) -> set[tuple[str, int]]:
    """(address, port) of every listening TCP socket (IPv4 and IPv6) of the process tree."""
    found = set()
    for p in _descendants(proc):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.ZombieProcess):
            for conn in p.net_connections(kind="tcp"):
                if conn.status == psutil.CONN_LISTEN:
                    found.add((conn.laddr.ip, conn.laddr.port))
    return found


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_trigger_through_the_api_and_the_assets_chain_the_dags(standalone: Airflow) -> None:
    api, cfg, proc, seen = standalone.api, standalone.cfg, standalone.proc, standalone.seen
    api.wait(
        "the DAGs to be parsed",
        lambda: (
            {d["dag_id"] for d in api.call("GET", "/api/v2/dags")["dags"]}
            >= {"exfm_fm_daily", "exfm_das_backfill", "exfm_vm_finetune", "exfm_data_quality"}
        ),
        180,
    )
    for day in DAYS:
        api.call(
            "POST",
            "/api/v2/dags/exfm_fm_daily/dagRuns",
            {"logical_date": f"{day}T00:00:00Z", "conf": {}},
        )

    def finished(dag_id: str, count: int) -> list[dict] | None:
        seen.update(_descendants(proc))
        runs = api.runs(dag_id)
        failed = [r for r in runs if r["state"] == "failed"]
        assert not failed, f"{dag_id} failed: {failed}"
        done = [r for r in runs if r["state"] == "success"]
        return done if len(done) >= count else None

    api.wait("two FM days", lambda: finished("exfm_fm_daily", 2))
    api.wait("two DAS runs (the first day has no FM yet)", lambda: finished("exfm_das_backfill", 2))
    vm_runs = api.wait("the VM fan-out of the second day", lambda: finished("exfm_vm_finetune", 1))
    api.wait("the drift reports", lambda: finished("exfm_data_quality", 2))
    assert all(r["run_type"] == "asset_triggered" for r in vm_runs)
    tis = api.task_instances("exfm_vm_finetune", vm_runs[0]["dag_run_id"])
    trains = [t for t in tis if t["task_id"] == "train_vm"]
    assert sorted(t["map_index"] for t in trains) == [0, 1, 2, 3]
    assert {t["state"] for t in trains} == {"success"}
    # tasks record the host 127.0.0.1, where the API server asks the log server for a running log
    assert {t["hostname"] for t in trains} == {LOOPBACK}
    lake = Lake.from_config(cfg.lake)
    parts = lake.partitions(DAS)
    assert [p["ds"] for p in parts] == [DAYS[1]]
    assert all(das.version_day(p["fm_version"]) < p["ds"] for p in parts)

    # the Assets carried the content ids they announced, and the consumers used exactly those
    events = api.call("GET", "/api/v2/assets/events?limit=100")["asset_events"]
    checked = [e["extra"] for e in events if e["name"] == "exfm_impressions_checked"]
    assert sorted(e["ds"] for e in checked) == DAYS
    for extra in checked:
        day = extra["ds"]
        assert extra["impressions"] == {day: lake.content_ids(IMPRESSIONS, ds=[day])}
    scored = [e["extra"] for e in events if e["name"] == "exfm_das_scored"]
    part = DAS.rel_dir(parts[0])
    assert [e["das"] for e in scored] == [{DAYS[1]: {part: lake.content_id(DAS, parts[0])}}]
    for vertical in cfg.features.verticals:
        meta = Registry(lake).meta(f"vm_{cfg.vm.variant}", vertical, DAYS[1])
        assert meta.inputs[part] == lake.content_id(DAS, parts[0])

    # while tasks ran, nothing started listening elsewhere; every file under AIRFLOW_HOME (the task
    # logs included) is this user's only
    assert _listening(proc) == standalone.listeners
    shared = [
        f"{_mode(path):o} {path}"
        for path in [standalone.home, *standalone.home.rglob("*")]
        if not path.is_symlink() and _mode(path) & 0o077
    ]
    assert not shared, shared
    assert any(standalone.home.glob("logs/dag_id=exfm_vm_finetune/**/*.log"))

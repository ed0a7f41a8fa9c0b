"""End to end through the real Airflow: `airflow standalone` (scheduler, DAG processor, API
server, LocalExecutor) on a free local port in a temporary AIRFLOW_HOME. The FM DAG is triggered
for two demo days through the REST API with a token; the Asset-triggered DAS and VM DAGs must
follow on their own, the VMs with one mapped task per vertical; then every process stops on
SIGINT (Airflow's standalone handles only that signal) and none is left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
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


@pytest.fixture
def standalone(tmp_path: Path):
    """A running `airflow standalone` on a tiny config; stopped (and checked) afterwards."""
    params = tmp_path / "params.yaml"
    params.write_text(airflow_params(retry_delay_s=5))
    port = free_port()
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}",
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        # where task processes reach the API server (its default assumes port 8080)
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        "EXFM_PARAMS": str(params),
    }
    env.pop("AIRFLOW__CORE__UNIT_TEST_MODE", None)
    airflow = str(Path(bin_dir) / "airflow")
    subprocess.run(
        [airflow, "db", "migrate"], env=env, check=True, capture_output=True, timeout=300
    )
    subprocess.run(
        [airflow, "pools", "set", "exfm_torch", "2", "ExFM torch tasks"],
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    log = open(tmp_path / "standalone.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [airflow, "standalone"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    api = Api(f"http://127.0.0.1:{port}")
    seen: set[int] = set()
    try:
        api.wait("the API server", lambda: api.call("GET", "/api/v2/monitor/health"), 180)
        password_file = tmp_path / "airflow" / "simple_auth_manager_passwords.json.generated"
        api.wait("the admin password", password_file.exists, 60)
        password = json.loads(password_file.read_text())["admin"]
        api.token = api.call("POST", "/auth/token", {"username": "admin", "password": password})[
            "access_token"
        ]
        yield api, resolve_paths(load_config(params), tmp_path), proc, seen
    finally:
        seen.update(_descendants(proc))
        proc.send_signal(signal.SIGINT)  # standalone stops its children on SIGINT only
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
        finally:
            log.close()
        deadline = time.monotonic() + 60
        alive = [p for p in seen if psutil.pid_exists(p)]
        while alive and time.monotonic() < deadline:
            time.sleep(1)
            alive = [
                p
                for p in seen
                if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
            ]
        for pid in alive:
            os.kill(pid, signal.SIGKILL)
        assert not alive, f"processes left behind: {alive}"


def _descendants(proc: subprocess.Popen) -> set[int]:
    try:
        return {c.pid for c in psutil.Process(proc.pid).children(recursive=True)}
    except psutil.NoSuchProcess:
        return set()


def test_trigger_through_the_api_and_the_assets_chain_the_dags(standalone) -> None:
    api, cfg, proc, seen = standalone
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

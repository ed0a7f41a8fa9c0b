"""Ctrl-C stops `make airflow` whole, as a terminal sends it: SIGINT to the foreground process group
(make's), once, or twice in quick succession (the second press kills at once). After each, every
process of the tree (API server, scheduler and its LocalExecutor workers, DAG processor, triggerer,
the log servers, a task that was running) is gone within 30 s. Started on a minimal params file,
three times with one press and once with two; a task is running at the first and last press."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.conftest import airflow_params
from tests.e2e import airflow_process as af

pytestmark = pytest.mark.slow

STOPPED_WITHIN_S = 30
DAY = "2026-01-05"


def _start_a_task(airflow: af.Airflow) -> None:
    """Trigger the FM DAG for a day and wait until its first task runs (its process exists)."""
    api = airflow.api
    api.login(airflow.password())
    api.wait(
        "exfm_fm_daily to be parsed",
        lambda: any(
            d["dag_id"] == "exfm_fm_daily" for d in api.call("GET", "/api/v2/dags")["dags"]
        ),
        120,
    )
    api.call("PATCH", "/api/v2/dags/exfm_fm_daily", {"is_paused": False})
    run = api.call(
        "POST",
        "/api/v2/dags/exfm_fm_daily/dagRuns",
        {"logical_date": f"{DAY}T00:00:00Z", "conf": {}},
    )

    def running() -> bool:
        airflow.note_processes()
        tis = api.task_instances("exfm_fm_daily", run["dag_run_id"])
        return any(t["state"] == "running" for t in tis)

    api.wait("a running task", running, 120)
    airflow.note_processes()


@pytest.mark.parametrize(
    ("presses", "with_task"),
    [(1, True), (1, False), (1, False), (2, True)],
    ids=["once-task", "once", "once-again", "twice-task"],
)
def test_ctrl_c_stops_every_process(tmp_path: Path, presses: int, with_task: bool) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(airflow_params(retry_delay_s=5))
    started = time.monotonic()
    airflow = af.start(tmp_path, params)
    try:
        af.wait_healthy(airflow)
        up = time.monotonic() - started
        if with_task:
            _start_a_task(airflow)
        assert len(af.alive(airflow.seen)) >= 6, "fewer processes than components"
    finally:
        took = af.stop(airflow, within_s=STOPPED_WITHIN_S, presses=presses)
    print(
        f"up in {up:.0f} s; Ctrl-C x{presses} stopped {len(airflow.seen)} processes in {took:.1f} s"
    )

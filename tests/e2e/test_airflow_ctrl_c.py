"""Ctrl-C stops `make airflow` whole, as a terminal sends it: SIGINT to the foreground process group
(make's), once, or twice in quick succession (the second press kills at once). After each, every
process of the tree (API server, scheduler and its LocalExecutor workers, DAG processor, triggerer,
the log servers, a task that was running) is gone within 45 s (20 s of them the running task's
grace). Started on a minimal params file, twice with one press (a task running at the first) and
once with two (a task running).
With AIRFLOW_GRACE_S=0 the running task does not get to finish: it is interrupted, and the next
`make airflow` runs it again (a new try)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.conftest import airflow_params
from tests.e2e import airflow_process as af

pytestmark = pytest.mark.slow

# make airflow's AIRFLOW_GRACE_S (20 s) for a running task, its interruption, and a margin
STOPPED_WITHIN_S = 45
DAY = "2026-01-05"


def _start_a_task(airflow: af.Airflow) -> tuple[str, str]:
    """Trigger the FM DAG for a day and wait until its first task runs (its process exists);
    returns the run's id and the id of the task that runs."""
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

    found: list[str] = []

    def running() -> bool:
        airflow.note_processes()
        tis = api.task_instances("exfm_fm_daily", run["dag_run_id"])
        found[:] = [t["task_id"] for t in tis if t["state"] == "running"]
        return bool(found)

    api.wait("a running task", running, 120)
    airflow.note_processes()
    return run["dag_run_id"], found[0]


def _wait_new_try(airflow: af.Airflow, run_id: str, task_id: str) -> dict:
    """Wait until the task of the run is on its second try (or later); returns the task."""
    api = airflow.api
    api.login(airflow.password())
    latest: list[dict] = []

    def new_try() -> bool:
        tis = api.task_instances("exfm_fm_daily", run_id)
        latest[:] = [t for t in tis if t["task_id"] == task_id]
        return bool(latest) and latest[0]["try_number"] >= 2

    api.wait(f"{task_id} to run again", new_try, 180)
    return latest[0]


@pytest.mark.parametrize(
    ("presses", "with_task", "grace_s"),
    [(1, True, None), (1, False, None), (2, True, None), (1, True, 0)],
    ids=["once-task", "once", "twice-task", "once-task-no-grace"],
)
def test_ctrl_c_stops_every_process(
    tmp_path: Path, presses: int, with_task: bool, grace_s: int | None
) -> None:
    params = tmp_path / "params.yaml"
    # without grace the interrupted task (land) must still be running when its SIGTERM arrives:
    # a day of 4,000 impressions lands in about a second after the task's imports, and a task
    # that finishes first is a success, not an interruption; 1.5M take several seconds
    impressions = 1_500_000 if grace_s == 0 else 4000
    params.write_text(airflow_params(retry_delay_s=5, impressions_per_day=impressions))
    started = time.monotonic()
    env = {} if grace_s is None else {"AIRFLOW_GRACE_S": str(grace_s)}
    airflow = af.start(tmp_path, params, env)
    task = None
    try:
        af.wait_healthy(airflow)
        up = time.monotonic() - started
        if with_task:
            task = _start_a_task(airflow)
        assert len(af.alive(airflow.seen)) >= 6, "fewer processes than components"
    finally:
        took = af.stop(airflow, within_s=STOPPED_WITHIN_S, presses=presses)
    if grace_s == 0:
        assert task
        assert "airflow: interrupting the running tasks" in airflow.output(), af.tail(airflow)
        # Airflow 3.3 leaves a task killed by a signal "running" in its database when it has
        # retries (the supervisor never sends UP_FOR_RETRY; apache/airflow#73142): the next start
        # finds its scheduler gone, resets it and runs it again.
        with af.running(tmp_path, params, env) as again:  # the same home (and log file)
            ti = _wait_new_try(again, *task)
        print(f"{task[1]} interrupted, then run again on the next start (try {ti['try_number']})")
    print(
        f"up in {up:.0f} s; Ctrl-C x{presses} stopped {len(airflow.seen)} processes in {took:.1f} s"
    )

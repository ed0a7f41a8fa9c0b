"""### exfm_fm_daily: land, check and learn a day of ads traffic with the foundation model

One run per logical day `ds`, one at a time: a day trains from the snapshot of the day before.

1. **land**: demo mode simulates the day into the lake (exfm world); sensor mode waits until every
   vertical's partition of ds has arrived.
2. **check**: the data checks (Great Expectations suite + drift against the trailing window). A
   failing day stops here with the failing checks in the log; on success the Asset
   `exfm_impressions_checked` is updated with the day and the content ids of the impressions it
   checked, which starts `exfm_das_backfill` and `exfm_data_quality` for that day.
3. **train_fm**: evaluate the latest FM on ds, train it one pass on every vertical, snapshot it.
4. **publish_fm**: a snapshot that passed its gate updates the Asset `exfm_fm_published`; one that
   did not is skipped with the reason (a normal, visible outcome).
5. **summary** (whatever happened before): the day's outcome in a few lines, the run's note in
   the ExFM console (rows, checks, NE, published or not and why).

Every task calls one function of `exfm.stages`, the same that `dvc repro` runs.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import dag, task
from exfm_common import (
    FM_PUBLISHED,
    IMPRESSIONS_CHECKED,
    config,
    default_args,
    fmt_ne,
    max_active_runs,
    published,
    run_stage,
    schedule_dates,
    summarize,
)

CFG = config()
START, END = schedule_dates(CFG)


def _day(ds: str | None) -> str:
    from airflow.sdk.exceptions import AirflowFailException

    if not ds:
        raise AirflowFailException("this run has no logical date: trigger it for a day")
    return ds


@dag(
    dag_id="exfm_fm_daily",
    schedule=None if CFG.airflow.schedule == "none" else "@daily",
    start_date=START,
    end_date=END,
    catchup=CFG.airflow.catchup,
    max_active_runs=max_active_runs(CFG, in_order=True),
    default_args=default_args(CFG),
    tags=["exfm", "fm", CFG.airflow.mode],
    doc_md=__doc__,
)
def exfm_fm_daily() -> None:
    if CFG.airflow.mode == "demo":

        @task(doc_md="Simulate day ds of the ads world into the lake (demo mode).")
        def land(ds: str | None = None) -> dict[str, Any]:
            return run_stage("land", _day(ds))

    else:

        @task.sensor(
            poke_interval=CFG.airflow.sensor_poke_s,
            timeout=CFG.airflow.sensor_timeout_h * 3600,
            mode="reschedule",
            doc_md="Wait until every vertical's impressions of ds are in the lake.",
        )
        def land(ds: str | None = None) -> bool:
            return bool(run_stage("landed", _day(ds)))

    @task(outlets=[IMPRESSIONS_CHECKED], doc_md="The data-quality and drift gate of ds.")
    def check(ds: str | None = None, *, outlet_events: Any = None) -> dict[str, Any]:
        result = run_stage("check", _day(ds))
        outlet_events[IMPRESSIONS_CHECKED].extra = {
            "ds": ds,
            "status": result["status"],
            "impressions": {ds: result["impressions"]},
        }
        return result

    @task(
        pool=CFG.airflow.pool,
        queue=CFG.airflow.torch_queue,
        doc_md="Progressive evaluation, one pass of training, snapshot.",
    )
    def train_fm(ds: str | None = None) -> dict[str, Any]:
        return run_stage("train_fm", _day(ds))

    @task(outlets=[FM_PUBLISHED], doc_md="Publish the snapshot if its gate blessed it.")
    def publish_fm(result: dict[str, Any], *, outlet_events: Any = None) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowSkipException

        if not result["published"]:
            raise AirflowSkipException(f"fm@{result['ds']} is not published: {result['reason']}")
        outlet_events[FM_PUBLISHED].extra = {
            "ds": result["ds"],
            "snapshot": {result["ds"]: {f"registry/fm/ds={result['ds']}": result["sha256"]}},
        }
        return result

    @task(doc_md="The day's outcome in a few lines (the run's note).")
    def summary(ds: str | None = None, *, ti: Any = None) -> dict[str, Any]:
        checked, trained = (ti.xcom_pull(task_ids=t) for t in ("check", "train_fm"))
        states = ti.get_task_states(
            dag_id=ti.dag_id, task_ids=["land", "check", "train_fm"], run_ids=[ti.run_id]
        ).get(ti.run_id, {})
        lines = []
        if checked:
            warn = f", {checked['warn']} warnings" if checked.get("warn") else ""
            lines.append(f"{ds}: checks {checked['status']}{warn}")
        else:
            failed = next((t for t in ("land", "check") if states.get(t) != "success"), "check")
            lines.append(f"{ds}: {failed} {states.get(failed)}: the FM did not train (see its log)")
        if trained:
            ahead = (  # progressive evaluation: the day predicted before training on it
                f"NE {fmt_ne(trained['eval_ne'])} predicting the day"
                if trained["eval_ne"] is not None
                else "no earlier FM to evaluate"
            )
            lines.append(
                f"FM: {trained['rows']:,} rows, {ahead}, NE {fmt_ne(trained['train_ne'])} in "
                f"training; {published(trained)}"
            )
        elif checked:
            lines.append(f"FM: train_fm {states.get('train_fm')} (see its log)")
        return summarize([ds] if ds else [], lines, fm=trained)

    checked = check()
    land() >> checked
    trained = train_fm()
    checked >> trained
    publish_fm(trained) >> summary().as_teardown()  # a teardown: the run's state is its work's


exfm_fm_daily()

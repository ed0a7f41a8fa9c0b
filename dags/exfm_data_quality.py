"""### exfm_data_quality: the daily data-drift report

Started by the Asset `exfm_impressions_checked` (or the form's `ds`): rebuilds the drift report
of the day and the index across days, static HTML under the lake's `reports/drift/` (and
checks.report_dir), which the ExFM console serves in Airflow (its nav entry, each run's tab).
The reports' locations are in the task log, XCom and the run's summary. The checks themselves
run in `exfm_fm_daily`'s `check` task, which gates the day.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import dag, task
from exfm_common import (
    IMPRESSIONS_CHECKED,
    config,
    day_param,
    event_days,
    on_assets,
    run_stage,
    summarize,
)

CFG = config()


@dag(
    **on_assets(
        CFG, "exfm_data_quality", [IMPRESSIONS_CHECKED], ["data-quality"], __doc__, in_order=False
    ),
    params={"ds": day_param("the day")},
)
def exfm_data_quality() -> None:
    @task(doc_md="Rebuild the drift report of the day; its path goes to the log and XCom.")
    def drift_report(
        *, triggering_asset_events: Any = None, params: Any = None
    ) -> list[dict[str, Any]]:
        import logging

        from airflow.sdk.exceptions import AirflowFailException

        days = event_days(triggering_asset_events, IMPRESSIONS_CHECKED, params)
        if not days:
            raise AirflowFailException("no day: give `ds` in the form")
        results = [run_stage("report", ds) for ds in days]
        for r in results:
            logging.getLogger(__name__).info(
                "drift report of %s: %s (index %s)", r["ds"], r["report"], r["index"]
            )
        return results

    @task(doc_md="The days and their reports (the run's note).")
    def summary(*, ti: Any = None) -> dict[str, Any]:
        done = ti.xcom_pull(task_ids="drift_report")
        if not done:
            return summarize([], ["drift_report did not finish: see its log"])
        lines = [f"{r['ds']}: drift report {r['report']}" for r in done]
        return summarize([r["ds"] for r in done], [*lines, f"every day: {done[-1]['index']}"])

    drift_report() >> summary().as_teardown()  # a teardown: the run's state is its work's


exfm_data_quality()

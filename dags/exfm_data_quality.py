"""### exfm_data_quality: the daily data-drift report

Started by the Asset `exfm_impressions_checked` (or the form's `ds`): rebuilds the drift report
of the day and the index across days, static HTML under the lake's `reports/drift/` (and
checks.report_dir). The report's location is in the task log and in XCom. The checks themselves
run in `exfm_fm_daily`'s `check` task, which gates the day.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import dag, task
from exfm_common import IMPRESSIONS_CHECKED, config, day_param, event_days, on_assets, run_stage

CFG = config()


@dag(
    **on_assets(CFG, "exfm_data_quality", [IMPRESSIONS_CHECKED], ["data-quality"], __doc__),
    params={"ds": day_param("the day")},
)
def exfm_data_quality() -> None:
    @task(doc_md="Rebuild the drift report of the day; its path goes to the log and XCom.")
    def drift_report(*, triggering_asset_events: Any = None, params: Any = None) -> dict[str, Any]:
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
        return results[-1]

    drift_report()


exfm_data_quality()

"""### exfm_das_backfill: the FM scores each checked day once; the VMs read the stored predictions

Started by the Asset `exfm_impressions_checked` (the day `ds` rides in the event), so it runs
*beside* the FM training of ds, not after it: day ds is scored by the latest published FM trained
on ds - 1 - das.fm_delay_days or earlier, **never by an FM that has trained on ds** (the VMs would
learn from leaked labels). A day that no FM can score yet (the first day) is skipped with the
reason. Each scored day updates the Asset `exfm_das_scored` with the partition's content id, which
starts `exfm_vm_finetune`. A day whose stored predictions are current (same impressions, same FM
snapshot) is not scored again; one re-landed since the event that started this run is skipped
(its new check sends its own event).

**Historical backfills from the UI**: trigger with the form: `start`, `end` (days), optionally
`fm_version` (fm-YYYY-MM-DD: re-score with a chosen FM, for instance one published later) and
`force` (re-score days already done by the same FM). Days already scored are skipped, so an
interrupted backfill resumes.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Param, dag, task
from exfm_common import (
    DAS_SCORED,
    IMPRESSIONS_CHECKED,
    config,
    event_content,
    event_days,
    on_assets,
    run_stage,
)

CFG = config()


@dag(
    **on_assets(CFG, "exfm_das_backfill", [IMPRESSIONS_CHECKED], ["das"], __doc__),
    params={
        "start": Param(
            None,
            type=["null", "string"],
            format="date",
            description="first day to score (manual backfills)",
        ),
        "end": Param(
            None,
            type=["null", "string"],
            format="date",
            description="last day to score (default: start)",
        ),
        "fm_version": Param(
            None,
            type=["null", "string"],
            description="fm-YYYY-MM-DD; empty: the FM live for each day",
        ),
        "force": Param(False, type="boolean", description="re-score days already done"),
    },
)
def exfm_das_backfill() -> None:
    @task(doc_md="The days of this run: from the triggering events, else from the form.")
    def days(*, triggering_asset_events: Any = None, params: Any = None) -> list[str]:
        from airflow.sdk.exceptions import AirflowFailException

        found = event_days(triggering_asset_events, IMPRESSIONS_CHECKED, params)
        if not found:
            raise AirflowFailException("no day to score: give `start` (and `end`) in the form")
        return found

    @task(
        pool=CFG.airflow.pool,
        queue=CFG.airflow.torch_queue,
        outlets=[DAS_SCORED],
        doc_md="Score and store each day.",
    )
    def score(
        days: list[str],
        *,
        params: Any = None,
        outlet_events: Any = None,
        triggering_asset_events: Any = None,
    ) -> list[dict[str, Any]]:
        from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

        version, force = (params or {}).get("fm_version"), bool((params or {}).get("force"))
        checked = event_content(triggering_asset_events, IMPRESSIONS_CHECKED, "impressions")
        results, scored = [], {}
        for ds in days:
            try:
                result = run_stage("backfill_das", ds, version or None, force, checked.get(ds))
            except AirflowSkipException as e:  # the day was re-landed since this event
                results.append({"ds": ds, "skipped": True, "reason": str(e)})
                continue
            except AirflowFailException as e:
                if not triggering_asset_events or "no published FM" not in str(e):
                    raise
                results.append({"ds": ds, "skipped": True, "reason": str(e)})
                continue
            results.append(result)
            name = f"das/fm_version={result['fm_version']}/ds={ds}"
            scored[ds] = {name: result["content_id"]}
        if not scored:
            raise AirflowSkipException(f"nothing scored: {results}")
        outlet_events[DAS_SCORED].extra = {
            "days": sorted(scored),
            "ds": max(scored),
            "das": scored,
        }
        return results

    score(days())


exfm_das_backfill()

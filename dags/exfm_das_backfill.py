"""### exfm_das_backfill: the FM scores each checked day once; the VMs read the stored predictions

Started by the Asset `exfm_impressions_checked` (the day `ds` rides in the event), so it runs
*beside* the FM training of ds, not after it: day ds is scored by the latest published FM trained
on ds - 1 - das.fm_delay_days or earlier, **never by an FM that has trained on ds** (the VMs would
learn from leaked labels). A day that no FM can score yet (the first day) is skipped with the
reason. A day whose stored predictions are current (same impressions, same FM snapshot) is not
scored again; one re-landed since the event that started this run is skipped (its new check sends
its own event). The log says, day by day, what was scored and what was skipped and why.

Only the days this run scored update the Asset `exfm_das_scored` (with their partitions' content
ids), which starts `exfm_vm_finetune`; a run that scores nothing ends with `score` skipped and no
event, so no VM retrains. A retry of `score` also announces the days its failed tries began.

**Historical backfills from the UI**: trigger with the form: `start`, `end` (days), optionally
`fm_version` (fm-YYYY-MM-DD: re-score with a chosen FM, for instance one published later) and
`force` (re-score days already done by the same FM). The form refuses a malformed day or version;
`end` before `start` fails at once. To resume an interrupted backfill, clear its failed `score`
task: it skips the days already scored, and announces those its failed tries began.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk import Param, dag, task
from exfm_common import (
    DAS_SCORED,
    IMPRESSIONS_CHECKED,
    config,
    day_param,
    event_content,
    event_days,
    on_assets,
    run_stage,
    summarize,
)

CFG = config()
log = logging.getLogger(__name__)
STARTED = "started"  # the task state store's key: the days a try of `score` began to score
OUTCOMES = "outcomes"  # score's XCom of every day's outcome, kept when it skips (for `summary`)
CURRENT = (
    "not scored: its predictions are current (same impressions, same FM); `force` re-scores it"
)


def _score_day(
    ds: str, version: str | None, force: bool, expect: Any, on_event: bool, warm: Any
) -> Any:
    """The stage's result for day ds, or the day skipped with the reason: re-landed since the
    event, or (a run started by an event) no FM old enough to score it yet. `warm` keeps the
    FM in memory from one day to the next (exfm.stages.Warm)."""
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    try:
        return run_stage("backfill_das", ds, version, force, expect, warm=warm)
    except AirflowSkipException as e:
        return {"ds": ds, "skipped": True, "reason": str(e)}
    except AirflowFailException as e:
        if not on_event or "no published FM" not in str(e):
            raise
        return {"ds": ds, "skipped": True, "reason": str(e)}


def _outcome(result: dict[str, Any], announced: bool) -> str:
    """The log's line for a day: what happened to it, and whether the event names it."""
    if not result["skipped"]:
        return (
            f"scored by {result['fm_version']} ({result['rows']:,} rows, FM NE "
            f"{result['fm_ne']:.4f}), announced"
        )
    return f"skipped ({result['reason']}){', announced' if announced else ''}"


@dag(
    **on_assets(CFG, "exfm_das_backfill", [IMPRESSIONS_CHECKED], ["das"], __doc__),
    params={
        "start": day_param("first day to score (manual backfills)"),
        "end": day_param("last day to score (default: start)"),
        "fm_version": Param(
            None,
            type=["null", "string"],
            pattern=r"^fm-\d{4}-\d{2}-\d{2}$",
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
        doc_md="Score and store each day; announce the days whose predictions changed.",
    )
    def score(
        days: list[str],
        *,
        params: Any = None,
        outlet_events: Any = None,
        triggering_asset_events: Any = None,
        task_state_store: Any = None,
        ti: Any = None,
    ) -> list[dict[str, Any]]:
        from airflow.sdk.exceptions import AirflowSkipException

        from exfm.stages import Warm

        version, force = (params or {}).get("fm_version"), bool((params or {}).get("force"))
        checked = event_content(triggering_asset_events, IMPRESSIONS_CHECKED, "impressions")
        # A try that fails after storing a day leaves it current for the retry, which must
        # announce it all the same: the task state store (shared by the tries of this task in
        # this run) keeps the days that a try began to score.
        earlier = task_state_store.get(STARTED) or []
        started, results, scored, warm = list(earlier), [], {}, Warm()
        with warm:  # the drift pages of the scored days once, when the loop ends
            for ds in days:
                if ds not in started:  # marked while it is scored: a retry may find it stored
                    started.append(ds)
                    task_state_store.set(STARTED, started)
                result = _score_day(
                    ds, version or None, force, checked.get(ds), bool(triggering_asset_events), warm
                )
                if "content_id" in result and (not result["skipped"] or ds in earlier):
                    name = f"das/fm_version={result['fm_version']}/ds={ds}"
                    scored[ds] = {name: result["content_id"]}
                    if result["skipped"]:
                        result["reason"] = "an earlier try of this run began to score it"
                else:
                    result.setdefault("reason", CURRENT)
                    if ds not in earlier:  # unmarked: this run did not change it
                        started.remove(ds)
                        task_state_store.set(STARTED, started)
                results.append(result)
                log.info("das %s: %s", ds, _outcome(result, ds in scored))
        task_state_store.delete(STARTED)
        ti.xcom_push(OUTCOMES, [{**r, "announced": r["ds"] in scored} for r in results])
        if not scored:
            raise AirflowSkipException(
                f"nothing scored, no {DAS_SCORED.name} event: "
                + "; ".join(f"{r['ds']} {r['reason']}" for r in results)
            )
        outlet_events[DAS_SCORED].extra = {"days": sorted(scored), "ds": max(scored), "das": scored}
        log.info("%s announces %s", DAS_SCORED.name, ", ".join(sorted(scored)))
        return results

    @task(doc_md="Each day's outcome in a few lines (the run's note).")
    def summary(*, ti: Any = None) -> dict[str, Any]:
        asked = ti.xcom_pull(task_ids="days") or []
        outcomes = ti.xcom_pull(task_ids="score", key=OUTCOMES)
        if outcomes is None:
            state = ti.get_task_states(
                dag_id=ti.dag_id, task_ids=["days", "score"], run_ids=[ti.run_id]
            ).get(ti.run_id, {})
            failed = "days" if not asked else "score"
            lines = [f"{failed} {state.get(failed)}: see its log; days asked: {asked or 'none'}"]
        else:
            lines = [f"{r['ds']}: {_outcome(r, r['announced'])}" for r in outcomes]
            if not any(r["announced"] for r in outcomes):
                lines.append(f"nothing scored: no {DAS_SCORED.name} event, no VM retrains")
        return summarize(asked, lines, outcomes=outcomes)

    score(days()) >> summary().as_teardown()  # a teardown: the run's state is its work's


exfm_das_backfill()

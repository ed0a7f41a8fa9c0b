"""### exfm_vm_finetune: one small model per vertical, distilled from the stored FM predictions

Started by the Asset `exfm_das_scored` (the scored days and the content ids of their DAS
partitions ride in the event: each VM distills from exactly that partition, and skips a day whose
partition was replaced since); or trigger it with the form (`ds`, optionally `variant`). The
verticals come from params (features.verticals). One mapped group instance per day and vertical,
named by both in the UI ("2026-01-07 feed"): `train_vm` trains that vertical's VM (variant
vm.variant: baseline, kd, ah or ah_sa) from the DAS training join, with progressive evaluation
first; then `publish_vm`, gated, waits on that training only. A vertical that fails does not stop
the others (the run ends failed); `summary` reports every day and vertical, failed ones included.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Param, dag, task, task_group
from exfm_common import (
    DAS_SCORED,
    config,
    day_param,
    event_content,
    event_days,
    on_assets,
    run_stage,
)

from exfm.variants import NAMES

CFG = config()
# How the UI names each mapped task instance: its day and vertical ("2026-01-07 feed"), rendered
# with the task's context once its arguments are resolved (an instance that never ran, upstream
# failed, keeps its number).
TRAIN_LABEL = "{{ task.op_kwargs['ds'] }} {{ task.op_kwargs['vertical'] }}"
PUBLISH_LABEL = "{{ task.op_kwargs['result']['ds'] }} {{ task.op_kwargs['result']['vertical'] }}"


def _label(item: dict[str, Any]) -> str:
    return f"{item['ds']} {item['vertical']}"


@dag(
    **on_assets(CFG, "exfm_vm_finetune", [DAS_SCORED], ["vm"], __doc__),
    params={
        "ds": day_param("the day"),
        "variant": Param(
            None,
            type=["null", "string"],
            enum=[None, *NAMES],
            description="default: vm.variant",
        ),
    },
)
def exfm_vm_finetune() -> None:
    @task(doc_md="One (day, vertical) pair per VM to train, with the DAS partition to read.")
    def plan(*, triggering_asset_events: Any = None, params: Any = None) -> list[dict[str, Any]]:
        from airflow.sdk.exceptions import AirflowFailException

        days = event_days(triggering_asset_events, DAS_SCORED, params)
        if not days:
            raise AirflowFailException("no day to train: give `ds` in the form")
        scored = event_content(triggering_asset_events, DAS_SCORED, "das")
        return [
            {"ds": ds, "vertical": v, "das": scored.get(ds) or {}}
            for ds in days
            for v in CFG.features.verticals
        ]

    @task(
        pool=CFG.airflow.pool,
        queue=CFG.airflow.torch_queue,
        map_index_template=TRAIN_LABEL,
        doc_md="Evaluate, train one pass and snapshot one vertical's VM.",
    )
    def train_vm(
        ds: str, vertical: str, das: dict[str, str], *, params: Any = None
    ) -> dict[str, Any]:
        # the event names the partition it announced: read that version, if it is still current
        version = next(iter(das)).split("/")[1].removeprefix("fm_version=") if das else None
        variant = (params or {}).get("variant") or None
        return run_stage("train_vm", ds, vertical, variant, version, expect=das)

    @task(
        map_index_template=PUBLISH_LABEL,
        doc_md="Publish the VM if its gate blessed it (skipped with the reason otherwise).",
    )
    def publish_vm(result: dict[str, Any]) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowSkipException

        if not result["published"]:
            raise AirflowSkipException(
                f"{result['model']}/{result['vertical']}@{result['ds']} is not published: "
                f"{result['reason']}"
            )
        return result

    # One group instance per (day, vertical): each publish waits on its own training only. A
    # plain `publish_vm.expand(result=trained)` waits on every training, so one failed vertical
    # left every publish upstream_failed. Unprefixed ids keep the task ids `train_vm`/`publish_vm`.
    @task_group(prefix_group_id=False)
    def vm(ds: str, vertical: str, das: dict[str, str]) -> Any:
        """Train one vertical's VM of one day, then publish it if its gate blessed it."""
        trained = train_vm(ds=ds, vertical=vertical, das=das)  # by name: the labels read op_kwargs
        publish_vm(result=trained)
        return trained

    @task(trigger_rule="all_done", doc_md="Every vertical's outcome, failed ones included.")
    def summary(
        planned: list[dict[str, Any]] | None, results: Any, *, ti: Any = None
    ) -> dict[str, Any]:
        import logging

        # Outside the group the trainings' results arrive as a list, as one dict when only one
        # training succeeded, or None when none did; one that failed or was skipped has none,
        # so its state comes from Airflow (map index i is planned[i]).
        if not isinstance(results, list):
            results = [] if results is None else [results]
        done = {_label(r): r for r in results}
        states = ti.get_task_states(dag_id=ti.dag_id, task_ids=["train_vm"], run_ids=[ti.run_id])
        log, missing = logging.getLogger(__name__), {}
        for i, label in enumerate(_label(p) for p in planned or []):  # none: `plan` failed
            if (r := done.get(label)) is None:
                missing[label] = state = str(states.get(ti.run_id, {}).get(f"train_vm_{i}"))
                level = logging.ERROR if state == "failed" else logging.WARNING
                log.log(level, "%s: %s, no VM: see train_vm [%s]", label, state, label)
                continue
            log.info(
                "%s: %s eval NE %s, train NE %s, %s (%s)",
                label,
                r["model"],
                r["eval_ne"],
                r["train_ne"],
                "published" if r["published"] else "not published",
                r["reason"],
            )
        return {"trained": list(done.values()), "not_trained": missing}

    planned = plan()
    summary(planned, vm.expand_kwargs(planned))


exfm_vm_finetune()

"""### exfm_vm_finetune: one small model per vertical, distilled from the stored FM predictions

Started by the Asset `exfm_das_scored` (the scored days and the content ids of their DAS
partitions ride in the event: each VM distills from exactly that partition, and skips a day whose
partition was replaced since); or trigger it with the form (`ds`, optionally `variant`). The
verticals come from params (features.verticals): one mapped task per vertical and day trains that
vertical's VM (variant vm.variant: baseline, kd, ah or ah_sa) from the DAS training join, with
progressive evaluation first; then a gated publish per vertical. A vertical that fails does not
stop the others; `summary` reports every vertical.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Param, dag, task
from exfm_common import (
    DAS_SCORED,
    config,
    event_content,
    event_days,
    on_assets,
    run_stage,
)

from exfm.variants import NAMES

CFG = config()


@dag(
    **on_assets(CFG, "exfm_vm_finetune", [DAS_SCORED], ["vm"], __doc__),
    params={
        "ds": Param(None, type=["null", "string"], format="date", description="the day"),
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
        map_index_template="{{ task.op_kwargs['vertical'] }}",
        doc_md="Evaluate, train one pass and snapshot one vertical's VM.",
    )
    def train_vm(
        ds: str, vertical: str, das: dict[str, str], *, params: Any = None
    ) -> dict[str, Any]:
        # the event names the partition it announced: read that version, if it is still current
        version = next(iter(das)).split("/")[1].removeprefix("fm_version=") if das else None
        variant = (params or {}).get("variant") or None
        return run_stage("train_vm", ds, vertical, variant, version, expect=das)

    @task(doc_md="Publish the VM if its gate blessed it (skipped with the reason otherwise).")
    def publish_vm(result: dict[str, Any]) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowSkipException

        if not result["published"]:
            raise AirflowSkipException(
                f"{result['model']}/{result['vertical']}@{result['ds']} is not published: "
                f"{result['reason']}"
            )
        return result

    @task(trigger_rule="all_done", doc_md="Every vertical's outcome, failed ones included.")
    def summary(results: Any) -> list[dict[str, Any]]:
        import logging

        done = [r for r in results if r]
        for r in done:
            logging.getLogger(__name__).info(
                "%s %s@%s: eval NE %s, train NE %s, published %s (%s)",
                r["model"],
                r["vertical"],
                r["ds"],
                r["eval_ne"],
                r["train_ne"],
                r["published"],
                r["reason"],
            )
        return done

    trained = train_vm.expand_kwargs(plan())
    publish_vm.expand(result=trained)
    summary(trained)


exfm_vm_finetune()

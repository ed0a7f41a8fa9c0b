"""### exfm_vm_finetune: one small model per vertical, distilled from the stored FM predictions

Started by the Asset `exfm_das_scored` (the scored days and the content ids of their DAS
partitions ride in the event: each VM distills from exactly that partition, and skips a day whose
partition was replaced since); or trigger it with the form (`ds`, optionally `variant`). The
verticals come from params (features.verticals). One mapped group instance per day, vertical and
variant, named by them in the UI ("2026-01-07 feed ah_sa"): `train_vm` trains that VM (the
vertical's variant, vm.variant by default: baseline, kd, ah or ah_sa; and the baseline VM beside
it when pipeline.compare_baseline, for the NE gain) from the DAS training join, with progressive
evaluation first; then `publish_vm`, gated, waits on that training only (a model its gate did not
bless shows as a skipped `publish_vm` with the reason). A vertical that fails does not stop the
others (the run ends failed). `report` evaluates every model on the lake's days and writes the
pipeline report into the lake (`reports/pipeline/`, the function `dvc repro` runs); it is skipped
while no model has a progressive evaluation yet (the next run's covers it); `summary`
gives every day and vertical's outcome, failed ones included: the run's note (NE, gain over the
baseline, published or not and why).
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
    fmt_ne,
    on_assets,
    published,
    run_stage,
    summarize,
)

from exfm.variants import BASELINE, NAMES, POOLED

CFG = config()
# How the UI names each mapped task instance: its day, vertical and variant ("2026-01-07 feed
# ah_sa"), rendered with the task's context once its arguments are resolved (an instance that
# never ran, upstream failed, keeps its number).
TRAIN_LABEL = (
    "{{ task.op_kwargs['ds'] }} {{ task.op_kwargs['vertical'] }} {{ task.op_kwargs['variant'] }}"
)
PUBLISH_LABEL = "{{ task.op_kwargs['result']['label'] }}"


def _label(item: dict[str, Any]) -> str:
    return f"{item['ds']} {item['vertical']} {item['variant']}"


def _variants(vertical: str, chosen: str | None) -> list[str]:
    """The variants a vertical trains: the form's or its own, and the baseline to compare with."""
    own = chosen or CFG.vm.for_vertical(vertical).variant
    return [own, BASELINE] if CFG.pipeline.compare_baseline and own != BASELINE else [own]


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
    @task(doc_md="One (day, vertical, variant) per VM to train, with the DAS partition to read.")
    def plan(*, triggering_asset_events: Any = None, params: Any = None) -> list[dict[str, Any]]:
        from airflow.sdk.exceptions import AirflowFailException

        days = event_days(triggering_asset_events, DAS_SCORED, params)
        if not days:
            raise AirflowFailException("no day to train: give `ds` in the form")
        scored = event_content(triggering_asset_events, DAS_SCORED, "das")
        chosen = (params or {}).get("variant") or None
        return [
            {"ds": ds, "vertical": v, "variant": variant, "das": scored.get(ds) or {}}
            for ds in days
            for v in CFG.features.verticals
            for variant in _variants(v, chosen)
        ]

    @task(
        pool=CFG.airflow.pool,
        queue=CFG.airflow.torch_queue,
        map_index_template=TRAIN_LABEL,
        doc_md="Evaluate, train one pass and snapshot one vertical's VM.",
    )
    def train_vm(ds: str, vertical: str, variant: str, das: dict[str, str]) -> dict[str, Any]:
        # the event names the partition it announced: read that version, if it is still current
        version = next(iter(das)).split("/")[1].removeprefix("fm_version=") if das else None
        result = run_stage("train_vm", ds, vertical, variant, version, expect=das)
        return {**result, "variant": variant, "label": f"{ds} {vertical} {variant}"}

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
    def vm(ds: str, vertical: str, variant: str, das: dict[str, str]) -> Any:
        """Train one VM of one day and vertical, then publish it if its gate blessed it."""
        # by name: the labels read op_kwargs
        trained = train_vm(ds=ds, vertical=vertical, variant=variant, das=das)
        publish_vm(result=trained)
        return trained

    @task(
        trigger_rule="all_done",
        doc_md="Evaluate every model on the lake's days; the pipeline report into the lake.",
    )
    def report() -> dict[str, Any]:
        import logging

        from airflow.sdk.exceptions import AirflowSkipException

        from exfm.lake import EVALS, Lake

        # A model is evaluated on the day after one it trained on: before any has two days (the
        # first VM day, its FM's second day still training), there is nothing to report yet and
        # the next run's report covers this one's models.
        if not Lake.from_config(config().lake).partitions(EVALS):
            raise AirflowSkipException("no model has a progressive evaluation yet: no report")
        done = run_stage("pipeline_report")
        logging.getLogger(__name__).info("pipeline report: %s", done["report"])
        return done

    @task(doc_md="Every VM's outcome, failed ones included (the run's note).")
    def summary(
        planned: list[dict[str, Any]] | None, results: Any, *, ti: Any = None
    ) -> dict[str, Any]:
        # Outside the group the trainings' results arrive as a list, as one dict when only one
        # training succeeded, or None when none did; one that failed or was skipped has none,
        # so its state comes from Airflow (map index i is planned[i]).
        if not isinstance(results, list):
            results = [] if results is None else [results]
        done = {r["label"]: r for r in results}
        states = ti.get_task_states(
            dag_id=ti.dag_id, task_ids=["train_vm", "report"], run_ids=[ti.run_id]
        )
        missing, lines = {}, []
        for i, item in enumerate(planned or []):  # none: `plan` failed
            label = _label(item)
            if (r := done.get(label)) is None:
                missing[label] = state = str(states.get(ti.run_id, {}).get(f"train_vm_{i}"))
                lines.append(f"{label}: {state}, no VM (see train_vm [{label}])")
                continue
            base = done.get(_label({**item, "variant": BASELINE}))
            gain = ""
            if item["variant"] != BASELINE and base and r["eval_ne"] and base["eval_ne"]:
                pct = 100 * (base["eval_ne"] - r["eval_ne"]) / base["eval_ne"]
                gain = f" ({pct:+.2f}% vs the baseline's {fmt_ne(base['eval_ne'])})"
            ahead = (  # progressive evaluation: the day predicted before training on it
                f"NE {fmt_ne(r['eval_ne'])}{gain}"
                if r["eval_ne"] is not None
                else "no earlier VM to evaluate"
            )
            lines.append(f"{label}: {r['rows']:,} rows, {ahead}; {published(r)}")
        if not planned:
            lines.append("plan failed: see its log")
        if str(states.get(ti.run_id, {}).get("report")) == "skipped":
            lines.append("pipeline report: none yet (no model evaluated on a later day)")
        pipeline = ti.xcom_pull(task_ids="report")
        if pipeline:
            pooled = pipeline["metrics"].get(POOLED, {}).get("vm") or {}
            if pooled.get("ne_gain_pct") is not None:
                lines.append(
                    f"every day so far: VM NE {fmt_ne(pooled['ne'])}, "
                    f"{pooled['ne_gain_pct']:+.2f}% vs the baseline"
                )
            lines.append(f"pipeline report: {pipeline['report']}")
        days = sorted({item["ds"] for item in planned or []})
        return summarize(days, lines, trained=list(done.values()), not_trained=missing)

    planned = plan()
    trained = vm.expand_kwargs(planned)
    # a teardown: the run's state is its work's (a failed training fails the run)
    trained >> report() >> summary(planned, trained).as_teardown()


exfm_vm_finetune()

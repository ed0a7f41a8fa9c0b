"""The DAGs: integrity (light imports, retries, docs), and dag.test() runs of every DAG for demo
days on a tiny config: the FM day, the DAS (never scoring a day with an FM trained on it, and
announcing only the days it scored), the per-vertical fan-out (each instance named by its day
and vertical; one that fails stops no other), the drift report, a corrupted day that stops before
the FM trains, and the Trigger forms' user errors (refused before a run exists, or failed at once
without retries)."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from exfm import das, stages
from exfm.config import load_config, resolve_paths
from exfm.errors import LakeError, TrainingError
from exfm.lake import DAS, IMPRESSIONS, Lake
from exfm.registry import Registry
from tests.airflow.conftest import DAGS, ENV, PARAMS

pytestmark = pytest.mark.slow

DAG_IDS = ["exfm_das_backfill", "exfm_data_quality", "exfm_fm_daily", "exfm_vm_finetune"]
DAYS = ["2026-01-05", "2026-01-06"]


def _utc(day: str) -> dt.datetime:
    return dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC)


def _lake() -> Lake:
    return Lake.from_config(resolve_paths(load_config(PARAMS), PARAMS.parent).lake)


def test_dags_load_without_errors_and_are_documented(dagbag) -> None:
    assert dagbag.import_errors == {}
    assert sorted(dagbag.dag_ids) == DAG_IDS
    for dag in dagbag.dags.values():
        assert dag.doc_md and "exfm" in dag.tags
        assert dag.max_active_runs == 1
        for task in dag.tasks:
            assert task.retries >= 1, (dag.dag_id, task.task_id)
            assert task.owner == "exfm"
            assert task.execution_timeout is not None
    torch_tasks = {
        ("exfm_fm_daily", "train_fm"),
        ("exfm_das_backfill", "score"),
        ("exfm_vm_finetune", "train_vm"),
    }
    for dag_id, task_id in torch_tasks:
        assert dagbag.dags[dag_id].get_task(task_id).pool == "exfm_torch"


PROBE = """
import importlib.util, json, sys, time
sys.path.insert(0, sys.argv[1])
import airflow.sdk  # the SDK itself is not the DAG file's cost
start = time.perf_counter()
spec = importlib.util.spec_from_file_location("dagfile", sys.argv[2])
spec.loader.exec_module(importlib.util.module_from_spec(spec))
heavy = [m for m in ("torch", "great_expectations", "duckdb", "pyarrow", "pandas")
         if m in sys.modules]
print(json.dumps({"seconds": time.perf_counter() - start, "heavy": heavy}))
"""


@pytest.mark.parametrize("name", [f"{d}.py" for d in DAG_IDS])
def test_each_dag_file_imports_fast_and_light(name: str) -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(DAGS), str(DAGS / name)],
        capture_output=True,
        text=True,
        check=True,
        env={**ENV, "PATH": ""},
        timeout=120,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["heavy"] == []
    assert result["seconds"] < 2.0, result


RUNS_PROBE = """
import json, sys
from airflow.dag_processing.dagbag import BundleDagBag
bag = BundleDagBag(dag_folder=sys.argv[1], bundle_path=sys.argv[1])
assert not bag.import_errors, bag.import_errors
print(json.dumps({d.dag_id: d.max_active_runs for d in bag.dags.values()}))
"""


def test_only_the_dag_whose_days_are_independent_runs_several_at_once(tmp_path: Path) -> None:
    """airflow.max_active_runs 3: the data-quality DAG runs 3 days at once; the FM and VM DAGs
    (each day trains from the day before's snapshot) and the DAS (whose events start the VM DAG,
    day after day) stay one at a time."""
    params = tmp_path / "params.yaml"
    params.write_text(PARAMS.read_text().replace("airflow: {", "airflow: {max_active_runs: 3, ", 1))
    out = subprocess.run(
        [sys.executable, "-c", RUNS_PROBE, str(DAGS)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **ENV, "EXFM_PARAMS": str(params)},
        timeout=180,
    )
    runs = json.loads(out.stdout.strip().splitlines()[-1])
    assert runs == {
        "exfm_das_backfill": 1,
        "exfm_data_quality": 3,
        "exfm_fm_daily": 1,
        "exfm_vm_finetune": 1,
    }


def _states(run) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for ti in sorted(run.get_task_instances(), key=lambda t: (t.task_id, t.map_index)):
        out.setdefault(ti.task_id, []).append(str(ti.state))
    return out


def _tries(run, task_id: str) -> list[int]:
    return [ti.try_number for ti in run.get_task_instances() if ti.task_id == task_id]


def _das_events(run) -> list[dict]:
    """The extras of the `exfm_das_scored` events that this run emitted (the metadata DB)."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        query = (
            select(AssetEvent.extra)
            .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .where(
                AssetModel.name == "exfm_das_scored",
                AssetEvent.source_dag_id == run.dag_id,
                AssetEvent.source_run_id == run.run_id,
            )
        )
        return list(session.scalars(query))


def _das_content(lake: Lake, day: str) -> dict[str, str]:
    return {k: v for k, v in lake.content_ids(DAS, ds=[day]).items() if k.startswith("das/")}


def _labels(run, task_id: str) -> dict[str, str]:
    """A mapped task's states by the name the UI shows for each instance (its rendered map
    index; the number where none was rendered)."""
    return {
        ti.rendered_map_index: str(ti.state)
        for ti in run.get_task_instances()
        if ti.task_id == task_id
    }


def _xcom(run, task_id: str):
    """The value an unmapped task of this run returned."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        query = XComModel.get_many(
            run_id=run.run_id, key="return_value", task_ids=task_id, dag_ids=run.dag_id
        )
        [row] = session.scalars(query)
        return XComModel.deserialize_value(row)


def test_demo_days_through_every_dag(
    dagbag,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EXFM_PROGRESS_EVERY_S", "0")  # a progress line at every batch
    caplog.set_level("INFO")
    for day in DAYS:
        run = dagbag.dags["exfm_fm_daily"].test(logical_date=_utc(day))
        assert str(run.state) == "success", _states(run)
        assert _states(run)["publish_fm"] == ["success"]
        note = _xcom(run, "summary")
        assert note["days"] == [day]
        assert re.match(rf"{day}: checks (pass|warn, \d+ warnings)\n", note["note"]), note["note"]
        ahead = (
            "no earlier FM to evaluate" if day == DAYS[0] else r"NE \d\.\d{4} predicting the day"
        )
        fm_line = rf"FM: [\d,]+ rows, {ahead}, NE \d\.\d{{4}} in training; published$"
        assert re.search(fm_line, note["note"]), note["note"]
    # the training's progress reaches the task log as lines (no terminal there): rows, rate,
    # elapsed, ETA, then the total
    assert re.search(
        rf"train fm {DAYS[1]}: [\d.]+k?/[\d.]+k rows \(\d+%\), [\d.]+k? rows/s, elapsed "
        r"\d\d:\d\d, ETA",
        caplog.text,
    ), caplog.text[-3000:]
    assert re.search(rf"train fm {DAYS[1]}: done, [\d.]+k rows in", caplog.text)
    lake = _lake()
    assert len(lake.partitions(IMPRESSIONS)) == 2 * 4
    # the DAS as its Asset would start it for day 1 (no FM yet) and day 2, here from the form
    with pytest.raises(das.NoLiveFM):
        das.live_fm(load_config(PARAMS), Registry(lake), DAYS[0])
    run = dagbag.dags["exfm_das_backfill"].test(logical_date=None, run_conf={"start": DAYS[1]})
    assert str(run.state) == "success", _states(run)
    for part in lake.partitions(DAS):  # no day scored by an FM that trained on it
        assert das.version_day(part["fm_version"]) < part["ds"]
    [event] = _das_events(run)  # one event, naming the day scored and its partition
    assert event["days"] == [DAYS[1]] and event["das"] == {DAYS[1]: _das_content(lake, DAYS[1])}
    note = _xcom(run, "summary")["note"]
    assert re.match(
        rf"{DAYS[1]}: scored by fm-{DAYS[0]} \([\d,]+ rows, FM NE \d\.\d{{4}}\), "
        "announced$",
        note,
    ), note
    capfd.readouterr()
    run = dagbag.dags["exfm_vm_finetune"].test(logical_date=None, run_conf={"ds": DAYS[1]})
    states = _states(run)
    assert str(run.state) == "success", states
    # one mapped task per vertical and variant: its own (ah_sa) and the baseline beside it
    assert states["train_vm"] == ["success"] * 8
    assert len(states["publish_vm"]) == 8
    verticals = ("feed", "stories", "search", "video")
    labels = {f"{DAYS[1]} {v} {variant}" for v in verticals for variant in ("ah_sa", "baseline")}
    for task_id in ("train_vm", "publish_vm"):  # the UI names each by day, vertical, variant
        assert set(_labels(run, task_id)) == labels, task_id
    out, err = capfd.readouterr()
    assert "XCom not found" not in out + err  # `summary` reads the mapped results in one slice
    assert {
        m.vertical for m in (Registry(lake).meta("vm_ah_sa", v, DAYS[1]) for v in verticals)
    } == set(verticals)
    # the run ends with the pipeline report in the lake, and a note naming every VM's outcome
    assert states["report"] == ["success"] and states["summary"] == ["success"]
    page = lake.get_bytes("reports/pipeline/index.html").decode()
    assert "ExFM pipeline report" in page and 'href="../drift/index.html"' in page
    metrics = json.loads(lake.get_bytes("reports/pipeline/metrics.json"))
    # the FM was evaluated on the second day; the VMs' first day has nothing to evaluate yet
    assert metrics["feed"]["variant"] == "ah_sa" and metrics["feed"]["fm"]["rows"] > 0
    assert "vm" not in metrics["feed"]
    summary = _xcom(run, "summary")
    lines = summary["note"].splitlines()
    assert summary["days"] == [DAYS[1]]
    for v in verticals:  # the first day of a VM has no evaluation yet, so no gain either
        [line] = [x for x in lines if x.startswith(f"{DAYS[1]} {v} ah_sa: ")]
        assert re.search(
            r": [\d,]+ rows, no earlier VM to evaluate; (published|not published: .+)$", line
        ), line
    assert f"pipeline report: {lake.uri('reports/pipeline/index.html')}" in lines
    run = dagbag.dags["exfm_data_quality"].test(logical_date=None, run_conf={"ds": DAYS[1]})
    assert str(run.state) == "success", _states(run)
    assert lake.exists("reports/drift/2026-01-06.html")
    assert _xcom(run, "summary")["days"] == [DAYS[1]]


def test_a_failed_vertical_does_not_stop_the_others(
    dagbag, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A run over two days in which one vertical of one day fails to train: every other
    (day, vertical) trains and publishes, the UI names each instance by its day and vertical,
    `summary` names the failed one, and the run is failed."""
    real, broken = stages.train_vm, (DAYS[1], "stories")

    def breaks_one(cfg, ds, vertical, *args, **kwargs):  # runs inside dag.test's process
        if (ds, vertical) == broken:
            raise TrainingError(f"{vertical}@{ds}: the loss is NaN")
        return real(cfg, ds, vertical, *args, **kwargs)

    monkeypatch.setattr(stages, "train_vm", breaks_one)
    caplog.set_level("INFO")
    # Two days as an event names them (dag.test has no events): `start`/`end`, read by the code
    # the forms share. baseline: no DAS needed. `ds` is reset: in dag.test's one process a run's
    # conf stays in the DAG's Params (Param.resolve keeps the value): the last run's ds would win.
    form = {"ds": None, "start": DAYS[0], "end": DAYS[1], "variant": "baseline"}
    run = dagbag.dags["exfm_vm_finetune"].test(logical_date=None, run_conf=form)
    labels = [f"{d} {v} baseline" for d in DAYS for v in ("feed", "stories", "search", "video")]
    failed = " ".join(broken) + " baseline"
    assert _labels(run, "train_vm") == {
        label: "failed" if label == failed else "success" for label in labels
    }
    summary = _xcom(run, "summary")
    assert summary["not_trained"] == {failed: "failed"}
    gate = {r["label"]: r["published"] for r in summary["trained"]}
    assert sorted(gate) == sorted(set(labels) - {failed})
    # each publish waited on its own training only; the broken one's never ran, so the UI shows
    # its number
    assert _labels(run, "publish_vm") == {
        **{label: "success" if gate[label] else "skipped" for label in gate},
        str(labels.index(failed)): "upstream_failed",
    }
    assert _states(run)["summary"] == ["success"]
    assert str(run.state) == "failed"  # a leaf (the broken publish) did not run
    assert f"{failed}: failed, no VM (see train_vm [{failed}])" in summary["note"].splitlines()
    assert "pipeline report: " in summary["note"]  # the report ran all the same


def test_the_summary_takes_every_shape_of_the_mapped_results(dagbag) -> None:
    """Outside the mapped group, Airflow hands `summary` a list of the trainings' results, one
    dict when only one succeeded, None when none did (or `plan` failed)."""
    from types import SimpleNamespace

    summary = dagbag.dags["exfm_vm_finetune"].get_task("summary").python_callable
    states = {"r": {"train_vm_0": "success", "train_vm_1": "failed", "train_vm_2": "skipped"}}
    ti = SimpleNamespace(
        dag_id="exfm_vm_finetune",
        run_id="r",
        get_task_states=lambda **_: states,
        xcom_pull=lambda **_: None,  # `report` failed
    )
    planned = [
        {"ds": DAYS[1], "vertical": v, "variant": "kd"} for v in ("feed", "stories", "search")
    ]
    feed = {"ds": DAYS[1], "vertical": "feed", "model": "vm_kd", "published": False, "rows": 900}
    feed |= {"eval_ne": None, "train_ne": 0.99, "reason": "NE 0.99 is above publish.max_ne"}
    feed |= {"variant": "kd", "label": f"{DAYS[1]} feed kd"}
    out = summary(planned, feed, ti=ti)
    assert out["trained"] == [feed]
    assert out["not_trained"] == {
        f"{DAYS[1]} stories kd": "failed",
        f"{DAYS[1]} search kd": "skipped",
    }
    assert out["days"] == [DAYS[1]]
    assert out["note"].splitlines() == [
        f"{DAYS[1]} feed kd: 900 rows, no earlier VM to evaluate; not published: NE 0.99 is "
        "above publish.max_ne",
        f"{DAYS[1]} stories kd: failed, no VM (see train_vm [{DAYS[1]} stories kd])",
        f"{DAYS[1]} search kd: skipped, no VM (see train_vm [{DAYS[1]} search kd])",
    ]
    assert summary(planned, [feed], ti=ti) == out
    none = summary(planned, None, ti=ti)
    assert none["trained"] == [] and list(none["not_trained"]) == [
        f"{DAYS[1]} {p['vertical']} kd" for p in planned
    ]
    empty = summary(None, None, ti=ti)
    assert (empty["trained"], empty["not_trained"], empty["days"]) == ([], {}, [])
    assert empty["note"] == "plan failed: see its log"


def test_a_backfill_of_scored_days_announces_nothing(
    dagbag, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level("INFO")  # the task's own lines (one per day)
    lake = _lake()
    before = _das_content(lake, DAYS[1])
    run = dagbag.dags["exfm_das_backfill"].test(logical_date=None, run_conf={"start": DAYS[1]})
    assert str(run.state) == "success", _states(run)
    assert _states(run)["score"] == ["skipped"]
    assert _das_events(run) == []  # no event, so no VM retrains
    assert _das_content(lake, DAYS[1]) == before
    assert f"das {DAYS[1]}: skipped (not scored: its predictions are current" in caplog.text
    skip = "".join(capfd.readouterr())  # the task runner's line: the reason `score` skipped
    assert f"nothing scored, no exfm_das_scored event: {DAYS[1]} not scored" in skip
    note = _xcom(run, "summary")["note"].splitlines()  # the run's note says the same
    assert note[0].startswith(f"{DAYS[1]}: skipped (not scored: its predictions are current")
    assert note[1] == "nothing scored: no exfm_das_scored event, no VM retrains"


def test_a_retry_announces_the_days_its_failed_try_scored(
    dagbag, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.models.task_state_store import TaskStateStoreModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    real, calls = stages.backfill_das, []

    def fails_once_after_scoring(cfg, ds, fm_version=None, force=False, expect=None, warm=None):
        calls.append(ds)
        if len(calls) == 1:  # scores (force: the day is current), then S3 goes away
            real(cfg, ds, fm_version, True, expect, warm)
            raise LakeError("s3://lake is unreachable")
        return real(cfg, ds, fm_version, force, expect, warm)

    monkeypatch.setattr(stages, "backfill_das", fails_once_after_scoring)
    before = _das_content(_lake(), DAYS[1])
    run = dagbag.dags["exfm_das_backfill"].test(logical_date=None, run_conf={"start": DAYS[1]})
    assert str(run.state) == "success", _states(run)
    assert calls == [DAYS[1]] * 2 and _tries(run, "score") == [2]
    after = _das_content(_lake(), DAYS[1])
    assert after != before  # the first try re-scored the day; the retry found it current
    [event] = _das_events(run)
    assert event["days"] == [DAYS[1]] and event["das"] == {DAYS[1]: after}
    with create_session() as session:  # the marks are gone once the event is out
        where = TaskStateStoreModel.run_id == run.run_id
        assert list(session.scalars(select(TaskStateStoreModel.key).where(where))) == []


def test_the_forms_refuse_what_a_schema_can(dagbag) -> None:
    from airflow.exceptions import ParamValidationError
    from airflow.models.dagrun import DagRun
    from airflow.serialization.serialized_objects import DagSerialization
    from airflow.utils.session import create_session

    refused = {
        "exfm_das_backfill": [
            {"start": "2026-13-01"},
            {"start": "01/05/2026"},
            {"end": "2026-1-5"},
            {"start": ""},
            {"fm_version": "fm-2026-1-5"},
            {"fm_version": "latest"},
            {"force": "yes"},
        ],
        "exfm_vm_finetune": [{"ds": "2026-02-30"}, {"variant": "best"}],
        "exfm_data_quality": [{"ds": "yesterday"}],
    }
    accepted = {  # {}: the params of a run that an asset event starts
        "exfm_das_backfill": [{}, {"start": DAYS[0], "end": None, "fm_version": "fm-2026-01-05"}],
        "exfm_vm_finetune": [{}, {"ds": None}, {"ds": DAYS[1], "variant": "kd"}],
        "exfm_data_quality": [{}, {"ds": DAYS[0]}],
    }
    for dag_id in refused:  # what SerializedDAG.create_dagrun checks before creating a run
        dag = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dagbag.dags[dag_id]))
        for form in refused[dag_id]:
            with pytest.raises(ParamValidationError):
                dag.params.deep_merge(form).validate()
        for form in accepted[dag_id]:
            dag.params.deep_merge(form).validate()
    # through create_dagrun, the path of the UI's Trigger form and the REST API: no run exists
    with pytest.raises(ParamValidationError, match="start"):
        dagbag.dags["exfm_das_backfill"].test(logical_date=None, run_conf={"start": "2026-13-01"})
    with create_session() as session:
        runs = DagRun.find(dag_id="exfm_das_backfill", session=session)
        assert [r for r in runs if (r.conf or {}).get("start") == "2026-13-01"] == []


def test_a_form_error_fails_at_once_without_retries(dagbag) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    run = dagbag.dags["exfm_das_backfill"].test(
        logical_date=None, run_conf={"start": DAYS[1], "end": DAYS[0]}
    )
    assert str(run.state) == "failed"
    assert _states(run) == {
        "days": ["failed"],
        "score": ["upstream_failed"],
        "summary": ["success"],  # all_done: says what failed
    }
    assert _xcom(run, "summary")["note"] == "days failed: see its log; days asked: none"
    assert _tries(run, "days") == [1]  # not retried
    first_tasks = {
        "exfm_das_backfill": "days",
        "exfm_vm_finetune": "plan",
        "exfm_data_quality": "drift_report",
    }
    errors = [
        ({"start": DAYS[1], "end": DAYS[0]}, "`end` (2026-01-05) is before its `start`"),
        ({"end": DAYS[0]}, "`end` (2026-01-05) without `start`"),
        ({"start": "2026-02-30"}, "`start`: invalid ds '2026-02-30'"),
        ({"ds": "2026-1-5"}, "`ds`: invalid ds '2026-1-5'"),
        ({}, "no day"),
    ]
    for dag_id, task_id in first_tasks.items():
        first = dagbag.dags[dag_id].get_task(task_id).python_callable
        for form, message in errors:
            with pytest.raises(AirflowFailException, match=re.escape(message)):
                first(triggering_asset_events=None, params=form)


def test_a_corrupted_day_stops_at_the_check(dagbag) -> None:
    lake = _lake()
    day = DAYS[1]  # inside the DAG's demo dates (world.days = 2)
    stages.land(resolve_paths(load_config(PARAMS), PARAMS.parent), day)
    for vertical in ("feed", "stories", "search", "video"):  # a day whose labels are broken
        values = {"ds": day, "vertical": vertical}
        t = lake.read_partition(IMPRESSIONS, values).drop_columns(["ds", "vertical"])
        t = t.set_column(
            t.column_names.index("label"), "label", pa.array([2] * t.num_rows, pa.int8())
        )
        lake.write_partition(IMPRESSIONS, values, t)
    before = [m.ds for m in Registry(lake).history("fm", None)]
    run = dagbag.dags["exfm_fm_daily"].test(logical_date=_utc(day), mark_success_pattern="land")
    states = _states(run)
    assert str(run.state) == "failed"  # `summary`, a teardown, does not make it a success
    assert states["check"] == ["failed"]
    assert states["train_fm"] == ["upstream_failed"]
    assert states["publish_fm"] == ["upstream_failed"]
    assert [m.ds for m in Registry(lake).history("fm", None)] == before  # nothing trained
    assert _xcom(run, "summary")["note"] == (
        f"{day}: check failed: the FM did not train (see its log)"
    )
    from data_checks.gate import load_result

    result = load_result(lake, day)
    assert result is not None and result.status == "fail"
    assert any(
        r.check == "expect_column_values_to_be_in_set" and r.feature == "label"
        for r in result.with_status("fail")
    )


def test_the_pipeline_report_waits_for_a_progressive_evaluation(
    dagbag, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before any model has been evaluated on a day after one it trained on (the first VM day,
    its FM's next day still training), `report` is skipped with the reason, not failed: the next
    run's report covers this run's models."""
    from airflow.sdk.exceptions import AirflowSkipException

    params = tmp_path / "params.yaml"
    params.write_text(PARAMS.read_text())  # its lake (beside it) is empty
    monkeypatch.setenv("EXFM_PARAMS", str(params))
    report = dagbag.dags["exfm_vm_finetune"].get_task("report").python_callable
    with pytest.raises(AirflowSkipException, match="no model has a progressive evaluation yet"):
        report()
    assert not (tmp_path / "lake" / "reports").exists()

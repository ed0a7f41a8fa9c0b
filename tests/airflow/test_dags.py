"""The DAGs: integrity (light imports, retries, docs), and dag.test() runs of every DAG for demo
days on a tiny config: the FM day, the DAS (never scoring a day with an FM trained on it), the
per-vertical fan-out, the drift report, and a corrupted day that stops before the FM trains."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys

import pyarrow as pa
import pytest

from exfm import das, stages
from exfm.config import load_config, resolve_paths
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


def _states(run) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for ti in sorted(run.get_task_instances(), key=lambda t: (t.task_id, t.map_index)):
        out.setdefault(ti.task_id, []).append(str(ti.state))
    return out


def test_demo_days_through_every_dag(dagbag) -> None:
    for day in DAYS:
        run = dagbag.dags["exfm_fm_daily"].test(logical_date=_utc(day))
        assert str(run.state) == "success", _states(run)
        assert _states(run)["publish_fm"] == ["success"]
    lake = _lake()
    assert len(lake.partitions(IMPRESSIONS)) == 2 * 4
    # the DAS as its Asset would start it for day 1 (no FM yet) and day 2, here from the form
    with pytest.raises(das.NoLiveFM):
        das.live_fm(load_config(PARAMS), Registry(lake), DAYS[0])
    run = dagbag.dags["exfm_das_backfill"].test(logical_date=None, run_conf={"start": DAYS[1]})
    assert str(run.state) == "success", _states(run)
    for part in lake.partitions(DAS):  # no day scored by an FM that trained on it
        assert das.version_day(part["fm_version"]) < part["ds"]
    run = dagbag.dags["exfm_vm_finetune"].test(logical_date=None, run_conf={"ds": DAYS[1]})
    states = _states(run)
    assert str(run.state) == "success", states
    assert states["train_vm"] == ["success"] * 4  # one mapped task per vertical
    assert len(states["publish_vm"]) == 4
    assert {
        m.vertical
        for m in (
            Registry(lake).meta("vm_ah_sa", v, DAYS[1])
            for v in ("feed", "stories", "search", "video")
        )
    } == {"feed", "stories", "search", "video"}
    run = dagbag.dags["exfm_data_quality"].test(logical_date=None, run_conf={"ds": DAYS[1]})
    assert str(run.state) == "success", _states(run)
    assert lake.exists("reports/drift/2026-01-06.html")


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
    assert states["check"] == ["failed"]
    assert states["train_fm"] == ["upstream_failed"]
    assert states["publish_fm"] == ["upstream_failed"]
    assert [m.ds for m in Registry(lake).history("fm", None)] == before  # nothing trained
    from data_checks.gate import load_result

    result = load_result(lake, day)
    assert result is not None and result.status == "fail"
    assert any(
        r.check == "expect_column_values_to_be_in_set" and r.feature == "label"
        for r in result.with_status("fail")
    )

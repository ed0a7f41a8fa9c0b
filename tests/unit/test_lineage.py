"""Lineage (exfm/lineage.py) on hand-made artifacts: names, what changed, staleness through a
chain of inputs, a check window that gains a day, the artifacts a user can name, and the gate's
answer to a check made on other content (data_checks/gate.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from data_checks.gate import NotChecked, check_inputs, require_pass
from exfm.config import Config
from exfm.errors import ExfmError
from exfm.lake import CHECKS, DAS, EVALS, IMPRESSIONS, Lake
from exfm.lineage import (
    Change,
    Graph,
    changes,
    current_id,
    impressions_name,
    inputs_metadata,
    kind_of,
    parse_snapshot,
    snapshot_name,
)

D1, D2, D3 = "2026-01-05", "2026-01-06", "2026-01-07"


def _rows(gen: int) -> pa.Table:
    return pa.table({"example_id": pa.array(range(4), pa.int64()), "gen": [gen] * 4})


def _land(lake: Lake, ds: str, vertical: str = "feed", gen: int = 0) -> str:
    return lake.write_partition(IMPRESSIONS, {"ds": ds, "vertical": vertical}, _rows(gen)).write_id


def _snapshot(lake: Lake, name: str, sha: str, inputs: dict[str, str]) -> None:
    model, vertical, ds = parse_snapshot(name)  # type: ignore[misc]
    meta = {
        "model": model,
        "vertical": vertical,
        "ds": ds,
        "kind": "vm" if vertical else "fm",
        "spec_fingerprint": "x",
        "sha256": sha,
        "inputs": inputs,
    }
    lake.put_bytes(f"{name}/meta.json", json.dumps(meta).encode())


def _derived(lake: Lake, dataset: object, values: dict[str, str], inputs: dict[str, str]) -> str:
    return lake.write_partition(
        dataset,  # type: ignore[arg-type]
        values,
        pa.table({"v": [1]}),
        metadata=inputs_metadata(inputs),
    ).write_id


def test_names_kinds_and_labels() -> None:
    assert impressions_name(D1, "feed") == f"impressions/ds={D1}/vertical=feed"
    assert snapshot_name("vm_ah_sa", "feed", D1) == f"registry/vm_ah_sa/feed/ds={D1}"
    assert parse_snapshot(f"registry/fm/ds={D1}") == ("fm", None, D1)
    assert parse_snapshot(f"registry/../ds={D1}") is None
    assert kind_of(f"das/fm_version=fm-{D1}/ds={D2}") == "das"
    assert kind_of(f"registry/fm/ds={D1}") == "snapshot"
    for bad in ("impressions/ds=2026-13-01/vertical=feed", "nothing/ds=2026-01-05", "../etc"):
        with pytest.raises(ExfmError, match="not an artifact name"):
            kind_of(bad)


def test_changes_say_what_moved(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    a = _land(lake, D1)
    name = impressions_name(D1, "feed")
    assert changes(lake, {name: a}) == []
    b = _land(lake, D1, gen=1)
    assert changes(lake, {name: a}) == [Change(name, a, b)]
    gone = impressions_name(D2, "feed")
    assert changes(lake, {gone: "x"}) == [Change(gone, "x", None)]
    assert "no longer in the lake" in Change(gone, "x", None).describe()
    assert "was not there" in Change(gone, None, "y").describe()
    assert current_id(lake, snapshot_name("fm", None, D1)) is None


def test_staleness_follows_the_chain_of_inputs(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    rows = {v: _land(lake, D2, v) for v in ("feed", "video")}
    imp = {impressions_name(D2, v): rows[v] for v in rows}
    fm = snapshot_name("fm", None, D1)
    _snapshot(lake, fm, "a" * 64, {impressions_name(D1, "feed"): _land(lake, D1)})
    das = {"fm_version": f"fm-{D1}", "ds": D2}
    das_id = _derived(lake, DAS, das, {**imp, fm: "a" * 64})
    das_name = DAS.rel_dir(das)
    vm = snapshot_name("vm_ah_sa", "feed", D2)
    _snapshot(lake, vm, "b" * 64, {impressions_name(D2, "feed"): rows["feed"], das_name: das_id})
    evals = {"model": "vm_ah_sa", "vertical": "feed", "ds": D3}
    _derived(lake, EVALS, evals, {vm: "b" * 64})
    graph = Graph.build(lake, reference_days=7)
    assert graph.all_stale() == []
    assert graph.made_into(das_name) == [vm]

    _land(lake, D2, "video", gen=1)  # the other vertical of the day changes
    graph = Graph.build(lake, reference_days=7)
    assert graph.stale(das_name)[0].startswith(f"impressions/ds={D2}/vertical=video was")
    assert graph.stale(vm) == [f"made from {das_name}, which is stale"]
    assert graph.stale(EVALS.rel_dir(evals)) == [f"made from {vm}, which is stale"]
    assert graph.stale(fm) == []  # the FM trained on D1: untouched
    assert graph.all_stale() == [das_name, vm, EVALS.rel_dir(evals)]
    described = graph.describe(vm)
    assert described["stale"] and {i["name"]: i["status"] for i in described["made_from"]} == {
        impressions_name(D2, "feed"): "ok",
        das_name: "stale",
    }
    # a vertical the FM never saw lands on its day: what the FM and the DAS read now differs
    _land(lake, D1, "search")
    graph = Graph.build(lake, reference_days=7)
    assert any("was not there when it was made" in r for r in graph.stale(fm))


def test_a_check_goes_stale_when_its_window_gains_a_day(tiny_cfg: Config) -> None:
    lake = Lake.from_config(tiny_cfg.lake)
    _land(lake, D1)
    _land(lake, D3)
    reference, inputs = check_inputs(tiny_cfg, lake, D3)
    assert reference == [D1] and set(inputs) == {
        impressions_name(D1, "feed"),
        impressions_name(D3, "feed"),
    }
    result = {"ds": D3, "status": "pass", "inputs": inputs, "results": []}
    lake.put_bytes(f"checks/ds={D3}/result.json", json.dumps(result).encode())
    lake.write_partition(CHECKS, {"ds": D3}, pa.table({"v": [1]}))
    passed = require_pass(tiny_cfg, lake, D3)
    assert passed is not None and (passed.ds, passed.status, passed.inputs) == (D3, "pass", inputs)
    _land(lake, D2)  # a late day lands inside the window
    with pytest.raises(NotChecked, match=f"impressions/ds={D2}/vertical=feed .* was not there"):
        require_pass(tiny_cfg, lake, D3)
    assert Graph.build(lake, tiny_cfg.checks.reference_days).stale(f"checks/ds={D3}")
    old = {k: v for k, v in result.items() if k != "inputs"}  # made before checks recorded ids
    lake.put_bytes(f"checks/ds={D3}/result.json", json.dumps(old).encode())
    with pytest.raises(NotChecked, match="before checks recorded content ids"):
        require_pass(tiny_cfg, lake, D3)


def test_what_a_user_can_name(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    _land(lake, D1)
    _snapshot(lake, snapshot_name("fm", None, D1), "a" * 64, {})
    _snapshot(lake, snapshot_name("vm_kd", "feed", D1), "c" * 64, {})
    graph = Graph.build(lake, reference_days=7)
    assert graph.select(f"fm@{D1}") == [f"registry/fm/ds={D1}"]
    assert graph.select(f"vm_kd/feed@{D1}") == [f"registry/vm_kd/feed/ds={D1}"]
    assert graph.select(D1) == [
        impressions_name(D1, "feed"),
        f"registry/fm/ds={D1}",
        f"registry/vm_kd/feed/ds={D1}",
    ]
    assert graph.stale(f"registry/fm/ds={D1}") == [
        "no lineage record: made before content ids were recorded"
    ]
    with pytest.raises(ExfmError, match="holds nothing for ds=2026-01-09"):
        graph.select("2026-01-09")
    with pytest.raises(ExfmError, match="is not in the lake"):
        graph.select(f"checks/ds={D1}")

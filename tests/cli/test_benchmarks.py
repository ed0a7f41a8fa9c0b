"""Every script in benchmarks/ through its real command line at a small size: it exits 0 and
prints one JSON object with the machine and, for each figure it measures against a reference, a
positive ratio to it. bench_lineage.py runs on the unit tests' small world and tiny models (the
default world fails its checks at a few thousand rows a day); bench_dvc_noop.py runs on a
one-stage DVC project built in a temp folder, since the repository's pipeline needs `make run`."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, SMALL_WORLD, TINY_MODELS
from tests.e2e.dvc_project import dvc

SMALL = [a for o in [*SMALL_WORLD, *TINY_MODELS] for a in ("--set", o)]

# script, its small-size flags, the key of its ratio(s) to the reference
CASES = [
    ("bench_world.py", ["--rows", "3000", "--repeats", "1"], "ratio_to_reference"),
    ("bench_checks.py", ["--rows", "3000"], "ratio_to_reference"),
    ("bench_das.py", ["--rows", "3000"], "ratio_to_forward"),
    ("bench_train.py", ["--rows", "3000"], "train_fraction_of_matmul_peak"),
    ("bench_lineage.py", ["--repeat", "1", *SMALL], "share_pct"),
    ("bench_dvc_noop.py", ["--repeat", "1"], "ratio_to_startup"),
]


def dvc_project(root: Path) -> Path:
    """A DVC project (no git) with one stage, already reproduced: `dvc repro` is then a no-op."""
    root.mkdir()
    (root / "in.txt").write_text("in\n")
    stage = ["-n", "copy", "-d", "in.txt", "-o", "out.txt", "cp in.txt out.txt"]
    for args in (["init", "--no-scm", "-q"], ["stage", "add", "-q", *stage], ["repro", "-q"]):
        done = dvc(root, *args)
        assert done.returncode == 0, done.stderr
    return root


def values(obj: Any, key: str) -> Iterator[Any]:
    """Every value of `key` in nested dicts."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == key:
                yield v
            yield from values(v, key)


def bench(script: str, *args: str, timeout: int = 300) -> dict[str, Any]:
    """Run benchmarks/<script> as a user does; it exits 0 and prints one JSON object with the
    machine."""
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout)
    assert out["machine"]["cpus"] >= 1
    return out


@pytest.mark.slow
@pytest.mark.parametrize(("script", "args", "ratio"), CASES, ids=[c[0] for c in CASES])
def test_benchmark_runs_and_prints_json(
    script: str, args: list[str], ratio: str, tmp_path: Path
) -> None:
    if script == "bench_dvc_noop.py":
        args = [*args, "--project", str(dvc_project(tmp_path / "project"))]
    out = bench(script, *args)
    ratios = list(values(out, ratio))
    assert ratios, f"no {ratio} in {out}"
    assert all(r > 0 for r in ratios), ratios
    if script == "bench_dvc_noop.py":
        assert out["ran"] == []


@pytest.mark.slow
def test_the_checks_benchmark_flags_the_changed_columns_and_no_other() -> None:
    """bench_checks.py --detection on 20,000 rows a day: the gate's drift statistics at the
    default thresholds flag the 11 changed columns of the synthetic pair and none of the 9
    others; a 0.25-sd mean shift of a normal is flagged by the shift statistic."""
    out = bench("bench_checks.py", "--rows", "3000", "--detection", "--detection-rows", "20000")
    found = out["detection"]
    assert found["columns"] == 20 and found["changed_columns"] == 11
    assert found["true_positives"] == 11, found["missed"]
    assert found["false_positives"] == 0, found["false_alarms"]
    assert found["per_column"]["normal_mean"]["flagged_by"]["shift [all]"] == "warn"
    assert found["statistics"]["ratio_to_reference"] > 0 and "ratio_to_reference" in out["drift"]


@pytest.mark.slow
def test_the_gate_noise_benchmark_counts_false_failures() -> None:
    """bench_gate_noise.py on one small world of 5 days and its shocked days: no false failure,
    the strong shock fails, and the exit status says so."""
    small_world = ("--seeds", "1", "--shock-seeds", "1", "--worlds", "small", "--days", "5")
    out = bench("bench_gate_noise.py", *small_world, timeout=600)
    small = out["worlds"]["small"]
    assert small["seeds"] == 1 and small["days_checked"] == 4
    assert small["failing_days"] == 0 and small["false_failure_rate"] == 0.0
    assert small["reference"].startswith("the ratio bands alone")
    shocks = {s["shock"]: s["status"] for s in out["shocked_days"]}
    assert shocks["strong_shock"] == "fail" and shocks["default_shock"] in ("warn", "fail")


@pytest.mark.slow
def test_the_streaming_benchmark_measures_every_range_against_its_references() -> None:
    """bench_streaming.py over 2 and 3 days of 3000 rows in all, on the tiny models: each range
    has the FM end to end against the training pass alone, the lone days (the same snapshots),
    the registry against one snapshot and the DAS against the forward pass, as positive ratios."""
    tiny = [a for o in TINY_MODELS for a in ("--set", o)]
    out = bench("bench_streaming.py", "--days", "2", "3", "--total-rows", "3000", *tiny)
    assert out["benchmark"] == "streaming"
    assert [r["days"] for r in out["ranges"]] == [2, 3]
    for r in out["ranges"]:
        assert 2500 < r["rows"] < 3500 and r["setup"]["timed"] is False
        assert r["fm"]["target_ratio"] == 0.7 and r["fm"]["published"] >= 1
        assert r["lone"]["same_snapshots"] is True
        assert r["registry"]["snapshots"] == r["days"]
        assert r["das"]["days_scored"] == r["das_one_version"]["days_scored"] == r["days"] - 1
    ratios = ["ratio_to_model_only", "speedup_of_warm", "ratio_to_snapshot", "ratio_to_forward"]
    for key in ratios:
        found = [v for r in out["ranges"] for v in values(r, key)]
        assert found and all(isinstance(v, float) and v > 0 for v in found), (key, found)
    assert set(out["summary"]["fm"]["fit"]) == {"per_day_s", "per_range_s"}
    assert list(out["summary"]["fm"]["marginal_per_day_s"]) == ["2-3"]
    assert out["summary"]["fm"]["flat"] is None  # one step of N: nothing to compare


@pytest.mark.slow
@pytest.mark.bench  # two whole stacks, one after the other: `make test-bench`
@pytest.mark.timeout(1200)
def test_the_stack_benchmark_runs_both_stacks_through_the_same_days() -> None:
    """bench_stack.py over 2 demo days: `make stack` and `make airflow` each start from nothing,
    run the same DAG runs and train the same VMs (4 verticals of the second day), and stop; each
    figure has its ratio to make airflow's; nothing they started is left."""
    import psutil

    out = bench("bench_stack.py", "--days", "2", "--poll-s", "2", timeout=1100)
    stack, local = out["stack"], out["local"]
    assert stack["dag_runs"] == local["dag_runs"] and stack["dag_runs"]["exfm_fm_daily"] == 2
    assert stack["vms_trained"] == local["vms_trained"] == 4
    for measured in (stack, local):
        assert measured["wall_s"] > 0 and measured["queued"]["n"] == measured["tasks_succeeded"]
        assert 0 < measured["peak_pss_mb"]["workers"] < measured["peak_pss_mb"]["all"]
    ratios = out["ratio_to_reference"]
    assert set(ratios) == {
        "wall",
        "queued_mean",
        "queued_torch_mean",
        "workers_peak_pss",
        "all_peak_pss",
    }
    assert all(r is not None and r > 0 for r in ratios.values()), ratios
    left = []
    for p in psutil.process_iter(["cmdline"]):
        if any("exfm-bench-" in a for a in p.info["cmdline"] or []):
            left.append(p.info["cmdline"])
    assert not left, left

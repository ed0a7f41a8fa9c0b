"""Lineage by content, the way a user meets it, through the real `exfm` command line on a real
lake: a day checked, scored and trained is landed again with other content; the gate refuses it
until it is checked again, the backfill re-scores it without --force, the VMs retrain it, and
`exfm lineage --stale` lists exactly what was stale before and nothing after. A day that fails
its checks is refused by every entry point (the backfill too). A re-land killed with SIGKILL
half-way leaves a day that is not checked, and its lineage says which partitions are new."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from exfm.lake import IMPRESSIONS, Lake
from tests.conftest import REPO, SMALL_WORLD, TINY_MODELS, run_exfm

pytestmark = pytest.mark.slow

DAYS = ["2026-01-05", "2026-01-06", "2026-01-07", "2026-01-08"]
LAST = DAYS[-1]
VERTICALS = ["feed", "search", "stories", "video"]
BASE = [
    *SMALL_WORLD,
    *TINY_MODELS,
    "world.days=4",
    "publish.max_ne=100",
    "checks.reference_days=2",
    "checks.ctr_ratio=[0.2, 5.0]",  # 1,000 rows a vertical: the CTR moves by chance
]
# Other traffic on the same day that still passes its checks: a third of the users and ads get
# new tastes (and the same CTR level).
OTHER = ["world.shock_ds=2026-01-08", "world.shock_strength=0.3", "world.shock_ctr_shift=0"]
# Traffic that fails them: the CTR collapses.
BROKEN = ["world.shock_ds=2026-01-08", "world.shock_strength=1", "world.shock_ctr_shift=-2"]


def _sets(root: Path, *extra: str) -> list[str]:
    return [a for o in [*BASE, f"lake.root={root}", *extra] for a in ("--set", o)]


def _ok(root: Path, *args: str) -> list[dict]:
    result = run_exfm(*args, *_sets(root))
    assert result.returncode == 0, (args, result.stderr[-3000:])
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def _stale(root: Path) -> set[str]:
    return {item["name"] for item in _lineage(root, "--stale")["stale"]}


def _lineage(root: Path, *args: str) -> dict:
    result = run_exfm("lineage", *args, "--json", *_sets(root))
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four days landed, checked, learned by the FM, scored by the DAS, and the feed VM trained."""
    root = tmp_path_factory.mktemp("lineage") / "lake"
    _ok(root, "world", "generate")
    _ok(root, "check", "--start", DAYS[0], "--end", LAST)
    _ok(root, "fm", "train", "--start", DAYS[0], "--end", LAST)
    _ok(root, "das", "backfill", "--start", DAYS[1], "--end", LAST)
    _ok(root, "vm", "train", "--vertical", "feed", "--start", DAYS[1], "--end", LAST)
    assert _stale(root) == set()
    return root


@pytest.fixture
def lake_copy(trained: Path, tmp_path: Path) -> Path:
    """A copy of the trained lake (files and their content ids) for one test to change."""
    root = tmp_path / "lake"
    shutil.copytree(trained, root)
    return root


def test_a_relanded_day_is_refused_until_checked_then_rescored_and_retrained(
    lake_copy: Path,
) -> None:
    root = lake_copy
    assert _ok(root, "das", "backfill", "--ds", LAST)[0]["skipped"] is True  # nothing changed
    landed = run_exfm("world", "generate", "--start-ds", LAST, "--days", "1", *_sets(root, *OTHER))
    assert landed.returncode == 0, landed.stderr[-3000:]

    expected = {
        f"checks/ds={LAST}",
        f"registry/fm/ds={LAST}",
        f"das/fm_version=fm-{DAYS[2]}/ds={LAST}",
        f"registry/vm_ah_sa/feed/ds={LAST}",
        f"evals/model=vm_ah_sa/vertical=feed/ds={LAST}",
        *(f"evals/model=fm/vertical={v}/ds={LAST}" for v in VERTICALS),
    }
    assert _stale(root) == expected
    shown = run_exfm("lineage", "--stale", *_sets(root))  # as a person reads it
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert f"STALE registry/fm/ds={LAST}: impressions/ds={LAST}/vertical=" in shown.stdout
    total = _lineage(root, "--stale")["artifacts"]
    assert shown.stdout.rstrip().endswith(f"({len(expected)} stale of {total} artifacts)")
    day = run_exfm("lineage", f"vm_ah_sa/feed@{LAST}", *_sets(root)).stdout
    assert f"registry/vm_ah_sa/feed/ds={LAST}  [snapshot]" in day and "STALE" in day
    assert f"changed impressions/ds={LAST}/vertical=feed" in day
    neither = run_exfm("lineage", *_sets(root))
    assert neither.returncode == 2 and "give either an artifact" in neither.stderr

    for args in (
        ["fm", "train", "--ds", LAST],
        ["das", "backfill", "--ds", LAST],
        ["vm", "train", "--vertical", "feed", "--ds", LAST],
    ):
        refused = run_exfm(*args, *_sets(root))
        assert refused.returncode == 2, (args, refused.stderr[-2000:])
        assert f"ds={LAST} was checked on other impressions" in refused.stderr
        assert f"impressions/ds={LAST}/vertical=feed was" in refused.stderr
    evaluated = run_exfm("evaluate", *_sets(root))
    assert evaluated.returncode == 2 and "no longer in the lake" in evaluated.stderr
    joined = run_exfm("das", "join", "--ds", LAST, "--vertical", "feed", *_sets(root))
    assert joined.returncode == 2 and "is stale" in joined.stderr  # old predictions, new rows

    _ok(root, "check", "--ds", LAST)
    scored = _ok(root, "das", "backfill", "--ds", LAST)[0]  # no --force: it is not done
    assert scored["skipped"] is False and scored["fm_version"] == f"fm-{DAYS[2]}"
    assert _ok(root, "das", "join", "--ds", LAST, "--vertical", "feed")[0]["coverage"] == 1.0
    _ok(root, "fm", "train", "--ds", LAST)
    vm = _ok(root, "vm", "train", "--vertical", "feed", "--ds", LAST)[0]
    now = Lake(str(root)).content_ids(IMPRESSIONS, ds=[LAST])
    assert (
        vm["inputs"][f"impressions/ds={LAST}/vertical=feed"]
        == now[f"impressions/ds={LAST}/vertical=feed"]
    )
    assert vm["inputs"][f"das/fm_version=fm-{DAYS[2]}/ds={LAST}"] == scored["content_id"]
    assert _stale(root) == set()
    assert run_exfm("evaluate", *_sets(root)).returncode == 0


def test_every_entry_point_refuses_a_day_that_failed_or_was_never_checked(
    lake_copy: Path,
) -> None:
    root = lake_copy
    landed = run_exfm("world", "generate", "--start-ds", LAST, "--days", "1", *_sets(root, *BROKEN))
    assert landed.returncode == 0, landed.stderr[-3000:]
    failed = run_exfm("check", "--ds", LAST, *_sets(root))
    assert failed.returncode == 2 and "failed" in failed.stderr
    for args in (
        ["das", "backfill", "--ds", LAST],
        ["das", "backfill", "--start", DAYS[2], "--end", LAST, "--force"],
        ["fm", "train", "--ds", LAST],
        ["vm", "train", "--vertical", "feed", "--ds", LAST],
    ):
        refused = run_exfm(*args, *_sets(root))
        assert refused.returncode == 2, (args, refused.stderr[-2000:])
        assert f"ds={LAST} failed" in refused.stderr and "training is stopped" in refused.stderr
    # a day nobody checked is refused too (checks.unchecked: refuse), and named
    shutil.rmtree(root / "checks" / f"ds={LAST}")
    never = run_exfm("das", "backfill", "--ds", LAST, *_sets(root))
    assert never.returncode == 2 and f"ds={LAST} was never checked" in never.stderr
    warned = run_exfm("das", "backfill", "--ds", LAST, *_sets(root, "checks.unchecked=warn"))
    assert warned.returncode == 0 and "going on without a check" in warned.stderr


# Kills the process with SIGKILL just before the n-th impressions partition is published (the
# rename onto part.parquet), like a machine that dies half-way through landing a day.
_KILLER = """
import os, signal
_replace = os.replace
_seen = [0]
def replace(src, dst, *a, **k):
    if str(dst).endswith("part.parquet") and "/impressions/" in str(dst):
        _seen[0] += 1
        if _seen[0] == int(os.environ["EXFM_TEST_KILL_AT"]):
            os.kill(os.getpid(), signal.SIGKILL)
    return _replace(src, dst, *a, **k)
os.replace = replace
"""


def test_a_reland_killed_half_way_leaves_the_day_unchecked(lake_copy: Path, tmp_path: Path) -> None:
    root = lake_copy
    before = Lake(str(root)).content_ids(IMPRESSIONS, ds=[LAST])
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_KILLER)
    reland = ["world", "generate", "--start-ds", LAST, "--days", "1", *_sets(root, *OTHER)]
    proc = subprocess.run(
        [sys.executable, "-m", "exfm", *reland],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": f"{hook}:{REPO}", "EXFM_TEST_KILL_AT": "3"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    after = Lake(str(root)).content_ids(IMPRESSIONS, ds=[LAST])
    new = sorted(k for k in after if after[k] != before[k])
    assert new == [f"impressions/ds={LAST}/vertical={v}" for v in ("feed", "search")]  # written
    refused = run_exfm("fm", "train", "--ds", LAST, *_sets(root))
    assert refused.returncode == 2 and "checked on other impressions" in refused.stderr
    check = _lineage(root, f"checks/ds={LAST}")["artifacts"][0]
    assert check["stale"] is True
    status = {i["name"]: i["status"] for i in check["made_from"]}
    for vertical in VERTICALS:
        name = f"impressions/ds={LAST}/vertical={vertical}"
        assert status[name] == ("changed" if name in new else "ok"), status
    day = {a["name"]: a for a in _lineage(root, LAST)["artifacts"]}
    for name in new:
        assert day[name]["content_id"] == after[name] != before[name]

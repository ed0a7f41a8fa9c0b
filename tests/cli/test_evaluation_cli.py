"""The fm / das / vm / evaluate commands end to end through the real command line on a tiny world:
every step exits 0, the distilled VMs train on full FM coverage, `exfm evaluate` prints the pooled
table, and bad day arguments exit 2 with the reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from exfm.evaluation import COLUMNS
from tests.conftest import SMALL_WORLD, TINY_MODELS, run_exfm

pytestmark = pytest.mark.slow


def test_commands_end_to_end(tmp_path: Path) -> None:
    sets = [
        a
        for o in [
            *SMALL_WORLD,
            *TINY_MODELS,
            "world.days=3",
            "publish.max_ne=100",
            f"lake.root={tmp_path / 'lake'}",
        ]
        for a in ("--set", o)
    ]
    steps = [
        ["world", "generate"],
        ["check", "--start", "2026-01-05", "--end", "2026-01-07"],
        ["fm", "train", "--start", "2026-01-05", "--end", "2026-01-07"],
        ["das", "backfill", "--start", "2026-01-06", "--end", "2026-01-07"],
        [
            "vm",
            "train",
            "--vertical",
            "feed",
            "--start",
            "2026-01-06",
            "--end",
            "2026-01-07",
            "--variant",
            "baseline",
        ],
        ["vm", "train", "--vertical", "feed", "--start", "2026-01-06", "--end", "2026-01-07"],
    ]
    outputs = []
    for step in steps:
        result = run_exfm(*step, *sets)
        assert result.returncode == 0, (step, result.stderr)
        outputs.append(result.stdout)
    trained = [json.loads(line) for line in outputs[5].splitlines()]
    assert [t["model"] for t in trained] == ["vm_ah_sa", "vm_ah_sa"]
    assert trained[1]["parent_ds"] == "2026-01-06" and trained[1]["fm_coverage"] == 1.0
    result = run_exfm("evaluate", *sets)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == COLUMNS  # model, vertical, ds, rows, ctr, ne, auc, ...
    assert any(line.startswith("vm_ah_sa     feed      pooled") for line in lines)
    bad = run_exfm("vm", "train", "--vertical", "feed", "--ds", "2026-01-05", *sets)
    assert bad.returncode == 2 and "no FM predictions for ds=2026-01-05" in bad.stderr
    both = run_exfm("fm", "train", "--ds", "2026-01-05", "--start", "2026-01-05", *sets)
    assert both.returncode == 2 and "either --ds D or both --start" in both.stderr

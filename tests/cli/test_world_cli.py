"""`exfm world generate` through the real command line: it exits 0 and prints the summary table, a
row per day and vertical."""

from __future__ import annotations

import pytest

from tests.conftest import SMALL_WORLD, run_exfm

pytestmark = pytest.mark.slow


def test_cli_generates_and_prints_the_summary(tmp_path) -> None:
    result = run_exfm(
        "world",
        "generate",
        "--days",
        "2",
        *[a for o in SMALL_WORLD for a in ("--set", o)],
        "--set",
        f"lake.root={tmp_path / 'lake'}",
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "ds",
        "vertical",
        "rows",
        "clicks",
        "ctr",
        "mean_true_ctr",
        "users",
        "ads",
    ]
    assert lines[-1] == "(8 rows)"
    assert "2026-01-06  video" in result.stdout

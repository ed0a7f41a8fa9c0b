"""`exfm check` and `exfm report` through the real command line: exit 0 on clean days with one JSON
line a day, exit 2 naming the day and the expectation on a corrupted partition, and the report
copied out with a page per day and an index."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from exfm.config import Config
from exfm.lake import Lake
from tests.conftest import SMALL_WORLD, TINY_MODELS, run_exfm
from tests.unit.test_checks import _corrupt, tiny_world

pytestmark = pytest.mark.slow


@pytest.fixture
def tiny(tmp_path: Path) -> tuple[Config, Lake]:
    return tiny_world(tmp_path)


def test_cli_exit_codes_and_report_copy(tiny: tuple[Config, Lake], tmp_path: Path) -> None:
    cfg, lake = tiny
    sets = [
        a for o in [*SMALL_WORLD, *TINY_MODELS, f"lake.root={cfg.lake.root}"] for a in ("--set", o)
    ]
    ok = run_exfm("check", "--start", "2026-01-05", "--end", "2026-01-06", *sets)
    assert ok.returncode == 0, ok.stderr
    assert [json.loads(line)["ds"] for line in ok.stdout.splitlines()] == [
        "2026-01-05",
        "2026-01-06",
    ]
    _corrupt(lake, "label 2")
    bad = run_exfm("check", "--ds", "2026-01-07", *sets)
    assert bad.returncode == 2
    assert "ds=2026-01-07 failed" in bad.stderr and "expect_column_values_to_be_in_set" in (
        bad.stderr
    )
    out = tmp_path / "copy"
    rep = run_exfm("report", "--out", str(out), *sets)
    assert rep.returncode == 0, rep.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "2026-01-05.html",
        "2026-01-06.html",
        "2026-01-07.html",
        "index.html",
    ]

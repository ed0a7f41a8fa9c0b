"""The DuckDB catalog with other processes: `exfm sql` through the real command line, and a query
that waits for (does not fail on) a lock another process holds, then gives up naming the file."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from exfm.catalog import Catalog
from exfm.config import Config
from exfm.data.world import generate
from exfm.errors import LakeError
from exfm.lake import Lake
from tests.conftest import SMALL_WORLD, run_exfm

pytestmark = pytest.mark.slow


@pytest.fixture
def filled(small_cfg: Config, lake: Lake) -> Lake:
    generate(small_cfg, lake, days=2)
    return lake


def _hold_lock(path: str, seconds: float) -> subprocess.Popen[str]:
    code = (
        "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('locked', flush=True);"
        "time.sleep(float(sys.argv[2])); c.close()"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, path, str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def test_waits_for_another_process_then_succeeds(small_cfg: Config, filled: Lake) -> None:
    catalog = Catalog(filled, small_cfg.lake.catalog, lock_wait_s=30)
    catalog.refresh()
    holder = _hold_lock(small_cfg.lake.catalog, 2.0)
    started = time.monotonic()
    got = catalog.query("select count(*) as n from impressions")
    assert got.column("n")[0].as_py() > 0
    assert time.monotonic() - started > 0.5
    holder.wait(timeout=30)


def test_gives_up_on_a_held_lock_with_the_file_named(small_cfg: Config, filled: Lake) -> None:
    holder = _hold_lock(small_cfg.lake.catalog, 30.0)
    try:
        with pytest.raises(LakeError, match=r"cannot open the DuckDB catalog .*c.duckdb"):
            Catalog(filled, small_cfg.lake.catalog, lock_wait_s=0.3).refresh()
    finally:
        holder.kill()
        holder.wait(timeout=30)


def test_exfm_sql_prints_a_table(tmp_path: Path) -> None:
    sets = [a for o in SMALL_WORLD for a in ("--set", o)]
    sets += ["--set", f"lake.root={tmp_path / 'lake'}", "--set", f"lake.catalog={tmp_path}/c.db"]
    assert run_exfm("world", "generate", "--days", "1", *sets).returncode == 0
    result = run_exfm(
        "sql", "select vertical, count(*) as n from impressions group by 1 order by 1", *sets
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["vertical", "n"]
    assert [line.split()[0] for line in lines[2:6]] == ["feed", "search", "stories", "video"]
    assert lines[-1] == "(4 rows)"
    bad = run_exfm("sql", "select * from nowhere", *sets)
    assert bad.returncode == 2 and "exfm: error: query failed" in bad.stderr

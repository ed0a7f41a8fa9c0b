"""The DuckDB catalog file and `exfm sql`: views over local lakes, Arrow datasets for S3 lakes,
bound parameters, and waiting for (not failing on) another process's lock."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from exfm.catalog import Catalog
from exfm.config import Config
from exfm.data.world import generate
from exfm.errors import ExfmError, LakeError
from exfm.lake import DAS, IMPRESSIONS, Lake
from tests.conftest import SMALL_WORLD, run_exfm


@pytest.fixture
def filled(small_cfg: Config, lake: Lake) -> Lake:
    generate(small_cfg, lake, days=2)
    return lake


def test_views_over_a_local_lake(small_cfg: Config, filled: Lake) -> None:
    catalog = Catalog(filled, small_cfg.lake.catalog)
    assert catalog.refresh() == ["impressions"]
    rows = catalog.query("select count(*) as n from impressions").column("n")[0].as_py()
    assert rows == filled.read(IMPRESSIONS, columns=["label"]).num_rows
    feed = catalog.query(
        "select count(*) as n from impressions where vertical = ? and ds = ?",
        ["feed", "2026-01-06"],
    )
    expected = filled.read_partition(IMPRESSIONS, {"ds": "2026-01-06", "vertical": "feed"})
    assert feed.column("n")[0].as_py() == expected.num_rows
    # the file itself holds the view, for the duckdb CLI
    con = duckdb.connect(small_cfg.lake.catalog, read_only=True)
    assert con.sql("select count(*) from impressions").fetchall() == [(rows,)]
    con.close()


def test_new_partitions_are_visible_and_new_datasets_after_refresh(
    small_cfg: Config, filled: Lake
) -> None:
    catalog = Catalog(filled, small_cfg.lake.catalog)
    catalog.refresh()
    filled.write_partition(
        DAS, {"fm_version": "fm-1", "ds": "2026-01-06"}, pa.table({"fm_logit": [0.5, -1.0]})
    )
    got = catalog.query("select fm_version, count(*) as n from das group by all")
    assert got.to_pylist() == [{"fm_version": "fm-1", "n": 2}]


def test_queries_over_an_s3_lake(small_cfg: Config, s3_root: str) -> None:
    lake = Lake(s3_root)
    generate(small_cfg, lake, days=1)
    catalog = Catalog(lake, small_cfg.lake.catalog)
    got = catalog.query("select count(distinct vertical) as v, count(*) as n from impressions")
    assert got.column("v")[0].as_py() == 4
    assert got.column("n")[0].as_py() == lake.read(IMPRESSIONS, columns=["label"]).num_rows
    assert not Path(small_cfg.lake.catalog).exists()


def test_bad_sql_is_an_error(small_cfg: Config, filled: Lake) -> None:
    with pytest.raises(ExfmError, match="query failed: .*no_such_table"):
        Catalog(filled, small_cfg.lake.catalog).query("select * from no_such_table")


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

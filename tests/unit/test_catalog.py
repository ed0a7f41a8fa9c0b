"""The DuckDB catalog file: views over local lakes, Arrow datasets for S3 lakes, bound parameters,
bad SQL. `exfm sql` and another process's lock are in tests/cli/test_catalog_cli.py."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from exfm.catalog import Catalog, QueryRefused
from exfm.config import Config
from exfm.data.world import generate
from exfm.errors import ExfmError
from exfm.lake import DAS, IMPRESSIONS, Lake


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


# -------------------------------------------------------------------------------- read-only SQL

# (statement, the first words of the refusal): what `exfm sql` must not run on any lake
REFUSED = [
    ("COPY (SELECT 42 AS x) TO '{root}/impressions/ds=2026-01-05/vertical=feed/part.parquet' "
     "(FORMAT parquet)", "refused: COPY"),
    ("ATTACH '{tmp}/other.duckdb' (READ_WRITE)", "refused: ATTACH"),
    ("INSTALL httpfs", "refused: LOAD"),
    ("LOAD httpfs", "refused: LOAD"),
    ("SET enable_external_access = true", "refused: SET"),
    ("PRAGMA enable_profiling", "refused: PRAGMA"),
    ("CREATE TABLE t AS SELECT 1", "refused: CREATE"),
    ("CREATE SECRET s (TYPE s3, KEY_ID 'k', SECRET 'v')", "refused: CREATE"),
    ("EXPORT DATABASE '{tmp}/dump'", "refused: EXPORT"),
    ("CALL pragma_version()", "refused: CALL"),
    ("SELECT 1; SELECT 2", "one statement at a time"),
    ("select * from read_text('/proc/self/environ')", "query failed"),
    ("select * from read_csv('/etc/passwd', sep = ':')", "query failed"),
    ("select * from read_parquet('{tmp}/elsewhere.parquet')", "query failed"),
    ("select * from glob('/*')", "query failed"),
]  # fmt: skip


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def any_lake(request: pytest.FixtureRequest, small_cfg: Config) -> Lake:
    root = request.getfixturevalue("s3_root") if request.param == "s3" else small_cfg.lake.root
    lake = Lake(root)
    generate(small_cfg, lake, days=1)
    return lake


@pytest.mark.parametrize(("sql", "message"), REFUSED)
def test_sql_is_a_read_only_query_tool(
    small_cfg: Config, any_lake: Lake, tmp_path: Path, sql: str, message: str
) -> None:
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"x": [1]}), tmp_path / "elsewhere.parquet")
    catalog = Catalog(any_lake, small_cfg.lake.catalog)
    before = any_lake.content_ids(IMPRESSIONS)
    with pytest.raises(
        QueryRefused if "refused" in message or "one" in message else ExfmError
    ) as e:
        catalog.query(sql.format(root=any_lake.root, tmp=tmp_path))
    assert message in str(e.value) and "\n" not in str(e.value)
    assert any_lake.content_ids(IMPRESSIONS) == before
    assert not (tmp_path / "other.duckdb").exists() and not (tmp_path / "dump").exists()
    # and it still answers queries
    got = catalog.query("select count(*) as n from impressions")
    assert got.column("n")[0].as_py() == any_lake.read(IMPRESSIONS, columns=["label"]).num_rows


def test_read_only_queries_of_every_shape_still_run(small_cfg: Config, filled: Lake) -> None:
    catalog = Catalog(filled, small_cfg.lake.catalog)
    for sql in (
        "with d as (select distinct ds from impressions) select count(*) from d",
        "from impressions limit 1",
        "describe impressions",
        "summarize select label from impressions",
        "show tables",
        "explain select 1",
        f"select count(*) from read_parquet('{filled.root}/impressions/**/*.parquet')",
    ):
        assert catalog.query(sql).num_rows >= 1, sql

"""The DuckDB catalog file: views over local lakes, Arrow datasets for S3 lakes, bound parameters,
bad SQL. `exfm sql` and another process's lock are in tests/cli/test_catalog_cli.py."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from exfm.catalog import Catalog
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

"""The DuckDB catalog: a database file (default `data/exfm.duckdb`) with one view per lake dataset,
for analysts (`exfm sql "select ..."`, or the duckdb CLI on the file).

Reads: the lake's dataset folders. Writes: only view definitions into the catalog file.

Concurrency: a DuckDB file admits one read-write process at a time, so nothing on the data path
(world, ingest, training, DAS) opens it; they read parquet through the lake. The catalog is opened
briefly, by `refresh` (read-write, retried while another process holds the lock) and by `query`
(read-only). The views read the lake's parquet globs, so partitions written after a refresh are
visible at once; only a new dataset needs a refresh, which `exfm sql` does first.

S3 lakes: DuckDB cannot reach S3 here (its httpfs extension cannot be installed offline), so for an
s3:// root `query` registers the datasets as Arrow datasets in an in-memory connection instead, and
the catalog file is not used.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from exfm.errors import ExfmError, LakeError
from exfm.lake import DATASETS, Dataset, Lake

log = logging.getLogger(__name__)


def _literal(text: str) -> str:
    """A SQL string literal (DDL cannot take bound parameters)."""
    return "'" + text.replace("'", "''") + "'"


class Catalog:
    def __init__(self, lake: Lake, path: str | Path, lock_wait_s: float = 30.0) -> None:
        self.lake = lake
        self.path = Path(path)
        self.lock_wait_s = lock_wait_s

    def _connect(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        """Open the catalog file, waiting while another process holds its lock."""
        deadline = time.monotonic() + self.lock_wait_s
        delay = 0.05
        while True:
            try:
                return duckdb.connect(str(self.path), read_only=read_only)
            except duckdb.IOException as e:
                if "lock" not in str(e).lower() or time.monotonic() > deadline:
                    raise LakeError(f"cannot open the DuckDB catalog {self.path}: {e}") from e
                time.sleep(delay)
                delay = min(delay * 2, 1.0)

    def present(self) -> list[Dataset]:
        """The known datasets that hold at least one partition."""
        return [d for d in DATASETS.values() if self.lake.partitions(d)]

    def refresh(self) -> list[str]:
        """Create or replace one view per dataset with data (local lakes); returns their names."""
        if self.lake.is_s3:
            return []
        self.path.parent.mkdir(parents=True, exist_ok=True)
        present = {d.name for d in self.present()}
        con = self._connect(read_only=False)
        try:
            for name, dataset in DATASETS.items():
                if name not in present:
                    con.execute(f"DROP VIEW IF EXISTS {name}")
                    continue
                # DDL takes no bound parameters: the name and keys are validated identifiers
                # (exfm.ids) and the path is a quoted literal.
                types = ", ".join(f"'{k}': 'VARCHAR'" for k in dataset.keys)
                con.execute(
                    f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM read_parquet("  # noqa: S608
                    f"{_literal(self.lake.local_glob(dataset) or '')}, hive_partitioning = true, "
                    f"hive_types = {{{types}}}, union_by_name = true)"
                )
        finally:
            con.close()
        return sorted(present)

    def query(self, sql: str, params: list[Any] | None = None) -> pa.Table:
        """Run `sql` (bound `params`, if any) over the lake's datasets; returns an Arrow table."""
        if self.lake.is_s3:
            con = duckdb.connect()
            for dataset in self.present():
                con.register(dataset.name, self.lake.dataset(dataset))
        else:
            self.refresh()
            con = self._connect(read_only=True)
        try:
            rel = con.sql(sql, params=params or None)
            return pa.table({}) if rel is None else rel.to_arrow_table()
        except duckdb.Error as e:
            raise ExfmError(f"query failed: {e}") from e
        finally:
            con.close()

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

`query` is read-only, on both backends: it runs exactly one statement, and only a query (SELECT,
WITH, FROM, VALUES, DESCRIBE, SHOW, SUMMARIZE, EXPLAIN); COPY, ATTACH, INSTALL/LOAD, SET, PRAGMA,
CALL, CREATE, EXPORT and every write are refused before anything runs (QueryRefused). The
connection it runs on is locked down first: no file access outside the lake's folder (none at all
for an S3 lake, whose tables are Arrow datasets in memory), no extension installs or loads, and
its configuration locked so that the query cannot undo any of it.
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


# the statement types a read-only query may be: what DuckDB parses SELECT, WITH, FROM-first,
# VALUES, DESCRIBE, SHOW and SUMMARIZE into, and EXPLAIN
_READ_ONLY = frozenset({"SELECT", "EXPLAIN"})


# errors of the query itself (not of the data it read)
_USER_ERRORS = (
    duckdb.ParserException,
    duckdb.BinderException,
    duckdb.CatalogException,
    duckdb.PermissionException,
)


class QueryRefused(ExfmError):
    """`exfm sql` was asked for something other than one read-only query."""


def check_read_only(sql: str) -> None:
    """Refuse (QueryRefused) anything but exactly one read-only statement, before it runs."""
    try:
        with duckdb.connect() as parser:
            statements = parser.extract_statements(sql)
    except duckdb.Error as e:
        raise ExfmError(f"query failed: {_one_line(e)}") from None
    if len(statements) != 1:
        raise QueryRefused(f"exfm sql runs one statement at a time; this has {len(statements)}")
    kind = statements[0].type.name
    if kind not in _READ_ONLY:
        raise QueryRefused(
            f"refused: {kind} statement; exfm sql runs read-only queries over the lake's datasets "
            "(SELECT, WITH, DESCRIBE, SHOW, SUMMARIZE, EXPLAIN)"
        )


def _one_line(e: BaseException) -> str:
    """DuckDB's message without the SQL context it quotes below it."""
    text = str(e).split("\nLINE ", 1)[0]
    return " ".join(text.split())


def _lock_down(con: duckdb.DuckDBPyConnection, allowed: list[str]) -> None:
    """No file access but `allowed` folders, no extension installs or loads, then lock the
    configuration (the query cannot SET any of it back)."""
    if allowed:
        con.execute("SET allowed_directories = ?", [allowed])
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET autoload_known_extensions = false")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


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
            self._create_views(con, present)
        except duckdb.Error as e:
            raise LakeError(
                f"cannot refresh the DuckDB catalog {self.path}: {_one_line(e)}"
            ) from None
        finally:
            con.close()
        return sorted(present)

    def _create_views(self, con: duckdb.DuckDBPyConnection, present: set[str]) -> None:
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

    def query(self, sql: str, params: list[Any] | None = None) -> pa.Table:
        """Run one read-only query `sql` (bound `params`, if any) over the lake's datasets;
        returns an Arrow table. Raises QueryRefused for anything else (module doc)."""
        check_read_only(sql)
        if self.lake.is_s3:
            con = duckdb.connect()
            for dataset in self.present():
                con.register(dataset.name, self.lake.dataset(dataset))
            allowed: list[str] = []
        else:
            self.refresh()
            con = self._connect(read_only=True)
            allowed = [str(Path(self.lake.root).resolve())]
        try:
            _lock_down(con, allowed)
            rel = con.sql(sql, params=params or None)
            return pa.table({}) if rel is None else rel.to_arrow_table()
        except _USER_ERRORS as e:
            raise ExfmError(f"query failed: {_one_line(e)}") from None
        except duckdb.Error as e:
            # reading failed: name the corrupt partition when DuckDB's message does not
            why = _one_line(e)
            if ".parquet" not in why:
                found = map(self.lake.first_unreadable, self.present())
                why = next(filter(None, found), None) or why
            raise ExfmError(f"query failed: {why}") from None
        finally:
            con.close()

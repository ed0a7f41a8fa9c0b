"""The lake: partitioned parquet datasets on a local folder or on S3, and the only module (with its
S3 backend, exfm/s3.py) that reads or writes them.

Layout (DESIGN.md data contracts), under the root (`data/lake` or `s3://bucket/prefix`):
    impressions/ds=YYYY-MM-DD/vertical=<v>/
    das/fm_version=<v>/ds=YYYY-MM-DD/
    checks/ds=YYYY-MM-DD/
    evals/model=<m>/vertical=<v>/ds=YYYY-MM-DD/
Partition values never appear inside the files; readers add them from the path as string columns.

How a partition write is atomic and idempotent:
- Local root: the parquet file is written and fsynced in a private temporary folder
  `<root>/_staging/<write_id>/`, then renamed onto `<partition>/part.parquet` with os.replace, which
  POSIX makes atomic on one filesystem. A reader sees the old file or the new one, never a partial
  one; a reader that already opened the old file keeps reading it; a crash before the rename leaves
  the old partition untouched and only a staging folder behind (`Lake.gc` removes old ones). A
  rewrite replaces the file, so partitions never hold duplicates.
- S3 root: S3 has no rename, so readers go through a manifest. The data object is uploaded first
  under the partition's staging prefix `<partition>/_writes/<write_id>/part.parquet`; then the
  object `<partition>/_manifest.json`, naming that file, is written last (a PUT replaces an object
  atomically). Readers read the manifest, then the files it names; staged objects that no manifest
  names are invisible. After a publish the writer deletes staged objects other than those of the
  new and the previous manifest (a reader that read the previous manifest a moment ago can still
  finish).

Content ids (the lineage contract, DESIGN.md): every write gets a fresh `write_id` (a UTC stamp and
a random suffix), stored in the parquet footer (`exfm.write_id`) and, on S3, in the manifest.
`Lake.content_id` gives the id of what a reader would read now; two reads that see the same id
read the same bytes, because a partition is only ever replaced whole, under a new id. Writers
that may rewrite identical data (landing a day again, re-evaluating the same snapshot) pass
`keep_if_same=True`: the table's sha256 (`exfm.content_sha256`, over the Arrow data and the
caller's metadata) is compared with the stored one and an identical partition keeps its file and
its id, so nothing derived from it goes stale for nothing. `read_with_ids` returns a table with the
ids of exactly the partitions it was read from (ids taken before and after the read must agree;
a partition replaced in between is read again).

Reads return Arrow (a pyarrow Dataset, a Table, or a DuckDB relation over it), with no per-row
Python and no pandas on the way; S3 files are read through pyarrow's S3 filesystem, because DuckDB's
httpfs extension cannot be installed offline.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.dataset as pds
import pyarrow.parquet as pq

from exfm import ids
from exfm.errors import LakeError
from exfm.stores import (
    CONTENT_SHA_KEY,
    PART_FILE,
    WRITE_ID_KEY,
    LocalStore,
    Store,
    new_write_id,
)

if TYPE_CHECKING:
    import duckdb

    from exfm.config import LakeConfig

log = logging.getLogger(__name__)

MAX_LISTED_PREFIXES = 32  # `partitions` lists each value of the first key apart up to this many


@dataclass(frozen=True)
class Dataset:
    """A partitioned dataset: its name (top folder) and its partition keys, outermost first."""

    name: str
    keys: tuple[str, ...]

    def __post_init__(self) -> None:
        ids.dataset(self.name)
        for key in self.keys:
            ids.partition_key(key)

    def rel_dir(self, values: Mapping[str, str]) -> str:
        """The partition's folder relative to the root, after validating every value."""
        if set(values) != set(self.keys):
            raise LakeError(
                f"dataset {self.name} is partitioned by {list(self.keys)}, "
                f"got values for {sorted(values)}"
            )
        parts = [f"{k}={ids.partition_value(k, values[k])}" for k in self.keys]
        return "/".join([self.name, *parts])

    def parse(self, rel: str) -> dict[str, str] | None:
        """The partition values of 'name/k1=v1/k2=v2' (a partition's name), or None."""
        if rel.split("/", 1)[0] != self.name:
            return None
        return _parse_rel(self, rel)


IMPRESSIONS = Dataset("impressions", ("ds", "vertical"))
DAS = Dataset("das", ("fm_version", "ds"))
CHECKS = Dataset("checks", ("ds",))
EVALS = Dataset("evals", ("model", "vertical", "ds"))  # progressive predictions of each model
DATASETS = {d.name: d for d in (IMPRESSIONS, DAS, CHECKS, EVALS)}


@dataclass(frozen=True)
class WrittenPartition:
    """What `write_partition` wrote: small facts for logs and task return values."""

    dataset: str
    values: dict[str, str]
    uri: str
    rows: int
    bytes: int
    write_id: str
    kept: bool = False  # keep_if_same found the same content there: nothing was written

    @property
    def name(self) -> str:
        """The partition's name (its folder under the root), as lineage records name it."""
        return DATASETS[self.dataset].rel_dir(self.values)


class Lake:
    """Partitioned parquet datasets under one root. Build it with `Lake.from_config(cfg.lake)`."""

    def __init__(
        self,
        root: str,
        *,
        compression: str = "zstd",
        row_group_rows: int = 131_072,
        s3_max_attempts: int = 3,
        s3_connect_timeout_s: float = 3.0,
        s3_read_timeout_s: float = 30.0,
    ) -> None:
        self.root = root
        self.compression = None if compression == "none" else compression
        self.row_group_rows = row_group_rows
        if root.startswith("s3://"):
            from exfm.s3 import S3Store

            self._store: Store = S3Store(
                root,
                max_attempts=s3_max_attempts,
                connect_timeout_s=s3_connect_timeout_s,
                read_timeout_s=s3_read_timeout_s,
            )
        elif "://" in root:
            raise LakeError(f"lake root {root!r}: only local folders and s3:// are supported")
        else:
            self._store = LocalStore(root)

    @classmethod
    def from_config(cls, cfg: LakeConfig) -> Lake:
        return cls(
            cfg.root,
            compression=cfg.compression,
            row_group_rows=cfg.row_group_rows,
            s3_max_attempts=cfg.s3_max_attempts,
            s3_connect_timeout_s=cfg.s3_connect_timeout_s,
            s3_read_timeout_s=cfg.s3_read_timeout_s,
        )

    @property
    def is_s3(self) -> bool:
        return self.root.startswith("s3://")

    def __repr__(self) -> str:
        return f"Lake({self.root!r})"

    # ------------------------------------------------------------------------------ writing

    def write_partition(
        self,
        dataset: Dataset,
        values: Mapping[str, str],
        table: pa.Table,
        *,
        metadata: Mapping[str, str] | None = None,
        keep_if_same: bool = False,
    ) -> WrittenPartition:
        """Atomically replace one partition with `table` (see the module docstring). With
        `keep_if_same`, a partition that already holds this very content is left as it is."""
        rel = dataset.rel_dir(values)
        for key in dataset.keys:
            if key in table.column_names:
                raise LakeError(
                    f"{rel}: the table has a column {key!r}; partition values live in the path"
                )
        meta = dict(table.schema.metadata or {})
        meta.update({k.encode(): str(v).encode() for k, v in (metadata or {}).items()})
        meta.pop(WRITE_ID_KEY, None)
        meta[CONTENT_SHA_KEY] = content_sha256(table, meta).encode()
        if keep_if_same:
            stored = self._store.partition_metadata(rel)
            if stored is not None and stored.get(CONTENT_SHA_KEY) == meta[CONTENT_SHA_KEY]:
                write_id = self._store.content_id(rel)
                if write_id is not None:
                    log.debug("kept %s/%s: same content", self.root, rel)
                    return WrittenPartition(
                        dataset.name,
                        dict(values),
                        self._store.uri(rel),
                        table.num_rows,
                        0,
                        write_id,
                        kept=True,
                    )
        write_id = new_write_id()
        meta[WRITE_ID_KEY] = write_id.encode()
        table = table.replace_schema_metadata(meta)
        nbytes = self._store.publish(rel, write_id, lambda sink: self._write_parquet(table, sink))
        log.debug("wrote %s/%s: %d rows, %d bytes", self.root, rel, table.num_rows, nbytes)
        return WrittenPartition(
            dataset.name, dict(values), self._store.uri(rel), table.num_rows, nbytes, write_id
        )

    def _write_parquet(self, table: pa.Table, sink: Any) -> None:
        pq.write_table(
            table, sink, compression=self.compression, row_group_size=self.row_group_rows
        )

    def delete_partition(self, dataset: Dataset, values: Mapping[str, str]) -> None:
        self._store.delete_partition(dataset.rel_dir(values))

    def gc(self, older_than_s: float = 3600.0) -> int:
        """Remove what interrupted writes left behind; returns how many items were removed."""
        return self._store.gc(older_than_s)

    # ------------------------------------------------------------------------------ reading

    def partitions(self, dataset: Dataset, **where: str | Sequence[str]) -> list[dict[str, str]]:
        """The published partitions of `dataset`, sorted, optionally filtered by key values
        (`ds=("2026-01-05", "2026-01-06")`, `vertical="feed"`)."""
        wanted = _normalize_where(dataset, where)
        prefixes = [dataset.name]
        first = dataset.keys[0]
        if first in wanted and len(wanted[first]) <= MAX_LISTED_PREFIXES:
            # one listing per wanted value of the first key: a day's window costs its days, not
            # every partition the dataset has accumulated
            prefixes = [f"{dataset.name}/{first}={v}" for v in sorted(wanted[first])]
        out = []
        for prefix in prefixes:
            for rel in self._store.list_partitions(prefix, dataset.name, len(dataset.keys)):
                values = _parse_rel(dataset, rel)
                if values is not None and all(values[k] in v for k, v in wanted.items()):
                    out.append(values)
        return sorted(out, key=lambda d: tuple(d[k] for k in dataset.keys))

    def has_partition(self, dataset: Dataset, values: Mapping[str, str]) -> bool:
        return self._store.partition_files(dataset.rel_dir(values)) is not None

    # ------------------------------------------------------------------------------ content ids

    def content_id(self, dataset: Dataset, values: Mapping[str, str]) -> str | None:
        """The content id of what a reader of the partition would read now (its write id), or
        None when there is no such partition."""
        return self._store.content_id(dataset.rel_dir(values))

    def content_ids(self, dataset: Dataset, **where: str | Sequence[str]) -> dict[str, str]:
        """Partition name -> content id of every published partition matching `where` (the
        selection of `partitions`)."""
        out = {}
        for values in self.partitions(dataset, **where):
            rel = dataset.rel_dir(values)
            found = self._store.content_id(rel)
            if found is not None:  # deleted since it was listed
                out[rel] = found
        return out

    def partition_metadata(self, dataset: Dataset, values: Mapping[str, str]) -> dict[str, str]:
        """The partition's footer metadata (the write's own keys: exfm.*), decoded. Raises
        LakeError when the partition does not exist."""
        rel = dataset.rel_dir(values)
        found = self._store.partition_metadata(rel)
        if found is None:
            raise LakeError(f"partition {self._store.uri(rel)} does not exist")
        return {k.decode(): v.decode() for k, v in found.items() if k.startswith(b"exfm.")}

    def read_with_ids(
        self,
        dataset: Dataset,
        *,
        columns: Sequence[str] | None = None,
        attempts: int = 8,
        **where: str | Sequence[str],
    ) -> tuple[pa.Table, dict[str, str]]:
        """The selected partitions as one table, and the content id of each partition it holds
        (name -> id). The ids are taken before and after the read; a partition replaced in
        between is read again, so the ids always name what the table holds."""
        for attempt in range(attempts):
            before = self.content_ids(dataset, **where)
            if not before:
                self.dataset(dataset, **where)  # raises the usual "no partitions" error
            table = self.read(dataset, columns=columns, **where)
            after = self.content_ids(dataset, **where)
            if before == after:
                return table, before
            log.info("%s changed while it was read; reading it again", dataset.name)
            time.sleep(0.01 * (attempt + 1))  # let a writer that is rewriting it in a loop pass
        raise LakeError(
            f"{self._store.uri(dataset.name)} {where} was rewritten during each of {attempts} "
            "reads; try again once the writer is done"
        )

    def dataset(
        self,
        dataset: Dataset,
        *,
        ds_start: str | None = None,
        ds_end: str | None = None,
        schema: pa.Schema | None = None,
        **where: str | Sequence[str],
    ) -> pds.Dataset:
        """A pyarrow Dataset over the selected partitions, with the partition keys as string
        columns. `ds_start`/`ds_end` (inclusive) select a range of days. Raises LakeError when
        nothing matches."""
        if ds_start is not None or ds_end is not None:
            if "ds" not in dataset.keys:
                raise LakeError(f"dataset {dataset.name} is not partitioned by ds")
            if "ds" in where:
                raise LakeError("give either ds= or ds_start/ds_end, not both")
            start = ds_start or ds_end
            end = ds_end or ds_start
            where["ds"] = ids.ds_range(start, end)  # type: ignore[arg-type]
        parts = self.partitions(dataset, **where)
        if not parts:
            place = self._store.uri(dataset.name)
            if not where:
                raise LakeError(f"{place} holds no partitions yet")
            shown = {
                k: f"{v[0]}..{v[-1]}" if k == "ds" and not isinstance(v, str) and len(v) > 1 else v
                for k, v in where.items()
            }
            raise LakeError(f"no partitions of {place} match {shown}")
        files = []
        for values in parts:
            found = self._store.partition_files(dataset.rel_dir(values))
            if found:  # a partition deleted since it was listed is skipped, not an error
                files.extend(found)
        partitioning = pds.partitioning(
            pa.schema([(k, pa.string()) for k in dataset.keys]), flavor="hive"
        )

        def open_dataset(with_schema: pa.Schema | None) -> pds.Dataset:
            return pds.dataset(
                files,
                schema=with_schema,
                format="parquet",
                filesystem=self._store.filesystem,
                partitioning=partitioning,
                partition_base_dir=self._store.fs_path(dataset.name),
            )

        try:
            data = open_dataset(schema)
            if schema is None and len(files) > 1:
                # pyarrow takes the first file's schema; partitions written at other times may
                # have more or fewer columns: read them all with the union (missing = null)
                schemas = {f.physical_schema for f in data.get_fragments()}
                if len(schemas) > 1:
                    unified = pa.unify_schemas(
                        [*schemas, data.partitioning.schema], promote_options="permissive"
                    )
                    data = open_dataset(unified)
            return data
        except (OSError, pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise LakeError(f"cannot open {self._store.uri(dataset.name)} ({where}): {e}") from e

    def read(
        self,
        dataset: Dataset,
        *,
        columns: Sequence[str] | None = None,
        filter: pds.Expression | None = None,
        **selection: Any,
    ) -> pa.Table:
        """Read the selected partitions into one Arrow table (see `dataset` for the selection)."""
        data = self.dataset(dataset, **selection)
        try:
            return data.to_table(columns=list(columns) if columns else None, filter=filter)
        except (OSError, pa.ArrowInvalid) as e:
            raise LakeError(f"cannot read {self._store.uri(dataset.name)} {selection}: {e}") from e

    def read_partition(
        self, dataset: Dataset, values: Mapping[str, str], columns: Sequence[str] | None = None
    ) -> pa.Table:
        """One partition, partition keys included. Raises LakeError when it does not exist."""
        rel = dataset.rel_dir(values)
        if self._store.partition_files(rel) is None:
            raise LakeError(f"partition {self._store.uri(rel)} does not exist")
        return self.read(dataset, columns=columns, **{k: [v] for k, v in values.items()})

    def first_unreadable(
        self, dataset: Dataset, partitions: Iterable[Mapping[str, str]] | None = None
    ) -> str | None:
        """The first partition of `dataset` (every one, or those given) that cannot be read in
        full, as `<its location> is unreadable (<the reader's error>)`; None when all read. For
        naming the corrupt file after a scan failed without saying which: it reads everything."""
        for values in self.partitions(dataset) if partitions is None else partitions:
            try:
                self.read_partition(dataset, values)
            except (LakeError, pa.ArrowException, OSError) as e:
                why = " ".join(str(e).split())
                return f"{self.uri(dataset.rel_dir(values))} is unreadable ({why})"
        return None

    def relation(
        self, con: duckdb.DuckDBPyConnection, dataset: Dataset, **selection: Any
    ) -> duckdb.DuckDBPyRelation:
        """A DuckDB relation over the selected partitions (zero-copy Arrow scan, with projection
        and filter pushdown into the parquet files)."""
        return con.from_arrow(self.dataset(dataset, **selection))

    # ------------------------------------------------------------------------------ objects

    def put_bytes(self, key: str, data: bytes) -> str:
        """Atomically write a small object (snapshot, report) at `key`; returns its URI."""
        return self._store.put_bytes(_check_key(key), data)

    def get_bytes(self, key: str) -> bytes:
        return self._store.get_bytes(_check_key(key))

    def exists(self, key: str) -> bool:
        return self._store.exists(_check_key(key))

    def delete_key(self, key: str) -> None:
        """Remove a small object (a missing one is not an error)."""
        self._store.delete_key(_check_key(key))

    def list_keys(self, prefix: str) -> list[str]:
        """Object keys under `prefix` (relative to the root), sorted."""
        return sorted(self._store.list_keys(_check_key(prefix)))

    def uri(self, rel: str = "") -> str:
        return self._store.uri(rel)

    def local_glob(self, dataset: Dataset) -> str | None:
        """For local roots, the absolute glob of the dataset's part files (for DuckDB views)."""
        if self.is_s3:
            return None
        stars = "/".join("*" for _ in dataset.keys)
        return str(Path(self.root).resolve() / dataset.name / stars / PART_FILE)


def content_sha256(table: pa.Table, metadata: Mapping[bytes, bytes]) -> str:
    """sha256 of a table's Arrow data (IPC stream, no schema metadata) and of `metadata`, minus
    the write's own id: equal hashes mean the same partition content."""
    digest = hashlib.sha256()
    for key in sorted(metadata):
        if key not in (WRITE_ID_KEY, CONTENT_SHA_KEY):
            digest.update(key + b"=" + metadata[key] + b"\n")
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema.remove_metadata()) as writer:
        writer.write_table(table.replace_schema_metadata(None))
    digest.update(memoryview(sink.getvalue()))
    return digest.hexdigest()


def _normalize_where(dataset: Dataset, where: Mapping[str, Any]) -> dict[str, set[str]]:
    out = {}
    for key, value in where.items():
        if key not in dataset.keys:
            raise LakeError(f"dataset {dataset.name} has no partition key {key!r}")
        values = [value] if isinstance(value, str) else list(value)
        out[key] = {ids.partition_value(key, v) for v in values}
    return out


def _parse_rel(dataset: Dataset, rel: str) -> dict[str, str] | None:
    """Partition values from 'name/k1=v1/k2=v2', or None for a folder that is not a partition."""
    segments = rel.split("/")[1:]
    if len(segments) != len(dataset.keys):
        return None
    values = {}
    for key, segment in zip(dataset.keys, segments, strict=True):
        name, sep, value = segment.partition("=")
        if name != key or not sep:
            return None
        try:
            values[key] = ids.partition_value(key, value)
        except ids.IdentifierError:
            log.warning("ignoring %s: not a valid partition folder", rel)
            return None
    return values


def _check_key(key: str) -> str:
    """Object keys are '/'-joined segments of letters, digits, '=', '.', '-', '_'; no '..'."""
    for segment in key.split("/"):
        if not ids.OBJECT_SEGMENT.fullmatch(segment) or ".." in segment:
            raise LakeError(f"invalid object key {key!r}: bad segment {segment!r}")
    return key

"""Bring your own data: convert the user's CSV or parquet impressions into the lake.

Reads: the files of `ingest.sources` (local paths or globs, relative to the working directory),
each optionally left-joined with its `lookups` side tables. Writes: `impressions/ds=/vertical=/`
through `write_impressions`, which validates every partition before writing any, so a bad input
writes nothing; re-ingesting the same files rewrites the same partitions with the same rows.

    exfm ingest --params configs/obd.yaml      # the Open Bandit Dataset sample, a worked example

Mapping of a source row onto the lake schema (exfm/data/schema.py):
- format: `ingest.format`, or by extension when auto (.csv, .csv.gz, .csv.bz2: CSV; .parquet, .pq:
  parquet). In CSV an empty cell is null; text such as NA or null is text (in a column of numbers,
  pyarrow's null tokens NA, null, NaN, ... are null). A glob is expanded and sorted; matching
  nothing is an error. A file without rows (empty, or a header only) is an error.
- lookups: each lookup file is left-joined on its `key` column (keys must be unique there); rows
  without a match get nulls. A lookup column that the source already has is not taken.
- ts: `timestamp_column`, ISO-8601 text (an offset is converted to UTC, no offset means UTC) or an
  epoch number in `timestamp_unit`; ds is the UTC date of ts.
- label: `label_column`, 0/1 integers, booleans, or floats exactly 0.0/1.0; never null.
- vertical: the source's `vertical`, else the `vertical_column` value; one of features.verticals.
- example_id: `example_id_column` (int64 or string), unique over every source of the run; without
  it "<vertical>:<file stem>:<row>", so the same file always gets the same ids.
- feature f: source column `columns.get(f, f)`. Categorical: by f's declared id type,
  `ingest.id_types[f]`, else `ingest.id_type` (default int), the same in every file (CSV columns
  of categoricals are read as text):
  - int: every value is an integer that fits int64 and is kept as that int64: an integer column,
    or text of an optional '-' and ASCII digits ("007" is 7; "+7", "7.0", "1e3", " 7" and text
    beyond int64 are errors that name the key to change, `ingest.id_types.<f>: string`);
  - string: every value is hashed as its text (below); integers as their decimal text, so the
    int 11 and the text "11" are one id.
  Under either type a float column (pandas writes integer ids with gaps so) must hold whole
  numbers within +-2**53, read as those integers; booleans are 0/1. A feature in
  `namespace_by_vertical` hashes "<vertical>:<id>" under either type (an int id as its decimal
  text), so equal raw ids of two verticals stay apart. Dense: numbers as float32, NaN becomes
  null, infinities are an error. Rows of a vertical without f (only_verticals) get null; a file
  none of whose verticals has f need not have its column.
The hash: SipHash-2-4 of the UTF-8 text with pandas' fixed default key "0123456789123456"
(`pandas.util.hash_array`), the 64 bits read as int64: the same ids on every run and machine, and
pinned by a unit test so that a change of it (which would split re-ingested ids) is caught.

Rows are numbered from 1 in every file, header not counted (row N of a CSV is on line N+1); errors
name the file, the column, the row and the value, and what was expected. All work is vectorized
(pyarrow, numpy, pandas).
"""

from __future__ import annotations

import glob
import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from exfm.config import Config, IngestLookupConfig
from exfm.data.columns import SourceFile, column, convert, plain
from exfm.data.impressions import write_impressions
from exfm.data.schema import FeatureSpec, first_duplicate
from exfm.errors import IngestError
from exfm.lake import Lake, WrittenPartition

log = logging.getLogger(__name__)

_FORMATS = dict.fromkeys((".csv", ".csv.gz", ".csv.bz2"), "csv")
_FORMATS.update(dict.fromkeys((".parquet", ".pq"), "parquet"))


def ingest(cfg: Config, lake: Lake) -> list[WrittenPartition]:
    """read_sources, then write_impressions; nothing is written if any input is bad."""
    table = read_sources(cfg)
    spec = FeatureSpec.from_config(cfg.features)
    written = write_impressions(lake, spec, table, source="ingest")
    log.info("ingested %d rows into %d partitions", table.num_rows, len(written))
    return written


def read_sources(cfg: Config) -> pa.Table:
    """All sources converted to the lake schema plus string columns ds and vertical; raises
    IngestError."""
    if not cfg.ingest.sources:
        raise IngestError(
            "ingest.sources is empty: list the files to ingest (see configs/obd.yaml)"
        )
    spec = FeatureSpec.from_config(cfg.features)
    fmt, text = (
        cfg.ingest.format,
        {cfg.ingest.columns.get(f.name, f.name) for f in spec.categorical},
    )
    parts: list[tuple[str, pa.Table]] = []
    for i, source in enumerate(cfg.ingest.sources):
        lookups = [(lk, _read_lookup(lk, fmt, text)) for lk in source.lookups]
        for path in _expand(source.path, f"ingest.sources[{i}].path"):
            raw = _read_file(path, fmt, text)
            for lk, side in lookups:
                raw = _join_lookup(raw, str(path), lk, side)
            parts.append(
                (
                    str(path),
                    convert(raw, SourceFile(path, _name_parts(path)[0], source, cfg.ingest), spec),
                )
            )
    if any(pa.types.is_string(t.schema.field("example_id").type) for _, t in parts):
        parts = [
            (w, t.set_column(2, "example_id", t["example_id"].cast(pa.string()))) for w, t in parts
        ]
    table = pa.concat_tables([t for _, t in parts])  # text ids everywhere if any source has them
    _check_unique_ids(table, parts, cfg.ingest.example_id_column)
    return table


# ------------------------------------------------------------------------------------- reading


def _expand(pattern: str, key: str) -> list[Path]:
    if not any(c in pattern for c in "*?["):
        if not Path(pattern).is_file():
            raise IngestError(f"{key}: source file {pattern} does not exist")
        return [Path(pattern)]
    matches = glob.glob(pattern, recursive=True)  # noqa: PTH207 - Path.glob rejects absolute patterns
    paths = sorted(Path(p) for p in matches if Path(p).is_file())
    if not paths:
        raise IngestError(f"{key}: the pattern {pattern!r} matches no files")
    return paths


# the CSV reader parses blocks of this size; a row longer than one block cannot be read
CSV_BLOCK_BYTES = 16 << 20


def _read_file(path: Path, fmt: str, text: set[str]) -> pa.Table:
    """The file's table; CSV columns in `text` (categorical sources) are read as text."""
    kind = fmt if fmt != "auto" else _name_parts(path)[1]
    if kind is None:
        raise IngestError(
            f"{path}: cannot tell the format from the name; expected an extension in "
            f"{list(_FORMATS)}, or set ingest.format to csv or parquet"
        )
    try:
        if kind == "csv":
            # text cells are text: only an empty cell is null (pyarrow's null tokens such as NA,
            # null or nan would drop ids of those names; numbers still read them as null)
            types = dict.fromkeys(text, pa.string())
            options = pacsv.ConvertOptions(strings_can_be_null=False, column_types=types)
            blocks = pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES)
            table = _empty_text_to_null(
                pacsv.read_csv(str(path), read_options=blocks, convert_options=options)
            )
        else:
            table = pq.read_table(str(path))
    except FileNotFoundError as e:
        raise IngestError(f"{path} does not exist") from e
    except (pa.ArrowInvalid, OSError) as e:
        if "Empty CSV file" in str(e):
            raise IngestError(f"{path}: the file is empty; expected a header and rows") from e
        if "straddl" in str(e):
            line = _first_long_line(path, CSV_BLOCK_BYTES)
            where = f"line {line} is" if line else "a row is"
            raise IngestError(
                f"{path}: {where} longer than {CSV_BLOCK_BYTES >> 20} MiB, the most one CSV row "
                "may hold (a runaway quote, or a cell that is not a feature value?)"
            ) from None
        raise IngestError(f"{path}: cannot read it as {kind}: {e}") from e
    if table.num_rows == 0:
        raise IngestError(f"{path}: the file has no rows (columns {table.column_names})")
    return table


def _empty_text_to_null(table: pa.Table) -> pa.Table:
    """The table with every empty text cell null."""
    for i, field in enumerate(table.schema):
        if pa.types.is_string(field.type):
            col = table.column(i)
            empty = pc.equal(col, "")
            table = table.set_column(i, field, pc.if_else(empty, pa.scalar(None, field.type), col))
    return table


def _first_long_line(path: Path, limit: int) -> int | None:
    """The number (from 1, the header) of the first line of `path` longer than `limit` bytes."""
    number, length = 1, 0
    with pa.input_stream(str(path), compression="detect") as stream:
        while chunk := stream.read(1 << 20):
            *whole, rest = chunk.split(b"\n")
            for piece in whole:
                if length + len(piece) > limit:
                    return number
                number, length = number + 1, 0
            length += len(rest)  # the line goes on in the next chunk
            if length > limit:
                return number
    return None


def _name_parts(path: Path) -> tuple[str, str | None]:
    """(stem, format) of a file name: "men.csv.gz" -> ("men", "csv"); format None if unknown."""
    for suffix, kind in _FORMATS.items():
        if path.name.lower().endswith(suffix):
            return path.name[: -len(suffix)], kind
    return path.stem, None


def _read_lookup(lk: IngestLookupConfig, fmt: str, text: set[str]) -> pa.Table:
    path = Path(lk.path)
    if not path.is_file():
        raise IngestError(f"lookup file {lk.path} does not exist")
    table = _read_file(path, fmt, text)
    dup = first_duplicate(plain(column(table, lk.key, lk.path)))
    if dup is not None:
        raise IngestError(
            f"lookup file {lk.path}: key {lk.key!r} = {dup[0]!r} occurs more than once "
            f"(rows {[i + 1 for i in dup[1]]}); lookup keys must be unique"
        )
    return table


def _join_lookup(raw: pa.Table, where: str, lk: IngestLookupConfig, side: pa.Table) -> pa.Table:
    """Left join, keeping the source's row order; the source's own columns win."""
    key = plain(column(raw, lk.key, where))
    side_key = plain(side.column(lk.key))
    if side_key.type != key.type:
        try:
            side_key = side_key.cast(key.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
            raise IngestError(
                f"{where}: key {lk.key!r} has type {key.type} but in lookup {lk.path} it has "
                f"type {side_key.type}; expected the same type"
            ) from e
    index = pc.index_in(key, value_set=side_key, skip_nulls=True)
    extra = [c for c in side.column_names if c not in raw.column_names]
    taken = side.select(extra).take(index)
    for name in extra:
        raw = raw.append_column(name, taken.column(name))
    return raw


# ------------------------------------------------------------------------------------ helpers


def _check_unique_ids(table: pa.Table, parts: list[tuple[str, pa.Table]], column: str) -> None:
    dup = first_duplicate(table.column("example_id"))
    if dup is None:
        return
    value, rows = dup
    starts = np.cumsum([0] + [t.num_rows for _, t in parts])
    file_of = np.searchsorted(starts, rows, side="right") - 1
    places = [f"{parts[f][0]} row {r - starts[f] + 1}" for f, r in zip(file_of, rows, strict=True)]
    hint = (
        f"ingest.example_id_column {column!r} must be unique over all sources"
        if column
        else "generated ids '<vertical>:<file stem>:<row>' collide: two files of one vertical "
        "share a stem; rename one or set ingest.example_id_column"
    )
    raise IngestError(f"duplicate example_id {value!r} at {'; '.join(places)}: {hint}")

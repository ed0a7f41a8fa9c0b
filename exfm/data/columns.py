"""Column conversions of "bring your own data": one source file's raw columns -> the lake schema.

Used by exfm/data/ingest.py, which reads the files and joins their lookups; the rules (timestamps,
labels, verticals, example ids, categorical and dense features, the text hash) are listed in that
module's docstring. Every function here is vectorized and raises IngestError naming the file, the
column, the 1-based row and the value, and what was expected.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from exfm.config import IdType, IngestConfig, IngestSourceConfig
from exfm.data.schema import TS_TYPE, FeatureSpec, first_true
from exfm.errors import IngestError

# A time part followed by Z or a +hh[:mm] / -hh[:mm] offset ("2026-01-05" alone is naive).
_OFFSET = r"[T ]\d.*([Zz]|[+-]\d\d(:?\d\d)?)$"
_US_PER_UNIT = {"s": 1_000_000, "ms": 1_000, "us": 1}
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_US_MIN = (dt.datetime(1900, 1, 1, tzinfo=dt.UTC) - _EPOCH) // dt.timedelta(microseconds=1)
_US_MAX = (dt.datetime(2200, 1, 1, tzinfo=dt.UTC) - _EPOCH) // dt.timedelta(microseconds=1)


@dataclass(frozen=True)
class SourceFile:
    """One source file being converted: its path (named in every error), the stem its generated
    example ids use, and its config."""

    path: Path
    stem: str
    source: IngestSourceConfig
    cfg: IngestConfig


# ---------------------------------------------------------------------------------- converting


def convert(raw: pa.Table, src: SourceFile, spec: FeatureSpec) -> pa.Table:
    cfg = src.cfg
    vertical = _verticals(raw, src, spec)
    ts = _timestamps(plain(column(raw, cfg.timestamp_column, src.path)), src)
    label = _labels(plain(column(raw, cfg.label_column, src.path)), src)
    columns: dict[str, pa.Array] = {
        "ds": ts.cast(pa.date32()).cast(pa.string()),
        "vertical": vertical,
        "example_id": _example_ids(raw, src, vertical),
        "ts": ts,
        "label": label,
    }
    columns.update(_features(raw, src, spec, vertical))
    return pa.table(columns)


def _verticals(raw: pa.Table, src: SourceFile, spec: FeatureSpec) -> pa.Array:
    if src.source.vertical is not None:
        return pa.repeat(pa.scalar(src.source.vertical, pa.string()), raw.num_rows)
    name = src.cfg.vertical_column
    col = plain(column(raw, name, src.path)).cast(pa.string())
    _no_nulls(col, src, name, f"one of {list(spec.verticals)}")
    bad = pc.invert(pc.is_in(col, value_set=pa.array(spec.verticals)))
    if pc.any(bad).as_py():
        row = first_true(bad)
        raise IngestError(
            f"{src.path}, column {name!r}, row {row + 1}: unknown vertical {col[row].as_py()!r}; "
            f"features.verticals allows {list(spec.verticals)}"
        )
    return col


def _timestamps(col: pa.Array, src: SourceFile) -> pa.Array:
    name, unit, t = src.cfg.timestamp_column, src.cfg.timestamp_unit, col.type
    expected = f"an ISO-8601 time or an epoch number in {unit!r}"
    _no_nulls(col, src, name, expected)
    if pa.types.is_timestamp(t):  # read by pyarrow from ISO text; naive means UTC
        ts = pc.cast(col, TS_TYPE, safe=False)
    elif pa.types.is_date(t):
        ts = col.cast(pa.timestamp("us")).cast(TS_TYPE)
    elif pa.types.is_integer(t) or pa.types.is_floating(t):
        _finite(col, src, name, expected)
        us = pc.round(pc.multiply(col.cast(pa.float64()), float(_US_PER_UNIT[unit])))
        _check_time_range(us, col, src)  # before the cast, which would wrap around
        ts = us.cast(pa.int64(), safe=False).cast(TS_TYPE)
    elif pa.types.is_string(t):
        parsed = _parse_iso(col)
        bad = pa.array(parsed.isna().to_numpy())
        if pc.any(bad).as_py():
            _fail(src, name, col, first_true(bad), expected)
        ts = pa.Array.from_pandas(parsed).cast(TS_TYPE, safe=False)
    else:
        raise IngestError(f"{src.path}: column {name!r} has type {t}; expected {expected}")
    _check_time_range(ts.cast(pa.int64()), col, src)
    return ts


def _parse_iso(col: pa.Array) -> pd.Series:
    """UTC times of ISO-8601 texts, NaT where unparseable. Texts with an offset and naive ones
    are parsed apart: pandas would read naive texts in the offset of an earlier aware one."""
    text = col.to_pandas()
    aware = pc.match_substring_regex(col, _OFFSET).to_numpy(zero_copy_only=False)
    out = pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns, UTC]")
    if aware.any():
        out[aware] = pd.to_datetime(text[aware], utc=True, format="ISO8601", errors="coerce")
    if not aware.all():
        naive = pd.to_datetime(text[~aware], format="ISO8601", errors="coerce")
        out[~aware] = naive.dt.tz_localize("UTC")
    return out


def _check_time_range(us: pa.Array, col: pa.Array, src: SourceFile) -> None:
    """Event times must lie in 1900..2199; outside, the timestamp_unit is most likely wrong."""
    outside = pc.or_(pc.less(us, _US_MIN), pc.greater_equal(us, _US_MAX))
    if pc.any(outside).as_py():
        unit = src.cfg.timestamp_unit
        expected = f"a time in 1900..2199 (is ingest.timestamp_unit {unit!r} right?)"
        _fail(src, src.cfg.timestamp_column, col, first_true(outside), expected)


def _labels(col: pa.Array, src: SourceFile) -> pa.Array:
    name, t = src.cfg.label_column, col.type
    _no_nulls(col, src, name, "0 or 1")
    if pa.types.is_boolean(t):
        return col.cast(pa.int8())
    if not (pa.types.is_integer(t) or pa.types.is_floating(t)):
        _fail(src, name, col, 0, f"0 or 1 (the column has type {t})")
    bad = pc.invert(pc.is_in(col, value_set=pa.array([0, 1], t)))
    if pc.any(bad).as_py():
        _fail(src, name, col, first_true(bad), "0 or 1")
    return col.cast(pa.int8())


def _example_ids(raw: pa.Table, src: SourceFile, vertical: pa.Array) -> pa.Array:
    name = src.cfg.example_id_column
    if not name:
        rows = pa.array(np.arange(1, raw.num_rows + 1)).cast(pa.string())
        return pc.binary_join_element_wise(vertical, src.stem, rows, ":")
    col = plain(column(raw, name, src.path))
    _no_nulls(col, src, name, "a unique id")
    if pa.types.is_integer(col.type):
        return _int64(col, src, name)
    if not pa.types.is_string(col.type):
        _fail(src, name, col, 0, f"integer or text ids (the column has type {col.type})")
    return col


def _features(
    raw: pa.Table, src: SourceFile, spec: FeatureSpec, vertical: pa.Array
) -> dict[str, pa.Array]:
    present = set(pc.unique(vertical).to_pylist())
    needed = [f for f in spec.features if f.verticals & present]
    source_of = {f.name: src.cfg.columns.get(f.name, f.name) for f in spec.features}
    missing = [source_of[f.name] for f in needed if source_of[f.name] not in raw.column_names]
    if missing:
        raise IngestError(
            f"{src.path}: missing column(s) {missing} for features of verticals "
            f"{sorted(present)}; the file (with its lookups) has {raw.column_names}; map "
            "features to other columns with ingest.columns"
        )
    out = {}
    needed_names = {f.name for f in needed}
    for feat in spec.features:
        if feat.name not in needed_names:
            out[feat.name] = pa.nulls(raw.num_rows, feat.arrow_type)
            continue
        col = plain(raw.column(source_of[feat.name]))
        if feat.is_categorical:
            namespaced = feat.name in src.cfg.namespace_by_vertical
            where = _IdColumn(source_of[feat.name], feat.name, src.cfg.id_type_of(feat.name))
            arr = _categorical(col, src, where, vertical if namespaced else None)
        else:
            arr = _dense(col, src, source_of[feat.name])
        if present - feat.verticals:
            keep = pc.is_in(vertical, value_set=pa.array(sorted(feat.verticals)))
            arr = pc.if_else(keep, arr, pa.scalar(None, feat.arrow_type))
        out[feat.name] = arr
    return out


@dataclass(frozen=True)
class _IdColumn:
    """A categorical feature's source column, the feature, and its declared id type."""

    column: str
    feature: str
    id_type: IdType

    def expected(self) -> str:
        if self.id_type == "int":
            return (
                f"an integer id that fits int64 (feature {self.feature!r} is declared int; for "
                f"text ids set ingest.id_types.{self.feature}: string)"
            )
        return f"integer or text ids (feature {self.feature!r} is declared string)"


def _categorical(
    col: pa.Array, src: SourceFile, ids: _IdColumn, vertical: pa.Array | None
) -> pa.Array:
    """int64 ids of one categorical column, by its declared type (module docstring of
    exfm/data/ingest.py): int keeps integers, string hashes the text; namespaced ids hash
    "<vertical>:<id>" under either type."""
    t = col.type
    if pa.types.is_null(t):
        return pa.nulls(len(col), pa.int64())
    if pa.types.is_floating(t):  # integer ids with gaps, as pandas writes them
        col = _whole_floats(col, src, ids)
    elif pa.types.is_boolean(t):
        col = col.cast(pa.int64())
    if pa.types.is_integer(col.type):
        if ids.id_type == "string":
            text = col.cast(pa.string())  # the decimal text: 11 and "11" are one id
        elif vertical is None:
            return _int64(col, src, ids.column)
        else:
            text = _int64(col, src, ids.column).cast(pa.string())
    elif pa.types.is_string(col.type):
        if ids.id_type == "string":
            text = col
        elif vertical is None:
            return _int_text(col, src, ids)
        else:
            text = _int_text(col, src, ids).cast(pa.string())  # "007" is id 7, as "7"
    else:
        raise IngestError(
            f"{src.path}: column {ids.column!r} has type {t}; expected {ids.expected()}"
        )
    if vertical is not None:
        text = pc.binary_join_element_wise(vertical, text, ":")
    return hash_text(text)


# floats hold every integer up to 2**53 exactly; beyond, an id may already have been rounded
_FLOAT_EXACT = float(2**53)


def _whole_floats(col: pa.Array, src: SourceFile, ids: _IdColumn) -> pa.Array:
    """int64 of a float column of integer ids (NaN: null), under either id type; a fraction, an
    infinity or a value beyond +-2**53 is an error."""
    col = _nan_to_null(col)
    bad = pc.or_(pc.not_equal(pc.floor(col), col), pc.greater(pc.abs(col), _FLOAT_EXACT))
    if pc.any(bad).as_py():
        exact = "a whole number within +-2**53 (a float column holds integer ids only)"
        _fail(src, ids.column, col, first_true(bad), exact)
    return col.cast(pa.int64())


_INT_TEXT = r"^-?[0-9]+$"
_INT64_MAX, _INT64_MIN_ABS = "9223372036854775807", "9223372036854775808"  # as digits


def _int_text(col: pa.Array, src: SourceFile, ids: _IdColumn) -> pa.Array:
    """int64 of text ids declared int: an optional '-' and decimal digits, within int64."""
    integer = pc.match_substring_regex(col, _INT_TEXT)
    if not pc.any(pc.invert(integer)).as_py():  # None when every value is null
        try:
            return col.cast(pa.int64())
        except pa.ArrowInvalid:
            pass  # some value is beyond int64: found below
    negative = pc.starts_with(col, "-")
    digits = pc.utf8_ltrim(pc.utf8_ltrim(col, "-"), "0")
    limit = pc.if_else(negative, _INT64_MIN_ABS, _INT64_MAX)
    length = pc.utf8_length(digits)
    over = pc.or_(pc.greater(length, 19), pc.and_(pc.equal(length, 19), pc.greater(digits, limit)))
    _fail(src, ids.column, col, first_true(pc.or_(pc.invert(integer), over)), ids.expected())


def hash_text(col: pa.Array) -> pa.Array:
    """int64 ids of text values (nulls stay null): SipHash-2-4 with pandas' fixed default key."""
    valid = col.is_valid().to_numpy(zero_copy_only=False)
    text = col.fill_null("").to_numpy(zero_copy_only=False)
    hashed = pd.util.hash_array(text, categorize=True).view(np.int64)
    return pa.array(hashed, pa.int64(), mask=~valid)


def _dense(col: pa.Array, src: SourceFile, name: str) -> pa.Array:
    t = col.type
    if pa.types.is_null(t):
        return pa.nulls(len(col), pa.float32())
    if pa.types.is_string(t):
        numbers = pd.to_numeric(col.to_pandas(), errors="coerce")
        bad = pc.and_(col.is_valid(), pa.array(numbers.isna().to_numpy()))
        if pc.any(bad).as_py():
            _fail(src, name, col, first_true(bad), "numbers (a dense feature)")
        col = pa.array(numbers.to_numpy(dtype=np.float64), pa.float64())
    elif not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)):
        raise IngestError(f"{src.path}: column {name!r} has type {t}; expected numbers")
    col = _nan_to_null(col.cast(pa.float64()))
    out = col.cast(pa.float32(), safe=False)
    bad = pc.invert(pc.is_finite(out))
    if pc.any(bad).as_py():
        _fail(src, name, col, first_true(bad), "a finite number within float32 range, or empty")
    return out


# ------------------------------------------------------------------------------------ helpers


def column(table: pa.Table, name: str, where: object) -> pa.ChunkedArray:
    if name not in table.column_names:
        raise IngestError(f"{where}: missing column {name!r}; the file has {table.column_names}")
    return table.column(name)


def plain(col: pa.ChunkedArray | pa.Array) -> pa.Array:
    """One contiguous array; dictionary-encoded and large text decoded."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if pa.types.is_large_string(arr.type) or pa.types.is_string_view(arr.type):
        arr = arr.cast(pa.string())
    return arr


def _int64(col: pa.Array, src: SourceFile, name: str) -> pa.Array:
    if pa.types.is_uint64(col.type):
        bad = pc.greater(col, pa.scalar(2**63 - 1, pa.uint64()))
        if pc.any(bad).as_py():
            _fail(src, name, col, first_true(bad), "integers that fit int64")
    return col.cast(pa.int64())


def _nan_to_null(col: pa.Array) -> pa.Array:
    return pc.if_else(pc.is_nan(col), pa.scalar(None, col.type), col)


def _finite(col: pa.Array, src: SourceFile, name: str, expected: str) -> None:
    if pa.types.is_floating(col.type):
        bad = pc.invert(pc.is_finite(col))
        if pc.any(bad).as_py():
            _fail(src, name, col, first_true(bad), expected)


def _no_nulls(col: pa.Array, src: SourceFile, name: str, expected: str) -> None:
    if col.null_count:
        row = first_true(col.is_null())
        raise IngestError(
            f"{src.path}, column {name!r}, row {row + 1}: the value is empty ({col.null_count} "
            f"empty in all); expected {expected}"
        )


def _fail(src: SourceFile, name: str, col: pa.Array, row: int, expected: str) -> NoReturn:
    raise IngestError(
        f"{src.path}, column {name!r}, row {row + 1}: bad value {col[row].as_py()!r}; "
        f"expected {expected}"
    )

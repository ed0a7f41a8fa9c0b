"""Strict identifiers: every name that becomes part of a path, an S3 key or a SQL identifier passes
through here first (datasets, partition keys and values, verticals, days, models, versions).

Nothing here touches I/O. Each check returns the value unchanged or raises IdentifierError naming
the kind of identifier, the value and the pattern it must match.
"""

from __future__ import annotations

import datetime as dt
import re

from exfm.errors import IdentifierError

DATASET = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
PARTITION_KEY = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
VERTICAL = re.compile(r"^[a-z0-9][a-z0-9_]{0,31}$")
DS = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# Versions and model names: letters, digits, dot, dash, underscore; never "..", never leading dot.
VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# One segment of an object key in the lake (snapshots, reports): like a version, '=' allowed.
OBJECT_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=-]{0,127}$")


def _check(kind: str, value: object, pattern: re.Pattern[str]) -> str:
    # fullmatch: the patterns' `$` alone also matches before a trailing newline ("feed\n")
    if not isinstance(value, str) or not pattern.fullmatch(value) or ".." in value:
        raise IdentifierError(f"invalid {kind} {value!r}: expected {pattern.pattern}")
    return value


def dataset(value: object) -> str:
    return _check("dataset name", value, DATASET)


def partition_key(value: object) -> str:
    return _check("partition key", value, PARTITION_KEY)


def vertical(value: object) -> str:
    return _check("vertical", value, VERTICAL)


def version(value: object) -> str:
    return _check("version", value, VERSION)


def ds(value: object) -> str:
    """A partition day, 'YYYY-MM-DD', that is also a real calendar date."""
    text = _check("ds", value, DS)
    try:
        dt.date.fromisoformat(text)
    except ValueError as e:
        raise IdentifierError(f"invalid ds {value!r}: not a calendar date ({e})") from e
    return text


def partition_value(key: str, value: object) -> str:
    """The value of partition key `key`: a ds, a vertical, or else a version-like name."""
    if key == "ds":
        return ds(value)
    if key == "vertical":
        return vertical(value)
    return version(value)


def ds_range(start: str, end: str) -> list[str]:
    """Every day from start to end inclusive, as 'YYYY-MM-DD' strings."""
    first, last = dt.date.fromisoformat(ds(start)), dt.date.fromisoformat(ds(end))
    if last < first:
        raise IdentifierError(f"empty ds range: end {end} is before start {start}")
    return [(first + dt.timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]


def ds_add(day: str, days: int) -> str:
    """The day `days` after `day` (negative: before)."""
    start = dt.date.fromisoformat(ds(day))
    try:
        return (start + dt.timedelta(days=days)).isoformat()
    except OverflowError as e:
        raise IdentifierError(f"ds {day} {days:+d} days is outside years 1..9999") from e

"""The feature spec and the impressions schema; every impressions partition is validated here before
it is written.

Reads: the `features` section of the config. Owns: `FeatureSpec` (verticals, features, which
verticals have which feature, hash sizes, a fingerprint that snapshots carry) and
`validate_partition`, which checks and normalizes one (ds, vertical) table.

Columns of an impressions partition file (ds and vertical live in the partition path):
    example_id  int64 or string, unique, not null
    ts          timestamp[us, UTC], inside the partition's day
    label       int8, 0 or 1, not null
    <feature>   categorical: int64 raw ids (the models hash them into `hash_buckets`);
                null = missing
                dense: float32, finite, null = missing
                a feature that the vertical does not have is entirely null
    true_ctr    float32 in [0, 1] (simulated data only; only evaluation may read it)
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from exfm import ids
from exfm.config import FeaturesConfig
from exfm.errors import SchemaError

TS_TYPE = pa.timestamp("us", tz="UTC")
BASE_COLUMNS = ("example_id", "ts", "label")
TRUE_CTR = "true_ctr"


@dataclass(frozen=True)
class Feature:
    name: str
    kind: str  # "categorical" or "dense"
    hash_buckets: int
    verticals: frozenset[str]

    @property
    def is_categorical(self) -> bool:
        return self.kind == "categorical"

    @property
    def arrow_type(self) -> pa.DataType:
        return pa.int64() if self.is_categorical else pa.float32()


@dataclass(frozen=True)
class FeatureSpec:
    """The verticals and the features of every impression, in config order."""

    verticals: tuple[str, ...]
    features: tuple[Feature, ...]

    @classmethod
    def from_config(cls, cfg: FeaturesConfig) -> FeatureSpec:
        everywhere = frozenset(cfg.verticals)
        feats = tuple(
            Feature(name, f.kind, f.hash_buckets, frozenset(f.only_verticals) or everywhere)
            for name, f in cfg.features.items()
        )
        return cls(tuple(cfg.verticals), feats)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    @property
    def categorical(self) -> tuple[Feature, ...]:
        return tuple(f for f in self.features if f.is_categorical)

    @property
    def dense(self) -> tuple[Feature, ...]:
        return tuple(f for f in self.features if not f.is_categorical)

    def feature(self, name: str) -> Feature:
        for f in self.features:
            if f.name == name:
                return f
        raise SchemaError(f"no feature {name!r}; features: {list(self.names)}")

    def available(self, vertical: str) -> tuple[Feature, ...]:
        """The features that `vertical` has (the others are null in its partitions)."""
        return tuple(f for f in self.features if vertical in f.verticals)

    def fingerprint(self) -> str:
        """A short hash of everything a model's input layer depends on."""
        data = {
            "verticals": list(self.verticals),
            "features": [
                [f.name, f.kind, f.hash_buckets, sorted(f.verticals)] for f in self.features
            ],
        }
        return hashlib.sha256(json.dumps(data).encode()).hexdigest()[:16]

    def file_schema(self, example_id_type: pa.DataType, with_true_ctr: bool) -> pa.Schema:
        """The Arrow schema of an impressions partition file."""
        fields = [
            pa.field("example_id", example_id_type, nullable=False),
            pa.field("ts", TS_TYPE, nullable=False),
            pa.field("label", pa.int8(), nullable=False),
        ]
        fields += [pa.field(f.name, f.arrow_type) for f in self.features]
        if with_true_ctr:
            fields.append(pa.field(TRUE_CTR, pa.float32(), nullable=False))
        return pa.schema(fields, metadata={"exfm.feature_spec": self.fingerprint()})


def validate_partition(
    table: pa.Table, spec: FeatureSpec, ds: str, vertical: str, where: str
) -> pa.Table:
    """Check one impressions partition against the contract above and return it normalized
    (column order, types, schema metadata). `where` names the source in error messages.
    Raises SchemaError naming the column, the offending value and its row."""
    ids.ds(ds)
    if vertical not in spec.verticals:
        raise SchemaError(
            f"{where}: unknown vertical {vertical!r}; features.verticals: {list(spec.verticals)}"
        )
    if table.num_rows == 0:
        raise SchemaError(f"{where}: the partition ds={ds}/vertical={vertical} has no rows")
    expected = [*BASE_COLUMNS, *spec.names]
    missing = [c for c in expected if c not in table.column_names]
    if missing:
        raise SchemaError(f"{where}: missing columns {missing}")
    extra = [c for c in table.column_names if c not in (*expected, TRUE_CTR)]
    if extra:
        raise SchemaError(f"{where}: unexpected columns {extra}; expected {expected}")

    example_id = _example_ids(table.column("example_id"), where)
    ts = _timestamps(table.column("ts"), ds, where)
    label = _labels(table.column("label"), where)
    columns = {"example_id": example_id, "ts": ts, "label": label}
    for feat in spec.features:
        col = table.column(feat.name)
        if vertical not in feat.verticals:
            if col.null_count != len(col):
                row = first_true(pc.is_valid(col))
                raise SchemaError(
                    f"{where}: vertical {vertical!r} does not have feature {feat.name!r}, "
                    f"but row {row} holds {col[row].as_py()!r} (it must be null)"
                )
            columns[feat.name] = pa.nulls(len(col), feat.arrow_type)
        elif feat.is_categorical:
            columns[feat.name] = _categorical(col, feat.name, where)
        else:
            columns[feat.name] = _dense(col, feat.name, where)
    has_true_ctr = TRUE_CTR in table.column_names
    if has_true_ctr:
        columns[TRUE_CTR] = _probabilities(table.column(TRUE_CTR), where)
    schema = spec.file_schema(example_id.type, has_true_ctr)
    return pa.table([columns[f.name] for f in schema], schema=schema)


def first_true(mask: pa.ChunkedArray | pa.Array) -> int:
    """Row index of the first true value of a boolean mask (nulls count as false)."""
    return int(pc.indices_nonzero(pc.fill_null(mask, False))[0].as_py())


def first_duplicate(col: pa.Array | pa.ChunkedArray) -> tuple[object, list[int]] | None:
    """The first value occurring more than once and (up to 3 of) its 0-based rows, or None."""
    if len(pc.unique(col)) == len(col):
        return None
    counts = pc.value_counts(col)
    dup = counts.filter(pc.greater(counts.field("counts"), 1))[0]["values"]
    return dup.as_py(), pc.indices_nonzero(pc.equal(col, dup)).to_pylist()[:3]


def _no_nulls(col: pa.ChunkedArray, name: str, where: str) -> None:
    if col.null_count:
        row = first_true(pc.is_null(col))
        raise SchemaError(f"{where}: column {name!r} is null at row {row} ({col.null_count} nulls)")


def _example_ids(col: pa.ChunkedArray, where: str) -> pa.ChunkedArray:
    if pa.types.is_integer(col.type):
        col = col.cast(pa.int64())
    elif pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        col = col.cast(pa.string())
    else:
        raise SchemaError(
            f"{where}: column 'example_id' has type {col.type}; expected int64 or string"
        )
    _no_nulls(col, "example_id", where)
    dup = first_duplicate(col)
    if dup is not None:
        raise SchemaError(f"{where}: duplicate example_id {dup[0]!r} at rows {dup[1]}")
    return col


def _timestamps(col: pa.ChunkedArray, ds: str, where: str) -> pa.ChunkedArray:
    if not pa.types.is_timestamp(col.type):
        raise SchemaError(f"{where}: column 'ts' has type {col.type}; expected a UTC timestamp")
    # tz-aware: same instant; naive: read as UTC; nanoseconds are truncated to microseconds
    col = pc.cast(col, TS_TYPE, safe=False)
    _no_nulls(col, "ts", where)
    start = dt.datetime.fromisoformat(ds).replace(tzinfo=dt.UTC)
    lo, hi = pa.scalar(start, TS_TYPE), pa.scalar(start + dt.timedelta(days=1), TS_TYPE)
    outside = pc.or_(pc.less(col, lo), pc.greater_equal(col, hi))
    if pc.any(outside).as_py():
        row = first_true(outside)
        raise SchemaError(f"{where}: ts {col[row].as_py()} at row {row} is outside ds={ds} (UTC)")
    return col


def _labels(col: pa.ChunkedArray, where: str) -> pa.ChunkedArray:
    if not (
        pa.types.is_integer(col.type)
        or pa.types.is_boolean(col.type)
        or pa.types.is_floating(col.type)
    ):
        raise SchemaError(f"{where}: column 'label' has type {col.type}; expected 0/1 integers")
    _no_nulls(col, "label", where)
    if pa.types.is_boolean(col.type):
        return col.cast(pa.int8())
    bad = pc.invert(pc.is_in(col, value_set=pa.array([0, 1], col.type)))
    if pc.any(bad).as_py():
        row = first_true(bad)
        raise SchemaError(f"{where}: label {col[row].as_py()!r} at row {row} is not 0 or 1")
    return col.cast(pa.int8())


def _categorical(col: pa.ChunkedArray, name: str, where: str) -> pa.ChunkedArray:
    if not pa.types.is_integer(col.type):
        raise SchemaError(
            f"{where}: categorical feature {name!r} has type {col.type}; expected integer ids"
        )
    if (
        pa.types.is_uint64(col.type)
        and pc.max(col).as_py() is not None
        and pc.max(col).as_py() >= 2**63
    ):
        raise SchemaError(f"{where}: categorical feature {name!r} has ids above int64")
    return col.cast(pa.int64())


def _dense(col: pa.ChunkedArray, name: str, where: str) -> pa.ChunkedArray:
    if not (pa.types.is_floating(col.type) or pa.types.is_integer(col.type)):
        raise SchemaError(f"{where}: dense feature {name!r} has type {col.type}; expected numbers")
    col = col.cast(pa.float32())
    bad = pc.invert(pc.is_finite(col))
    if pc.any(bad).as_py():
        row = first_true(bad)
        raise SchemaError(
            f"{where}: dense feature {name!r} is {col[row].as_py()} at row {row}; "
            "expected a finite number or null"
        )
    return col


def _probabilities(col: pa.ChunkedArray, where: str) -> pa.ChunkedArray:
    if not pa.types.is_floating(col.type):
        raise SchemaError(f"{where}: column 'true_ctr' has type {col.type}; expected float")
    col = col.cast(pa.float32())
    _no_nulls(col, TRUE_CTR, where)
    bad = pc.or_(pc.less(col, 0), pc.greater(col, 1))
    if pc.any(pc.or_(bad, pc.is_nan(col))).as_py():
        row = first_true(pc.or_(bad, pc.is_nan(col)))
        raise SchemaError(f"{where}: true_ctr {col[row].as_py()} at row {row} is not in [0, 1]")
    return col

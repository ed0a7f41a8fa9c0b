"""The impressions dataset: the one way data lands in the lake (`impressions/ds=/vertical=/`), and
the per-day, per-vertical summary that `make run` prints.

Writers (the world simulator, ingest) hand over Arrow tables with `ds` and `vertical` columns;
`write_impressions` splits them into partitions, validates every partition against the feature spec
first, and only then writes, so a bad table writes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from exfm.data.schema import TRUE_CTR, FeatureSpec, validate_partition
from exfm.errors import SchemaError
from exfm.lake import IMPRESSIONS, Lake, WrittenPartition


def split_partitions(
    table: pa.Table, spec: FeatureSpec, source: str
) -> list[tuple[str, str, pa.Table]]:
    """Validated (ds, vertical, table) triples of `table`, sorted. Raises SchemaError."""
    for key in ("ds", "vertical"):
        if key not in table.column_names:
            raise SchemaError(f"{source}: missing column {key!r}")
        col = table.column(key)
        if not pa.types.is_string(col.type):
            raise SchemaError(f"{source}: column {key!r} has type {col.type}; expected string")
        if col.null_count:
            raise SchemaError(f"{source}: column {key!r} has {col.null_count} nulls")
    pairs = table.select(["ds", "vertical"]).group_by(["ds", "vertical"]).aggregate([])
    out = []
    for ds, vertical in sorted(zip(*pairs.to_pydict().values(), strict=True)):
        mask = pc.and_(
            pc.equal(table.column("ds"), ds), pc.equal(table.column("vertical"), vertical)
        )
        part = table.filter(mask).drop_columns(["ds", "vertical"])
        where = f"{source} (ds={ds}, vertical={vertical})"
        out.append((ds, vertical, validate_partition(part, spec, ds, vertical, where)))
    return out


def write_impressions(
    lake: Lake, spec: FeatureSpec, table: pa.Table, source: str
) -> list[WrittenPartition]:
    """Validate every (ds, vertical) partition of `table`, then write them (each atomically).
    A partition that already holds the same content is kept with its content id, so landing a
    day again changes nothing downstream unless its data changed."""
    parts = split_partitions(table, spec, source)
    return [
        lake.write_partition(
            IMPRESSIONS,
            {"ds": ds, "vertical": vertical},
            part,
            metadata={"exfm.source": source},
            keep_if_same=True,
        )
        for ds, vertical, part in parts
    ]


def summarize(
    lake: Lake,
    ds_start: str | None = None,
    ds_end: str | None = None,
    distinct: Sequence[str] = ("user_id", "ad_id"),
) -> pa.Table:
    """Per day and vertical: rows, clicks, CTR, mean true_ctr (simulated data) and distinct counts
    of the `distinct` features that exist."""
    data = lake.dataset(IMPRESSIONS, ds_start=ds_start, ds_end=ds_end)
    names = set(data.schema.names)
    con = duckdb.connect()
    try:
        rel = con.from_arrow(data)
        exprs = [
            "ds",
            "vertical",
            "count(*) AS rows",
            "sum(label)::BIGINT AS clicks",
            "round(avg(label), 5) AS ctr",
        ]
        if TRUE_CTR in names:
            exprs.append(f"round(avg({TRUE_CTR}), 5) AS mean_true_ctr")
        exprs += [
            f"count(DISTINCT {c}) AS {c.removesuffix('_id')}s" for c in distinct if c in names
        ]
        return (
            rel.aggregate(", ".join(exprs), "ds, vertical").order("ds, vertical").to_arrow_table()
        )
    finally:
        con.close()

"""Evaluation across models, verticals, variants and days, from the progressive predictions that the
trainer stores in the `evals` dataset (`evals/model=/vertical=/ds=`: example_id, label, logit,
true_ctr on simulated data).

`evaluate` returns one row per model, vertical and day, then pooled rows (ds = "pooled") per model
and vertical, and per model over every vertical ("all"). Pooled rows cover only the days on which
every model of the table has predictions for that vertical, so that they compare like with like;
`ne_gain_pct` is the relative NE gain over `vm_baseline` on the same rows, when it is present.

Before it pools anything, every evaluation partition is checked against the lake (exfm/lineage.py):
it must name the snapshot that predicted and the impressions it scored, and both must still be
the lake's content. An evaluation made by a snapshot since retrained, or on impressions since
re-landed, is refused with both names: pooling it beside fresh ones would compare models trained on
different data.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from exfm import variants
from exfm.errors import ExfmError, LakeError
from exfm.lake import EVALS, Lake
from exfm.lineage import StaleError, changes, current_id, describe_changes, partition_inputs
from exfm.metrics import BinaryMetrics, relative_ne_gain
from exfm.variants import POOLED, vm_model_name

BASELINE = vm_model_name(variants.BASELINE)
COLUMNS = [
    "model",
    "vertical",
    "ds",
    "rows",
    "ctr",
    "ne",
    "auc",
    "calibration",
    "oracle_ne",
    "ne_gain_pct",
]


def _accumulate(
    lake: Lake,
    ds_start: str | None,
    ds_end: str | None,
    models: Sequence[str] | None,
    read: dict[str, dict[str, Any]] | None = None,
) -> dict[tuple[str, str, str], BinaryMetrics]:
    where: dict = {}
    if models:
        where["model"] = list(models)
    parts = lake.partitions(EVALS, **where)
    if ds_start or ds_end:
        lo, hi = ds_start or "0000-00-00", ds_end or "9999-99-99"
        parts = [p for p in parts if lo <= p["ds"] <= hi]
    if not parts:
        raise ExfmError(
            f"no progressive evaluations in {lake.uri('evals')} for that selection: "
            "train at least two days of a model first"
        )
    out = {}
    lineage = _Lineage(lake)
    stale = []
    tables = {}
    for p in parts:
        part = read_evals(lake, p, lineage)
        if part.problem is not None:
            stale.append(part.problem)
        if read is not None:
            read[EVALS.rel_dir(p)] = {"content_id": part.content_id, "inputs": part.inputs}
        tables[(p["model"], p["vertical"], p["ds"])] = part.table
    if stale:
        more = f" (and {len(stale) - 5} more)" if len(stale) > 5 else ""
        raise StaleError(
            "evaluations made on content that is no longer in the lake: "
            + "; ".join(stale[:5])
            + more
            + ". Retrain those models from the first such day (or leave them out with --model)"
        )
    for p in parts:
        table = tables[(p["model"], p["vertical"], p["ds"])]
        true_ctr = table.column("true_ctr").to_numpy() if "true_ctr" in table.column_names else None
        m = BinaryMetrics()
        m.update(table.column("logit").to_numpy(), table.column("label").to_numpy(), true_ctr)
        out[(p["model"], p["vertical"], p["ds"])] = m
    return out


class _Lineage:
    """Current content ids, each looked up once per evaluation."""

    def __init__(self, lake: Lake) -> None:
        self.lake = lake
        self.ids: dict[str, str | None] = {}

    def now(self, names: Iterable[str]) -> dict[str, str | None]:
        for name in names:
            if name not in self.ids:
                self.ids[name] = current_id(self.lake, name)
        return {name: self.ids[name] for name in names}


@dataclass(frozen=True)
class EvalsPartition:
    """One evaluation partition as read: its rows, content id, recorded inputs, and why it
    cannot be trusted (None when it can)."""

    table: pa.Table
    content_id: str
    inputs: dict[str, str]
    problem: str | None


def read_evals(
    lake: Lake, values: Mapping[str, str], lineage: _Lineage | None = None
) -> EvalsPartition:
    """One evaluation partition: it must name its inputs, and they must be the lake's content
    now, or `problem` says why not."""
    name = EVALS.rel_dir(values)
    for _ in range(3):
        recorded = partition_inputs(lake, EVALS, values)
        written = lake.partition_metadata(EVALS, values).get("exfm.write_id", "")
        table, got = lake.read_with_ids(EVALS, **{k: [v] for k, v in values.items()})
        if got.get(name) == written:
            break
    else:
        raise LakeError(f"{lake.uri(name)} kept changing while it was read")
    if not recorded:
        problem: str | None = f"{name} names no inputs (made before evaluations recorded them)"
        return EvalsPartition(table, written, {}, problem)
    now = (lineage or _Lineage(lake)).now(list(recorded))
    found = changes(lake, recorded, now)  # type: ignore[arg-type]
    problem = f"{name}: {describe_changes(found)}" if found else None
    return EvalsPartition(table, written, recorded, problem)


def evaluate(
    lake: Lake,
    ds_start: str | None = None,
    ds_end: str | None = None,
    models: Sequence[str] | None = None,
    read: dict[str, dict[str, Any]] | None = None,
) -> pa.Table:
    """The evaluation table described in the module docstring. `read`, when given, receives the
    content id and the inputs of every evaluation partition that was pooled."""
    acc = _accumulate(lake, ds_start, ds_end, models, read)
    names = sorted({m for m, _, _ in acc})
    verticals = sorted({v for _, v, _ in acc})
    rows = []
    for (model, vertical, ds), m in sorted(acc.items()):
        base = acc.get((BASELINE, vertical, ds))
        rows.append(_row(model, vertical, ds, m, base))
    pooled_all: dict[str, BinaryMetrics] = defaultdict(BinaryMetrics)
    base_all = BinaryMetrics()
    for vertical in verticals:
        days = sorted(
            set.intersection(
                *[{d for (mm, v, d) in acc if mm == model and v == vertical} for model in names]
            )
        )
        if not days:
            continue
        base = None
        if BASELINE in names:
            base = _merge(acc[(BASELINE, vertical, d)] for d in days)
            base_all = base_all.merge(base)
        for model in names:
            pooled = _merge(acc[(model, vertical, d)] for d in days)
            pooled_all[model] = pooled_all[model].merge(pooled)
            rows.append(_row(model, vertical, "pooled", pooled, base))
    for model in names:
        if pooled_all[model].rows:
            rows.append(
                _row(
                    model,
                    POOLED,
                    "pooled",
                    pooled_all[model],
                    base_all if BASELINE in names else None,
                )
            )
    return pa.Table.from_pylist(rows).select(COLUMNS)


def _merge(items: object) -> BinaryMetrics:
    out = BinaryMetrics()
    for m in items:  # type: ignore[attr-defined]
        out = out.merge(m)
    return out


def _row(
    model: str, vertical: str, ds: str, m: BinaryMetrics, base: BinaryMetrics | None
) -> dict[str, object]:
    c = m.compute()
    gain = None
    if base is not None:
        b = base.compute()
        if c.ne is not None and b.ne is not None:
            gain = round(relative_ne_gain(c.ne, b.ne), 4)
    return {
        "model": model,
        "vertical": vertical,
        "ds": ds,
        "rows": c.rows,
        "ctr": _round(c.ctr),
        "ne": _round(c.ne),
        "auc": _round(c.auc),
        "calibration": _round(c.calibration),
        "oracle_ne": _round(c.oracle_ne),
        "ne_gain_pct": gain,
    }


def _round(x: float | None) -> float | None:
    return None if x is None else round(float(x), 5)

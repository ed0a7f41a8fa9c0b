"""Model inputs: which features a model reads (`InputLayout`), the typed `Batch` of tensors, and
the fast data path from an Arrow table of impressions to a Batch (no per-row Python).

Categorical ids are hashed into rows here, in numpy: row 0 is reserved for a missing value and ids
land in rows 1..buckets-1 through a salted splitmix64 finalizer, so every feature hashes
independently and the same id always lands in the same row (on every machine and run).
Dense features travel as float32 with NaN for a missing value; the models normalize them and add a
missing-indicator.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from exfm.config_schema import VMConfig
from exfm.data.schema import FeatureSpec
from exfm.errors import SchemaError


@dataclass(frozen=True)
class InputLayout:
    """The features a model reads, in order: categorical (name, rows incl. the missing row) and
    dense names; plus the verticals, whose index the FM embeds."""

    categorical: tuple[tuple[str, int], ...]
    dense: tuple[str, ...]
    verticals: tuple[str, ...]

    @classmethod
    def for_fm(cls, spec: FeatureSpec) -> InputLayout:
        """Every feature of the spec, at its full hash size."""
        return cls(
            tuple((f.name, f.hash_buckets) for f in spec.categorical),
            tuple(f.name for f in spec.dense),
            spec.verticals,
        )

    @classmethod
    def for_vm(cls, spec: FeatureSpec, vm: VMConfig, vertical: str) -> InputLayout:
        """The VM's own subset (vm.features), minus what `vertical` lacks, with smaller tables."""
        names = [f.name for f in spec.available(vertical) if f.name in vm.features]
        if not names:
            raise SchemaError(f"vertical {vertical!r} has none of vm.features {list(vm.features)}")
        feats = [spec.feature(n) for n in names]
        return cls(
            tuple(
                (f.name, min(f.hash_buckets, vm.max_hash_buckets))
                for f in feats
                if f.is_categorical
            ),
            tuple(f.name for f in feats if not f.is_categorical),
            (vertical,),
        )

    @property
    def columns(self) -> list[str]:
        return [name for name, _ in self.categorical] + list(self.dense)

    def to_dict(self) -> dict[str, Any]:
        return {
            "categorical": [list(c) for c in self.categorical],
            "dense": list(self.dense),
            "verticals": list(self.verticals),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InputLayout:
        return cls(
            tuple((str(n), int(b)) for n, b in data["categorical"]),
            tuple(data["dense"]),
            tuple(data["verticals"]),
        )


@dataclass(frozen=True)
class Batch:
    """Tensors of B impressions. cat: (B, C) int64 rows; dense: (B, D) float32, NaN = missing;
    vertical: (B,) int64 index into the layout's verticals; label: (B,) float32;
    fm_logit: (B,) float32, the FM's stored prediction (VMs only; 0 where missing);
    fm_mask: (B,) bool, the rows that have an FM prediction."""

    cat: torch.Tensor
    dense: torch.Tensor
    vertical: torch.Tensor
    label: torch.Tensor
    fm_logit: torch.Tensor | None = None
    fm_mask: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.label.shape[0])

    def take(self, index: torch.Tensor | slice) -> Batch:
        fm = None if self.fm_logit is None else self.fm_logit[index]
        mask = None if self.fm_mask is None else self.fm_mask[index]
        return Batch(
            self.cat[index], self.dense[index], self.vertical[index], self.label[index], fm, mask
        )

    def to(self, device: torch.device | str) -> Batch:
        if torch.device(device).type == "cpu":
            return self
        moved = {
            k: (None if v is None else v.to(device, non_blocking=True))
            for k, v in self.__dict__.items()
        }
        return replace(self, **moved)


def _salt(name: str) -> np.uint64:
    return np.uint64(int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little"))


def hash_rows(ids: np.ndarray, valid: np.ndarray, buckets: int, feature: str) -> np.ndarray:
    """Rows of int64 ids in a table of `buckets` rows: 0 for missing, else 1..buckets-1."""
    x = ids.astype(np.int64).view(np.uint64) ^ _salt(feature)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    x = x ^ (x >> np.uint64(31))
    rows = (x % np.uint64(buckets - 1)).astype(np.int64) + 1
    rows[~valid] = 0
    return rows


def _numpy(col: pa.ChunkedArray | pa.Array, fill: Any) -> tuple[np.ndarray, np.ndarray]:
    """(values with nulls filled, validity mask) of a column."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    valid = (
        np.ones(len(arr), bool)
        if arr.null_count == 0
        else (arr.is_valid().to_numpy(zero_copy_only=False))
    )
    values = pc.fill_null(arr, fill).to_numpy(zero_copy_only=False)
    return values, valid


def to_batch(table: pa.Table, layout: InputLayout, with_fm_logit: bool = False) -> Batch:
    """Convert impressions (with their `vertical` column, and `fm_logit` when asked) to a Batch."""
    missing = [c for c in [*layout.columns, "label", "vertical"] if c not in table.column_names]
    if with_fm_logit and "fm_logit" not in table.column_names:
        missing.append("fm_logit")
    if missing:
        raise SchemaError(f"the training table lacks columns {missing}")
    n = table.num_rows
    cat = np.zeros((n, len(layout.categorical)), np.int64)
    for j, (name, buckets) in enumerate(layout.categorical):
        values, valid = _numpy(table.column(name), 0)
        cat[:, j] = hash_rows(values, valid, buckets, name)
    dense = np.empty((n, len(layout.dense)), np.float32)
    for j, name in enumerate(layout.dense):
        values, valid = _numpy(table.column(name), 0.0)
        dense[:, j] = np.where(valid, values, np.nan)
    vertical = pc.index_in(table.column("vertical"), value_set=pa.array(layout.verticals))
    if vertical.null_count:
        bad = table.column("vertical").filter(vertical.is_null())[0].as_py()
        raise SchemaError(f"vertical {bad!r} is not one of the model's {list(layout.verticals)}")
    fm_logit = fm_mask = None
    if with_fm_logit:
        fm, valid = _numpy(table.column("fm_logit"), 0.0)
        if not np.isfinite(fm).all():
            raise SchemaError("fm_logit has non-finite values: the DAS store holds a bad score")
        fm_logit = torch.from_numpy(fm.astype(np.float32))
        fm_mask = torch.from_numpy(valid)
    return Batch(
        cat=torch.from_numpy(cat),
        dense=torch.from_numpy(dense),
        vertical=torch.from_numpy(_numpy(vertical, 0)[0].astype(np.int64)),
        label=torch.from_numpy(_numpy(table.column("label"), 0)[0].astype(np.float32)),
        fm_logit=fm_logit,
        fm_mask=fm_mask,
    )


def batches(n: int, size: int, order: torch.Tensor | None = None) -> Sequence[torch.Tensor]:
    """Index tensors of consecutive batches of `size` over `order` (default 0..n-1)."""
    order = torch.arange(n) if order is None else order
    return [order[i : i + size] for i in range(0, n, size)]

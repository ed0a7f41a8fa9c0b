"""Model snapshots in the lake, their lineage, and the publishing gate.

Layout under the lake root (local or S3), one folder per model, vertical and training day:
    registry/<model>/[<vertical>/]ds=YYYY-MM-DD/snapshot.pt   the weights and optimizer state
    registry/<model>/[<vertical>/]ds=YYYY-MM-DD/meta.json     lineage, metrics, published flag
`<model>` is "fm" or "vm_<variant>"; the FM has no vertical level. snapshot.pt is written first and
meta.json last, so a snapshot exists only once its meta does; meta.json carries the sha256 of
snapshot.pt, so a corrupted or truncated file is refused. That sha256 is the snapshot's content id,
and meta.json's `inputs` name the content ids it was trained from (the day's impressions, the DAS
partition for a distilled VM, the parent snapshot): see exfm/lineage.py. The snapshot file alone
rebuilds its model: it holds the model's config, input layout and feature-spec fingerprint beside
the tensors, and is read with `torch.load(weights_only=True)` (no pickled code).

Publishing (STYLE 7): a trained snapshot is published, i.e. may be served and used by the DAS,
only when `publish_decision` blesses its evaluation; otherwise it is kept, unpublished, with the
reason in meta.json. Training continues from the latest snapshot either way.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import io
import json
import pickle
from dataclasses import dataclass, field
from typing import Any

import torch

from exfm import ids
from exfm.config_schema import PublishConfig
from exfm.errors import LakeError, RegistryError
from exfm.lake import Lake
from exfm.metrics import Metrics

SNAPSHOT, META = "snapshot.pt", "meta.json"
FORMAT = 2  # 2: meta.json records the content ids of the snapshot's inputs


@dataclass(frozen=True)
class SnapshotMeta:
    """Everything about a snapshot but its tensors."""

    model: str
    vertical: str | None
    ds: str
    kind: str  # "fm" or "vm"
    spec_fingerprint: str
    parent_ds: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    published: bool = False
    publish_reason: str = ""
    created_at: str = ""
    sha256: str = ""
    bytes: int = 0
    format: int = FORMAT
    inputs: dict[str, str] = field(default_factory=dict)  # input name -> content id (lineage)

    @property
    def label(self) -> str:
        where = f"{self.model}/{self.vertical}" if self.vertical else self.model
        return f"{where}@{self.ds}"

    @property
    def name(self) -> str:
        """The snapshot's artifact name (its folder under the lake root)."""
        return snapshot_prefix(self.model, self.vertical, self.ds)


def snapshot_prefix(model: str, vertical: str | None, ds: str | None = None) -> str:
    parts = ["registry", ids.version(model)]
    if vertical is not None:
        parts.append(ids.vertical(vertical))
    if ds is not None:
        parts.append(f"ds={ids.ds(ds)}")
    return "/".join(parts)


class Registry:
    def __init__(self, lake: Lake) -> None:
        self.lake = lake

    def save(self, meta: SnapshotMeta, payload: dict[str, Any]) -> SnapshotMeta:
        """Write the snapshot file, then its meta (the commit point). Returns the final meta."""
        buf = io.BytesIO()
        torch.save(payload, buf)
        data = buf.getvalue()
        meta = dataclasses.replace(
            meta,
            sha256=hashlib.sha256(data).hexdigest(),
            bytes=len(data),
            created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        )
        prefix = snapshot_prefix(meta.model, meta.vertical, meta.ds)
        self.lake.put_bytes(f"{prefix}/{SNAPSHOT}", data)
        self._write_meta(meta)
        return meta

    def _write_meta(self, meta: SnapshotMeta) -> None:
        prefix = snapshot_prefix(meta.model, meta.vertical, meta.ds)
        text = json.dumps(dataclasses.asdict(meta), indent=1, sort_keys=True, default=str)
        self.lake.put_bytes(f"{prefix}/{META}", text.encode())

    def meta(self, model: str, vertical: str | None, ds: str) -> SnapshotMeta:
        key = f"{snapshot_prefix(model, vertical, ds)}/{META}"
        try:
            raw = self.lake.get_bytes(key)
        except LakeError as e:
            raise RegistryError(f"no snapshot {model}/{vertical or '-'}@{ds}: {e}") from e
        try:
            data = json.loads(raw)
            return SnapshotMeta(**data)
        except (ValueError, TypeError) as e:
            raise RegistryError(f"{self.lake.uri(key)} is corrupt: {e}") from e

    def load(
        self, model: str, vertical: str | None, ds: str, spec_fingerprint: str
    ) -> tuple[dict[str, Any], SnapshotMeta]:
        """The snapshot's payload and meta. Refuses a corrupted file or another feature spec."""
        meta = self.meta(model, vertical, ds)
        if meta.spec_fingerprint != spec_fingerprint:
            raise RegistryError(
                f"snapshot {meta.label} was trained on feature spec {meta.spec_fingerprint}, but "
                f"the current spec is {spec_fingerprint}: the features or their hash sizes "
                "changed; train from scratch or restore the old features section"
            )
        key = f"{snapshot_prefix(model, vertical, ds)}/{SNAPSHOT}"
        data = self.lake.get_bytes(key)
        if hashlib.sha256(data).hexdigest() != meta.sha256 or len(data) != meta.bytes:
            raise RegistryError(
                f"{self.lake.uri(key)} is corrupted: its checksum or size ({len(data)} bytes) "
                f"does not match meta.json ({meta.bytes} bytes)"
            )
        try:
            payload = torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
        except (RuntimeError, pickle.UnpicklingError, EOFError, ValueError) as e:
            raise RegistryError(f"cannot load {self.lake.uri(key)}: {e}") from e
        if payload.get("spec_fingerprint") != spec_fingerprint:
            raise RegistryError(f"{self.lake.uri(key)} disagrees with its meta.json on the spec")
        return payload, meta

    def history(self, model: str, vertical: str | None) -> list[SnapshotMeta]:
        """Every snapshot of a model (and vertical), oldest first."""
        prefix = snapshot_prefix(model, vertical)
        days = sorted(
            key.split("/")[-2].removeprefix("ds=")
            for key in self.lake.list_keys(prefix)
            if key.endswith("/" + META)
            and key.split("/")[-2].startswith("ds=")
            and key.count("/") == prefix.count("/") + 2
        )
        return [self.meta(model, vertical, day) for day in days]

    def latest(self, model: str, vertical: str | None, before: str) -> SnapshotMeta | None:
        """The newest snapshot trained on a day before `before` (the trainer's parent)."""
        older = [m for m in self.history(model, vertical) if m.ds < ids.ds(before)]
        return older[-1] if older else None

    def latest_published(self, model: str, vertical: str | None, as_of: str) -> SnapshotMeta | None:
        """The newest published snapshot trained on `as_of` or before."""
        ok = [m for m in self.history(model, vertical) if m.published and m.ds <= ids.ds(as_of)]
        return ok[-1] if ok else None

    def published_before(self, model: str, vertical: str | None, ds: str) -> SnapshotMeta | None:
        """The newest published snapshot trained strictly before ds: the incumbent that a snapshot
        of ds is compared with, on its first training and on a retrain of ds alike (ds's own
        earlier snapshot is what the retrain replaces, not an incumbent)."""
        ok = [m for m in self.history(model, vertical) if m.published and m.ds < ids.ds(ds)]
        return ok[-1] if ok else None

    def delete(self, model: str, vertical: str | None, ds: str) -> None:
        """Remove a snapshot: its meta.json first (the commit point), then the file."""
        prefix = snapshot_prefix(model, vertical, ds)
        self.lake.delete_key(f"{prefix}/{META}")
        self.lake.delete_key(f"{prefix}/{SNAPSHOT}")

    def set_published(self, meta: SnapshotMeta, published: bool, reason: str) -> SnapshotMeta:
        updated = dataclasses.replace(meta, published=published, publish_reason=reason)
        self._write_meta(updated)
        return updated


def publish_decision(
    candidate: Metrics, incumbent: Metrics | None, cfg: PublishConfig
) -> tuple[bool, str]:
    """Whether a snapshot may be published, and why. `candidate`: the new snapshot's metrics on
    the day; `incumbent`: the previous published snapshot's on the same rows (None: none)."""
    ne, calibration = candidate.ne, candidate.calibration
    if ne is None or calibration is None:
        return False, "no evaluation: the day had no positives or no negatives"
    if ne > cfg.max_ne:
        return False, f"NE {ne:.5f} is above publish.max_ne {cfg.max_ne}"
    if not cfg.min_calibration <= calibration <= cfg.max_calibration:
        return False, (
            f"calibration {calibration:.3f} is outside "
            f"[{cfg.min_calibration}, {cfg.max_calibration}]"
        )
    if incumbent is None or incumbent.ne is None:
        return True, f"NE {ne:.5f}; no earlier published snapshot to compare with"
    limit = incumbent.ne * (1 + cfg.max_ne_regression)
    if ne > limit:
        return False, (
            f"NE {ne:.5f} is worse than the published snapshot's {incumbent.ne:.5f} "
            f"by more than publish.max_ne_regression {cfg.max_ne_regression:.1%}"
        )
    return True, f"NE {ne:.5f} vs the published snapshot's {incumbent.ne:.5f}"

"""Model snapshots in the lake, their lineage, what is kept of them, and the publishing gate.

Layout under the lake root (local or S3), one folder per model, vertical and training day:
    registry/<model>/[<vertical>/]index.jsonl                every snapshot's meta (commit point)
    registry/<model>/[<vertical>/]ds=YYYY-MM-DD/snapshot.pt  the weights (the content id)
    registry/<model>/[<vertical>/]ds=YYYY-MM-DD/optimizer.pt the optimizer state, where kept
    registry/<model>/[<vertical>/]ds=YYYY-MM-DD/meta.json    a copy of the index's entry
`<model>` is "fm" or "vm_<variant>"; the FM has no vertical level.

The index (one file per model and vertical: a header line, then one JSON line per snapshot) is
what readers read: `history`, `latest`, `latest_published` and `meta` are one GET, however many
days the model has (they used to read every meta.json), and a save re-encodes only the lines it
changes. A save writes snapshot.pt and optimizer.pt, then meta.json, then the index: a
snapshot exists once the index names it, and a crash before leaves files that nothing names
(the next save of the day replaces them). The index entry carries the sha256 of snapshot.pt, so a
corrupted or truncated file is refused. That sha256 is the snapshot's content id, and the entry's
`inputs` name the content ids it was trained from (the day's impressions, the DAS partition for a
distilled VM, the parent snapshot): see exfm/lineage.py. A registry written before the index
existed is indexed from its meta.json files on first read; a corrupted index is refused
(`exfm registry reindex` rebuilds it from the meta.json copies).

What is kept (registry.* in params, `RegistryConfig`): the weights of every day; the optimizer
state, which only a training that continues from the snapshot needs, of the newest snapshot, of
the one just saved and of every `optimizer_every_days`-th day (checkpoints), so a retrain resumes
from the nearest checkpoint; unpublished snapshots older than `keep_unpublished_days` before the
newest lose their files (unless they are checkpoints), their index entry stays, marked `pruned`,
so that what was made from them keeps naming a content id the registry knows. The optimizer state
is not part of the content id: dropping it changes nothing downstream.

The snapshot file alone rebuilds its model: it holds the model's config, input layout and
feature-spec fingerprint beside the tensors, and is read with `torch.load(weights_only=True)` (no
pickled code).

Publishing (STYLE 7): a trained snapshot is published, i.e. may be served and used by the DAS,
only when `publish_decision` blesses its evaluation; otherwise it is kept, unpublished, with the
reason in its meta. Training continues from the latest snapshot either way.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import io
import json
import logging
import pickle
from dataclasses import dataclass, field
from typing import Any

from exfm import ids
from exfm.config_schema import PublishConfig, RegistryConfig
from exfm.errors import LakeError, RegistryError
from exfm.lake import Lake
from exfm.metrics import Metrics

log = logging.getLogger(__name__)
SNAPSHOT, OPTIMIZER, META, INDEX = "snapshot.pt", "optimizer.pt", "meta.json", "index.jsonl"
# 2: meta.json records the content ids of the snapshot's inputs; 3: the optimizer state is in
# optimizer.pt, outside the content id (format 2 snapshots hold it in snapshot.pt)
FORMAT = 3
INDEX_FORMAT = 1
OPTIMIZER_KEYS = ("optimizer", "adapter_optimizer")  # the payload keys that go to optimizer.pt
_EPOCH = dt.date(1970, 1, 1)


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
    optimizer_sha256: str = ""  # optimizer.pt's sha256; "" where it is not kept
    optimizer_bytes: int = 0
    pruned: str = ""  # why the files were removed ("": they are there)

    @property
    def label(self) -> str:
        where = f"{self.model}/{self.vertical}" if self.vertical else self.model
        return f"{where}@{self.ds}"

    @property
    def name(self) -> str:
        """The snapshot's artifact name (its folder under the lake root)."""
        return snapshot_prefix(self.model, self.vertical, self.ds)

    @property
    def resumable(self) -> bool:
        """Whether training can continue from it (its files and optimizer state are there)."""
        return not self.pruned and (bool(self.optimizer_sha256) or self.format < 3)


def snapshot_prefix(model: str, vertical: str | None, ds: str | None = None) -> str:
    parts = ["registry", ids.version(model)]
    if vertical is not None:
        parts.append(ids.vertical(vertical))
    if ds is not None:
        parts.append(f"ds={ids.ds(ds)}")
    return "/".join(parts)


def is_checkpoint_day(ds: str, every: int) -> bool:
    """Whether ds is one of the days whose optimizer state is kept (`optimizer_every_days`)."""
    return (dt.date.fromisoformat(ids.ds(ds)) - _EPOCH).days % every == 0


def _serialize(payload: dict[str, Any]) -> bytes:
    import torch  # not at import: lineage questions read the registry without torch

    buf = io.BytesIO()
    torch.save(payload, buf)
    return buf.getvalue()


class Registry:
    def __init__(self, lake: Lake) -> None:
        self.lake = lake
        # the JSON line each entry was read as, by the entry's identity: a save re-encodes
        # only the entries it changed, so writing the index stays cheap as days accumulate
        self._lines: dict[int, tuple[SnapshotMeta, str]] = {}

    # ---------------------------------------------------------------------------- the index

    def _index_key(self, model: str, vertical: str | None) -> str:
        return f"{snapshot_prefix(model, vertical)}/{INDEX}"

    def _index(self, model: str, vertical: str | None) -> dict[str, SnapshotMeta]:
        """ds -> meta of every snapshot of the model (and vertical), from its index."""
        key = self._index_key(model, vertical)
        try:
            raw = self.lake.get_bytes(key)
        except LakeError:
            if self.lake.exists(key):
                raise
            return self._build_index(model, vertical, write=True)
        index = {}
        try:
            header, *lines = raw.decode().splitlines()
            head = json.loads(header)
            if head.get("format") != INDEX_FORMAT or head.get("snapshots") != len(lines):
                raise ValueError(
                    f"format {head.get('format')!r} with {head.get('snapshots')!r} snapshots, "
                    f"{len(lines)} lines"
                )
            for line in lines:
                meta = SnapshotMeta(**json.loads(line))
                self._lines[id(meta)] = (meta, line)
                index[meta.ds] = meta
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            raise RegistryError(
                f"{self.lake.uri(key)} is corrupt ({e}); `exfm registry reindex` rebuilds it from "
                "the snapshots' meta.json"
            ) from e
        return index

    def _write_index(
        self, model: str, vertical: str | None, index: dict[str, SnapshotMeta]
    ) -> None:
        """JSON lines: a header (format, model, vertical, number of snapshots), then one
        snapshot's meta per line, oldest first."""
        head = {"format": INDEX_FORMAT, "model": model, "vertical": vertical}
        lines = [json.dumps({**head, "snapshots": len(index)}, sort_keys=True)]
        for ds in sorted(index):
            meta = index[ds]
            known = self._lines.get(id(meta))
            if known is None or known[0] is not meta:
                line = json.dumps(dataclasses.asdict(meta), sort_keys=True, default=str)
                known = self._lines[id(meta)] = (meta, line)
            lines.append(known[1])
        data = ("\n".join(lines) + "\n").encode()
        self.lake.put_bytes(self._index_key(model, vertical), data)

    def _build_index(
        self, model: str, vertical: str | None, write: bool
    ) -> dict[str, SnapshotMeta]:
        """The index rebuilt from the meta.json copies (a registry written before the index
        existed, or `exfm registry reindex`)."""
        prefix = snapshot_prefix(model, vertical)
        index = {}
        for key in self.lake.list_keys(prefix):
            parts = key.split("/")
            if parts[-1] != META or not parts[-2].startswith("ds="):
                continue
            if key.count("/") != prefix.count("/") + 2:
                continue
            meta = self._read_meta_copy(key)
            index[meta.ds] = meta
        if index and write:
            log.info("registry: indexing %d snapshots of %s", len(index), prefix)
            self._write_index(model, vertical, index)
        return index

    def _read_meta_copy(self, key: str) -> SnapshotMeta:
        try:
            data = json.loads(self.lake.get_bytes(key))
            return SnapshotMeta(**data)
        except (ValueError, TypeError) as e:
            raise RegistryError(f"{self.lake.uri(key)} is corrupt: {e}") from e

    def reindex(self) -> dict[str, int]:
        """Rebuild every model's index from the meta.json copies; returns snapshots per index."""
        groups = set()
        for key in self.lake.list_keys("registry"):
            parts = key.split("/")
            if parts[-1] == META and len(parts) in (4, 5) and parts[-2].startswith("ds="):
                groups.add((parts[1], parts[2] if len(parts) == 5 else None))
        out = {}
        for model, vertical in sorted(groups, key=lambda g: (g[0], g[1] or "")):
            index = self._build_index(model, vertical, write=True)
            out[snapshot_prefix(model, vertical)] = len(index)
        return out

    def models(self) -> list[tuple[str, str | None]]:
        """(model, vertical) of every indexed (or indexable) snapshot chain in the registry."""
        groups = set()
        for key in self.lake.list_keys("registry"):
            parts = key.split("/")
            if parts[-1] == INDEX and len(parts) in (3, 4):
                groups.add((parts[1], parts[2] if len(parts) == 4 else None))
            elif parts[-1] == META and len(parts) in (4, 5) and parts[-2].startswith("ds="):
                groups.add((parts[1], parts[2] if len(parts) == 5 else None))
        return sorted(groups, key=lambda g: (g[0], g[1] or ""))

    # ---------------------------------------------------------------------------- writing

    def save(
        self,
        meta: SnapshotMeta,
        payload: dict[str, Any],
        policy: RegistryConfig | None = None,
    ) -> SnapshotMeta:
        """Write the snapshot's files, its meta.json, then the index (the commit point); then
        apply `policy` (None: keep everything) to the model's other snapshots. Returns the
        final meta."""
        weights = {k: v for k, v in payload.items() if k not in OPTIMIZER_KEYS}
        state = {k: v for k, v in payload.items() if k in OPTIMIZER_KEYS}
        data = _serialize(weights)
        state_data = _serialize(state) if state else b""
        meta = dataclasses.replace(
            meta,
            sha256=hashlib.sha256(data).hexdigest(),
            bytes=len(data),
            optimizer_sha256=hashlib.sha256(state_data).hexdigest() if state else "",
            optimizer_bytes=len(state_data),
            format=FORMAT,
            pruned="",
            created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        )
        prefix = snapshot_prefix(meta.model, meta.vertical, meta.ds)
        index = self._index(meta.model, meta.vertical)
        self.lake.put_bytes(f"{prefix}/{SNAPSHOT}", data)
        if state:
            self.lake.put_bytes(f"{prefix}/{OPTIMIZER}", state_data)
        else:
            self.lake.delete_key(f"{prefix}/{OPTIMIZER}")
        self._write_meta_copy(meta)
        index[meta.ds] = meta
        removals = self._apply(policy, index, meta.ds) if policy is not None else []
        self._write_index(meta.model, meta.vertical, index)
        for old, files in removals:
            self._write_meta_copy(old)
            for name in files:
                self.lake.delete_key(f"{old.name}/{name}")
        return meta

    def _apply(
        self, policy: RegistryConfig, index: dict[str, SnapshotMeta], saved: str
    ) -> list[tuple[SnapshotMeta, list[str]]]:
        """Update `index` for what `policy` no longer keeps; returns (meta, files to delete)."""
        newest = max(index)
        keep_after = (
            None
            if policy.keep_unpublished_days is None
            else ids.ds_add(newest, -policy.keep_unpublished_days)
        )
        out = []
        for ds, meta in index.items():
            if ds in (saved, newest) or meta.pruned or meta.format < 3:
                continue  # format 2 holds its optimizer state in its content
            checkpoint = is_checkpoint_day(ds, policy.optimizer_every_days)
            files = []
            if meta.optimizer_sha256 and not checkpoint:
                meta = dataclasses.replace(meta, optimizer_sha256="", optimizer_bytes=0)
                files.append(OPTIMIZER)
            old = keep_after is not None and ds < keep_after
            if old and not meta.published and not meta.optimizer_sha256:
                today = dt.datetime.now(dt.UTC).date().isoformat()
                meta = dataclasses.replace(
                    meta,
                    pruned=f"unpublished and older than registry.keep_unpublished_days="
                    f"{policy.keep_unpublished_days} before {newest} (removed {today})",
                )
                files.append(SNAPSHOT)
            if files:
                index[ds] = meta
                out.append((meta, files))
        return out

    def _write_meta_copy(self, meta: SnapshotMeta) -> None:
        text = json.dumps(dataclasses.asdict(meta), indent=1, sort_keys=True, default=str)
        self.lake.put_bytes(f"{meta.name}/{META}", text.encode())

    def set_published(self, meta: SnapshotMeta, published: bool, reason: str) -> SnapshotMeta:
        updated = dataclasses.replace(meta, published=published, publish_reason=reason)
        index = self._index(meta.model, meta.vertical)
        if meta.ds not in index:
            raise RegistryError(f"no snapshot {meta.label} to update")
        self._write_meta_copy(updated)
        index[meta.ds] = updated
        self._write_index(meta.model, meta.vertical, index)
        return updated

    def delete(self, model: str, vertical: str | None, ds: str) -> None:
        """Remove a snapshot: its index entry first (the commit point), then its files."""
        index = self._index(model, vertical)
        if index.pop(ids.ds(ds), None) is not None:
            self._write_index(model, vertical, index)
        prefix = snapshot_prefix(model, vertical, ds)
        for name in (META, OPTIMIZER, SNAPSHOT):
            self.lake.delete_key(f"{prefix}/{name}")

    # ---------------------------------------------------------------------------- reading

    def meta(self, model: str, vertical: str | None, ds: str) -> SnapshotMeta:
        found = self._index(model, vertical).get(ids.ds(ds))
        if found is None:
            raise RegistryError(
                f"no snapshot {model}/{vertical or '-'}@{ds} in "
                f"{self.lake.uri(self._index_key(model, vertical))}"
            )
        return found

    def load(
        self,
        model: str,
        vertical: str | None,
        ds: str,
        spec_fingerprint: str,
        optimizer: bool = False,
    ) -> tuple[dict[str, Any], SnapshotMeta]:
        """The snapshot's payload (with its optimizer state when `optimizer`: to continue
        training from it) and meta. Refuses a corrupted file, another feature spec, a pruned
        snapshot, and, with `optimizer`, one whose optimizer state was not kept."""
        meta = self.meta(model, vertical, ds)
        if meta.spec_fingerprint != spec_fingerprint:
            raise RegistryError(
                f"snapshot {meta.label} was trained on feature spec {meta.spec_fingerprint}, but "
                f"the current spec is {spec_fingerprint}: the features or their hash sizes "
                "changed; train from scratch or restore the old features section"
            )
        if optimizer and not meta.resumable:
            raise RegistryError(self._not_resumable(meta))
        if meta.pruned:
            raise RegistryError(f"snapshot {meta.label} has no files: {meta.pruned}")
        payload = self._read_payload(meta, SNAPSHOT, meta.sha256, meta.bytes)
        if payload.get("spec_fingerprint") != spec_fingerprint:
            raise RegistryError(
                f"{self.lake.uri(meta.name + '/' + SNAPSHOT)} disagrees with its meta on the spec"
            )
        if optimizer and meta.format >= 3 and meta.optimizer_sha256:
            payload.update(
                self._read_payload(meta, OPTIMIZER, meta.optimizer_sha256, meta.optimizer_bytes)
            )
        elif not optimizer:
            for key in OPTIMIZER_KEYS:
                payload.pop(key, None)
        return payload, meta

    def _read_payload(self, meta: SnapshotMeta, name: str, sha256: str, size: int) -> dict:
        key = f"{meta.name}/{name}"
        data = self.lake.get_bytes(key)
        if len(data) != size or hashlib.sha256(data).hexdigest() != sha256:
            raise RegistryError(
                f"{self.lake.uri(key)} is corrupted: its checksum or size ({len(data)} bytes) "
                f"does not match the registry's record ({size} bytes)"
            )
        import torch

        try:
            return torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
        except (RuntimeError, pickle.UnpicklingError, EOFError, ValueError) as e:
            raise RegistryError(f"cannot load {self.lake.uri(key)}: {e}") from e

    def _not_resumable(self, meta: SnapshotMeta) -> str:
        history = self.history(meta.model, meta.vertical)
        before = [m for m in history if m.ds < meta.ds and m.resumable]
        where = meta.model if meta.vertical is None else f"{meta.model} --vertical {meta.vertical}"
        if before:
            fix = (
                f"the newest earlier snapshot with it is {before[-1].label}: retrain from the day "
                f"after it (`exfm {meta.kind} train --start {ids.ds_add(before[-1].ds, 1)} "
                f"--end ...`, {where})"
            )
        else:
            fix = "no earlier snapshot has it: retrain from the first day"
        return (
            f"snapshot {meta.label} has no optimizer state, so training cannot continue from it "
            f"(the registry keeps it for the newest snapshot and every "
            f"registry.optimizer_every_days-th day); {fix}"
        )

    def history(self, model: str, vertical: str | None) -> list[SnapshotMeta]:
        """Every snapshot of a model (and vertical), oldest first (pruned ones included)."""
        index = self._index(model, vertical)
        return [index[d] for d in sorted(index)]

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

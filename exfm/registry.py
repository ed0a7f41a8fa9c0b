"""Model snapshots in the lake, their lineage, what is kept of them, and the publishing gate.

Layout under the lake root (local or S3), one folder per model, vertical and training day:
    registry/<model>/[<vertical>/]index.jsonl                every snapshot's meta (commit point)
    registry/<model>/[<vertical>/]ds=YYYY-MM-DD/snapshot.pt  the weights (the content id)
    registry/<model>/[<vertical>/]ds=YYYY-MM-DD/delta.pt     or what changed since the parent's
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

Deltas: a day's weights are stored as delta.pt, the rows of each tensor that changed since its
parent's weights (an FM's day touches a few thousand of its embedding rows), when the trainer
held the parent's weights (a range, or a parent it loaded), `registry.deltas` is on, the day is
not a checkpoint day (those are whole), the chain back to a whole snapshot stays shorter than
`optimizer_every_days`, and the delta is under half the whole file. The content id is the same
either way, the sha256 of the whole weights' serialization: a load rebuilds them from the whole
snapshot at the chain's start (checked against its content id) and each delta after it (checked
against its own sha256, and naming its parent's content id); the rebuild is exact, bit for bit.
A snapshot that deltas depend on is never pruned alone, and retraining or deleting it first
rewrites its direct dependents whole.

The snapshot file alone (a delta with its chain) rebuilds its model: it holds the model's config,
input layout and feature-spec fingerprint beside the tensors, and is read with
`torch.load(weights_only=True)` (no pickled code).

Publishing (STYLE 7): a trained snapshot is published, i.e. may be served and used by the DAS,
only when `publish_decision` blesses its evaluation; otherwise it is kept, unpublished, with the
reason in its meta. Training continues from the latest snapshot either way.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import hashlib
import io
import json
import logging
import pickle
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from exfm import ids
from exfm.config_schema import PublishConfig, RegistryConfig
from exfm.errors import LakeError, RegistryError
from exfm.lake import Lake
from exfm.metrics import Metrics

log = logging.getLogger(__name__)
SNAPSHOT, OPTIMIZER, META, INDEX = "snapshot.pt", "optimizer.pt", "meta.json", "index.jsonl"
DELTA = "delta.pt"
# 2: meta.json records the content ids of the snapshot's inputs; 3: the optimizer state is in
# optimizer.pt, outside the content id (format 2 snapshots hold it in snapshot.pt); 4: the
# weights may be a delta.pt over the parent's (`delta_of`)
FORMAT = 4
DELTA_FORMAT = 1
MIN_DELTA_ROWS = 16  # tensors with fewer rows are stored whole when they change
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
    delta_of: str = ""  # the parent's ds when the weights are a delta.pt over its weights
    delta_sha256: str = ""  # delta.pt's sha256 and size (the content id stays `sha256`)
    delta_bytes: int = 0

    @property
    def label(self) -> str:
        where = f"{self.model}/{self.vertical}" if self.vertical else self.model
        return f"{where}@{self.ds}"

    @property
    def name(self) -> str:
        """The snapshot's artifact name (its folder under the lake root)."""
        return snapshot_prefix(self.model, self.vertical, self.ds)

    @property
    def stored_bytes(self) -> int:
        """Bytes of its files in the lake (0 when pruned)."""
        if self.pruned:
            return 0
        return (self.delta_bytes if self.delta_of else self.bytes) + self.optimizer_bytes

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


class _Hashing:
    """A file for torch.save that keeps only the sha256 and length of what is written."""

    def __init__(self) -> None:
        self.sha256, self.size = hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        pass


def _digest(payload: dict[str, Any]) -> tuple[str, int]:
    """(sha256 hex, length) of `_serialize(payload)`, without holding the bytes: a weights'
    content id where they are stored as a delta (a third cheaper than serializing, then hashing)."""
    import torch

    out = _Hashing()
    torch.save(payload, out)
    return out.sha256.hexdigest(), out.size


def _paths(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """(path, value) of every leaf and container of a payload, depth first, in order; a
    container's value is the container itself. Paths join keys with "/"."""
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            if not isinstance(key, str) or "/" in key:
                raise ValueError(f"key {key!r} under {path or 'the payload'}")
            yield from _paths(value, f"{path}/{key}" if path else key)


def _rebuild(node: Any, leaf: Callable[[str, Any], Any], path: str = "") -> Any:
    """A copy of a payload's containers (their type and a state dict's `_metadata` too) with
    each leaf replaced by leaf(path, value)."""
    if not isinstance(node, dict):
        return leaf(path, node)
    out = type(node)()
    for key, value in node.items():
        out[key] = _rebuild(value, leaf, f"{path}/{key}" if path else key)
    if hasattr(node, "_metadata"):
        out._metadata = copy.deepcopy(node._metadata)  # type: ignore[attr-defined]
    return out


def _bits(t: Any) -> Any:
    """A tensor's bits as integers of its element size (bitwise comparison: -0.0 != 0.0)."""
    import torch

    kinds = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
    return t.contiguous().view(kinds[t.element_size()]) if t.is_floating_point() else t


def _delta(weights: dict[str, Any], base: dict[str, Any]) -> dict[str, Any] | None:
    """What changed from `base` to `weights` (the same containers and tensor shapes: None
    otherwise): the rows of a tensor of MIN_DELTA_ROWS or more rows whose bits changed, when
    they are at most half of its rows, else the whole changed value."""
    import torch

    try:
        new, old = list(_paths(weights)), dict(_paths(base))
    except ValueError:
        return None
    if [p for p, _ in new] != list(old):
        return None
    whole: dict[str, Any] = {}
    rows: dict[str, dict[str, Any]] = {}
    for path, value in new:
        was = old[path]
        if isinstance(value, dict):
            if type(value) is not type(was) or getattr(value, "_metadata", None) != getattr(
                was, "_metadata", None
            ):
                return None
            continue
        if not torch.is_tensor(value):
            if torch.is_tensor(was) or type(value) is not type(was):
                return None
            if value != was:
                whole[path] = value
            continue
        if not torch.is_tensor(was) or (value.dtype, value.shape) != (was.dtype, was.shape):
            return None
        was = was.to(value.device)
        if value.ndim >= 1 and value.shape[0] >= MIN_DELTA_ROWS:
            differ = (_bits(value) != _bits(was)).reshape(value.shape[0], -1).any(dim=1)
            changed = differ.nonzero().flatten()
            if 2 * changed.numel() <= value.shape[0]:
                if changed.numel():
                    rows[path] = {"index": changed, "values": value[changed].clone()}
                continue
        if not torch.equal(_bits(value), _bits(was)):
            whole[path] = value
    return {"whole": whole, "rows": rows}


def _apply(base: dict[str, Any], delta: dict[str, Any]) -> dict[str, Any]:
    """`base` with `delta` applied: a new payload whose tensors are base's, the changed rows
    written into them in place (base is consumed: its tensors are the new payload's)."""
    whole, rows = delta["whole"], delta["rows"]

    def leaf(path: str, value: Any) -> Any:
        if path in whole:
            return whole[path]
        if path in rows:
            value[rows[path]["index"]] = rows[path]["values"]
        return value

    return _rebuild(base, leaf)


def _clone(payload: dict[str, Any]) -> dict[str, Any]:
    """A copy of a payload whose tensors are detached copies on the CPU."""
    import torch

    return _rebuild(
        payload,
        lambda _, v: v.detach().to("cpu", copy=True) if torch.is_tensor(v) else v,
    )


def weights_of(payload: dict[str, Any]) -> dict[str, Any]:
    """The part of a trainee's payload that is the content (all but the optimizer state)."""
    return {k: v for k, v in payload.items() if k not in OPTIMIZER_KEYS}


def base_of(payload: dict[str, Any]) -> dict[str, Any]:
    """A copy of the weights of a payload, to save the next snapshot as a delta over them."""
    return _clone(weights_of(payload))


# index file (lake, key) -> (its bytes, its parsed entries): a read whose bytes are the same
# reuses the entries (SnapshotMeta is frozen) instead of parsing every line again. Reading the
# bytes stays (they are the truth); parsing them, O(snapshots), was most of a range's registry
# time per day (quadratic in a range's days). One entry per index file of the process.
_PARSED: dict[tuple[str, str], tuple[bytes, list[tuple[SnapshotMeta, str]]]] = {}


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
        where = (self.lake.uri(""), key)
        parsed = _PARSED.get(where)
        if parsed is None or parsed[0] != raw:  # other bytes: parse them (the same: reuse)
            parsed = _PARSED[where] = (raw, self._parse_index(key, raw))
        index = {}
        for meta, line in parsed[1]:
            self._lines[id(meta)] = (meta, line)
            index[meta.ds] = meta
        return index

    def _parse_index(self, key: str, raw: bytes) -> list[tuple[SnapshotMeta, str]]:
        """The (meta, line) entries of an index file's bytes; RegistryError where corrupt."""
        try:
            header, *lines = raw.decode().splitlines()
            head = json.loads(header)
            if head.get("format") != INDEX_FORMAT or head.get("snapshots") != len(lines):
                raise ValueError(
                    f"format {head.get('format')!r} with {head.get('snapshots')!r} snapshots, "
                    f"{len(lines)} lines"
                )
            return [(SnapshotMeta(**json.loads(line)), line) for line in lines]
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            raise RegistryError(
                f"{self.lake.uri(key)} is corrupt ({e}); `exfm registry reindex` rebuilds it from "
                "the snapshots' meta.json"
            ) from e

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
        base: tuple[SnapshotMeta, dict[str, Any]] | None = None,
    ) -> SnapshotMeta:
        """Write the snapshot's files, its meta.json, then the index (the commit point); then
        apply `policy` (None: keep everything, whole weights) to the model's other snapshots.
        `base`: the parent's meta and weights as the trainer started from them (`base_of`), to
        store the weights as a delta over them where the policy allows. Returns the final meta."""
        weights = weights_of(payload)
        state = {k: v for k, v in payload.items() if k in OPTIMIZER_KEYS}
        prefix = snapshot_prefix(meta.model, meta.vertical, meta.ds)
        index = self._index(meta.model, meta.vertical)
        delta, data = None, b""
        if base is not None and self._may_delta(index, meta, policy, base):
            sha, size = _digest(weights)  # a delta's day never holds the whole bytes
            delta = self._as_delta(weights, size, base)
        if delta is None:
            data = _serialize(weights)
            sha, size = hashlib.sha256(data).hexdigest(), len(data)
        state_data = _serialize(state) if state else b""
        meta = dataclasses.replace(
            meta,
            sha256=sha,
            bytes=size,
            optimizer_sha256=hashlib.sha256(state_data).hexdigest() if state else "",
            optimizer_bytes=len(state_data),
            format=FORMAT,
            pruned="",
            delta_of="",
            delta_sha256="",
            delta_bytes=0,
            created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        )
        replaced = index.get(meta.ds)
        if replaced is not None and replaced.sha256 != meta.sha256:
            self._rewrite_dependents(index, replaced)  # they were deltas over its old weights
        if delta is not None and base is not None:
            meta = dataclasses.replace(
                meta,
                delta_of=base[0].ds,
                delta_sha256=hashlib.sha256(delta).hexdigest(),
                delta_bytes=len(delta),
            )
            self.lake.put_bytes(f"{prefix}/{DELTA}", delta)
            self.lake.delete_key(f"{prefix}/{SNAPSHOT}")
        else:
            self.lake.put_bytes(f"{prefix}/{SNAPSHOT}", data)
            self.lake.delete_key(f"{prefix}/{DELTA}")
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

    def _may_delta(
        self,
        index: dict[str, SnapshotMeta],
        meta: SnapshotMeta,
        policy: RegistryConfig | None,
        base: tuple[SnapshotMeta, dict[str, Any]],
    ) -> bool:
        """Whether the policy, the day and the chain allow storing the weights as a delta over
        `base` (the module docstring says when); `_as_delta` then says whether it is small."""
        if policy is None or not policy.deltas:
            return False
        parent = base[0]
        if is_checkpoint_day(meta.ds, policy.optimizer_every_days):
            return False
        known = index.get(parent.ds)
        if known is None or known.sha256 != parent.sha256 or known.pruned or parent.ds >= meta.ds:
            return False
        return self._depth(index, known) + 1 < policy.optimizer_every_days

    def _as_delta(
        self, weights: dict[str, Any], size: int, base: tuple[SnapshotMeta, dict[str, Any]]
    ) -> bytes | None:
        """delta.pt's bytes over `base`, where they are at most half the whole weights' `size`
        bytes, else None."""
        parent, parent_weights = base
        delta = _delta(weights, parent_weights)
        if delta is None:
            return None
        out = _serialize({"format": DELTA_FORMAT, "parent_sha256": parent.sha256, **delta})
        return out if 2 * len(out) <= size else None

    def _depth(self, index: dict[str, SnapshotMeta], meta: SnapshotMeta) -> int:
        """How many deltas lie between meta and the whole snapshot its chain starts from."""
        depth = 0
        while meta.delta_of:
            depth += 1
            meta = index[meta.delta_of]
        return depth

    def _rewrite_dependents(self, index: dict[str, SnapshotMeta], meta: SnapshotMeta) -> None:
        """Before meta's files change or go: store the snapshots that are deltas over its
        weights whole (their content, hence their content id, is unchanged), committed to the
        index first."""
        children = [m for m in index.values() if m.delta_of == meta.ds and not m.pruned]
        if not children:
            return
        for child in children:
            weights = self._weights(index, child)
            data = _serialize(weights)
            if hashlib.sha256(data).hexdigest() != child.sha256:
                raise RegistryError(f"{child.label} does not rebuild to its content id")
            self.lake.put_bytes(f"{child.name}/{SNAPSHOT}", data)
            whole = dataclasses.replace(child, delta_of="", delta_sha256="", delta_bytes=0)
            self._write_meta_copy(whole)
            index[child.ds] = whole
            log.info("registry: %s stored whole (its parent %s changes)", child.label, meta.ds)
        self._write_index(meta.model, meta.vertical, index)
        for child in children:
            self.lake.delete_key(f"{child.name}/{DELTA}")

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
        for ds in sorted(index, reverse=True):  # a delta's dependents before it
            meta = index[ds]
            if ds in (saved, newest) or meta.pruned or meta.format < 3:
                continue  # format 2 holds its optimizer state in its content
            checkpoint = is_checkpoint_day(ds, policy.optimizer_every_days)
            files = []
            if meta.optimizer_sha256 and not checkpoint:
                meta = dataclasses.replace(meta, optimizer_sha256="", optimizer_bytes=0)
                files.append(OPTIMIZER)
            old = keep_after is not None and ds < keep_after
            needed = any(m.delta_of == ds and not m.pruned for m in index.values())
            if old and not meta.published and not meta.optimizer_sha256 and not needed:
                today = dt.datetime.now(dt.UTC).date().isoformat()
                meta = dataclasses.replace(
                    meta,
                    pruned=f"unpublished and older than registry.keep_unpublished_days="
                    f"{policy.keep_unpublished_days} before {newest} (removed {today})",
                )
                files.append(DELTA if meta.delta_of else SNAPSHOT)
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
        """Remove a snapshot: its index entry first (the commit point), then its files (the
        snapshots that were deltas over it are stored whole first)."""
        index = self._index(model, vertical)
        if ids.ds(ds) in index:
            self._rewrite_dependents(index, index[ids.ds(ds)])
        if index.pop(ids.ds(ds), None) is not None:
            self._write_index(model, vertical, index)
        prefix = snapshot_prefix(model, vertical, ds)
        for name in (META, OPTIMIZER, SNAPSHOT, DELTA):
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
        held: tuple[str, dict[str, Any]] | None = None,
    ) -> tuple[dict[str, Any], SnapshotMeta]:
        """The snapshot's payload (with its optimizer state when `optimizer`: to continue
        training from it) and meta. Refuses a corrupted file, another feature spec, a pruned
        snapshot, and, with `optimizer`, one whose optimizer state was not kept. `held`: the
        content id and weights of a snapshot the caller has in memory and hands over (a delta
        over it is applied to its tensors in place); a delta chain through it starts there
        instead of reading the files before it.

        A delta's weights are trusted as their chain is checked: the whole snapshot it starts
        from against its content id (or `held`, checked when it was loaded), each delta.pt
        against its sha256, and each delta's record of its parent's content id; rebuilding
        is exact (bit for bit, tests/unit/test_registry.py), so the whole weights are not
        serialized again to hash them."""
        index = self._index(model, vertical)
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
        if meta.delta_of:
            payload = dict(self._weights(index, meta, held))
        else:
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

    def _weights(
        self,
        index: dict[str, SnapshotMeta],
        meta: SnapshotMeta,
        held: tuple[str, dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """meta's weights: its whole snapshot, or its parent's weights with its delta applied
        (each file checked against its sha256 on the way)."""
        if held is not None and held[0] == meta.sha256:
            return held[1]
        if meta.pruned:
            raise RegistryError(f"snapshot {meta.label} has no files: {meta.pruned}")
        if not meta.delta_of:
            return weights_of(self._read_payload(meta, SNAPSHOT, meta.sha256, meta.bytes))
        parent = index.get(meta.delta_of)
        if parent is None:
            raise RegistryError(
                f"{meta.label} is a delta over {meta.delta_of}, which the registry has no record of"
            )
        delta = self._read_payload(meta, DELTA, meta.delta_sha256, meta.delta_bytes)
        if delta.get("parent_sha256") != parent.sha256 or delta.get("format") != DELTA_FORMAT:
            raise RegistryError(
                f"{self.lake.uri(meta.name + '/' + DELTA)} is not a delta over {parent.label}"
            )
        return _apply(self._weights(index, parent, held), delta)

    def _read_payload(self, meta: SnapshotMeta, name: str, sha256: str, size: int) -> dict:
        key = f"{meta.name}/{name}"
        try:
            data = self.lake.get_bytes(key)
        except LakeError:
            if self.lake.exists(key):
                raise
            raise RegistryError(
                f"{self.lake.uri(key)} is missing, though the registry's record of {meta.label} "
                "names it (removed outside the registry?)"
            ) from None
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

"""Lineage by content: the content id of everything the lake holds, what each artifact was made
from, and whether it still is what its inputs would give now.

Every artifact has a name (its place under the lake root) and a content id:

    impressions/ds=D/vertical=V         a write id; the root of everything (made from nothing here)
    checks/ds=D                         a write id; made from the impressions of D and of its
                                        reference days (every vertical)
    das/fm_version=fm-X/ds=D            a write id; made from the impressions of D and the FM
                                        snapshot registry/fm/ds=X
    registry/fm/ds=D                    the snapshot's sha256; made from the impressions of D and
                                        its parent snapshot
    registry/vm_<variant>/V/ds=D        sha256; made from the impressions of (D, V), the DAS
                                        partition it distilled from, and its parent snapshot
    evals/model=M/vertical=V/ds=D       a write id; made from the snapshot that predicted and the
                                        impressions of (D, V)

Each artifact records `inputs`, a map from input name to the content id it read (check results in
result.json, DAS and evals partitions in their parquet footer as `exfm.inputs`, snapshots in the
registry's index). An artifact is **stale** when an input it recorded is gone or holds other
content now, when what it would read now includes a partition it did not read (a day landed into
a check's reference window, a vertical added to a day), or when an input is itself stale. Stale
means recomputed or refused by its consumer, never silently used: the gate (data_checks/gate.py),
the DAS (exfm/das.py), the VM training join and `exfm evaluate` compare before they trust.

`Graph` reads the lineage of a whole lake for `exfm lineage` (one artifact or day, its inputs and
what was made from it; or every stale artifact).

Lineage tracks data. Configuration and code are tracked by DVC (params and code dependencies of
each stage) and recorded in each snapshot's meta (its model and training config).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from exfm import ids
from exfm.errors import ExfmError, LakeError
from exfm.lake import CHECKS, DAS, DATASETS, EVALS, IMPRESSIONS, Lake

log = logging.getLogger(__name__)
INPUTS_KEY = "exfm.inputs"  # parquet footer key of a derived partition's inputs (JSON)
KINDS = ("impressions", "checks", "das", "snapshot", "evals")


class StaleError(ExfmError):
    """An artifact was made from content that is no longer in the lake."""


# ------------------------------------------------------------------------------------- names


def impressions_name(ds: str, vertical: str) -> str:
    return IMPRESSIONS.rel_dir({"ds": ds, "vertical": vertical})


def snapshot_name(model: str, vertical: str | None, ds: str) -> str:
    parts = ["registry", ids.version(model)]
    if vertical is not None:
        parts.append(ids.vertical(vertical))
    parts.append(f"ds={ids.ds(ds)}")
    return "/".join(parts)


def parse_snapshot(name: str) -> tuple[str, str | None, str] | None:
    """(model, vertical, ds) of 'registry/<model>/[<vertical>/]ds=D', or None."""
    parts = name.split("/")
    if parts[0] != "registry" or len(parts) not in (3, 4) or not parts[-1].startswith("ds="):
        return None
    try:
        vertical = ids.vertical(parts[2]) if len(parts) == 4 else None
        return ids.version(parts[1]), vertical, ids.ds(parts[-1].removeprefix("ds="))
    except ids.IdentifierError:
        return None


def kind_of(name: str) -> str:
    """The kind of artifact a name denotes (one of KINDS); ExfmError for anything else."""
    if parse_snapshot(name) is not None:
        return "snapshot"
    top = name.split("/", 1)[0]
    dataset = DATASETS.get(top)
    if dataset is None or dataset.parse(name) is None:
        raise ExfmError(
            f"{name!r} is not an artifact name: expected impressions/ds=D/vertical=V, "
            "checks/ds=D, das/fm_version=fm-X/ds=D, evals/model=M/vertical=V/ds=D, "
            "registry/<model>/[<vertical>/]ds=D, or a label such as fm@D / vm_ah_sa/feed@D"
        )
    return top


def day_of(name: str) -> str | None:
    for part in name.split("/"):
        if part.startswith("ds="):
            return part.removeprefix("ds=")
    return None


def short(content_id: str | None) -> str:
    if content_id is None:
        return "(none)"
    return content_id[:12] if len(content_id) == 64 else content_id


# ------------------------------------------------------------------------------- current ids


def current_id(lake: Lake, name: str) -> str | None:
    """The content id the lake holds under `name` now, or None when there is nothing."""
    snapshot = parse_snapshot(name)
    if snapshot is not None:  # the registry's index (a pruned snapshot keeps its content id)
        from exfm.registry import Registry

        model, vertical, ds = snapshot
        found = {m.ds: m for m in Registry(lake).history(model, vertical)}.get(ds)
        return (found.sha256 or None) if found else None
    dataset = DATASETS[kind_of(name)]
    values = dataset.parse(name)
    assert values is not None
    return lake.content_id(dataset, values)


def reference_days(lake: Lake, ds: str, days: int) -> list[str]:
    """The trailing days before ds (at most `days`) that have impressions: a check's window."""
    wanted = ids.ds_range(ids.ds_add(ds, -days), ids.ds_add(ds, -1))
    have = {p["ds"] for p in lake.partitions(IMPRESSIONS, ds=wanted)}
    return [d for d in wanted if d in have]


@dataclass(frozen=True)
class Change:
    """One input whose content differs from what an artifact recorded."""

    name: str
    recorded: str | None  # None: the artifact did not read it (it was not there)
    current: str | None  # None: no longer in the lake

    def describe(self) -> str:
        if self.current is None:
            return f"{self.name} (read as {short(self.recorded)}) is no longer in the lake"
        if self.recorded is None:
            return f"{self.name} ({short(self.current)}) was not there when it was made"
        return f"{self.name} was {short(self.recorded)} when read, is {short(self.current)} now"


def changes(
    lake: Lake, recorded: Mapping[str, str], now: Mapping[str, str] | None = None
) -> list[Change]:
    """How `recorded` (input name -> id) differs from the lake. `now`, when given, is what the
    artifact would read now (name -> id); otherwise the recorded names are looked up."""
    if now is None:
        now = {name: current_id(lake, name) for name in recorded}  # type: ignore[misc]
    out = []
    for name in sorted(set(recorded) | set(now)):
        was, is_ = recorded.get(name), now.get(name)
        if was != is_:
            out.append(Change(name, was, is_))
    return out


def describe_changes(found: Iterable[Change], limit: int = 2) -> str:
    items = list(found)
    text = "; ".join(c.describe() for c in items[:limit])
    return text + (f"; and {len(items) - limit} more" if len(items) > limit else "")


def partition_inputs(lake: Lake, dataset: Any, values: Mapping[str, str]) -> dict[str, str] | None:
    """The inputs a derived partition recorded in its footer, or None when it has none."""
    raw = lake.partition_metadata(dataset, values).get(INPUTS_KEY)
    if raw is None:
        return None
    try:
        inputs = json.loads(raw)
    except ValueError as e:
        raise LakeError(f"{dataset.rel_dir(values)}: its {INPUTS_KEY} is not JSON ({e})") from e
    if not isinstance(inputs, dict):
        raise LakeError(f"{dataset.rel_dir(values)}: its {INPUTS_KEY} is not a map")
    return {str(k): str(v) for k, v in inputs.items()}


def inputs_metadata(inputs: Mapping[str, str]) -> dict[str, str]:
    """The footer metadata that records a derived partition's inputs."""
    return {INPUTS_KEY: json.dumps(dict(sorted(inputs.items())))}


# ------------------------------------------------------------------------------------- graph


@dataclass
class Node:
    """One artifact: its content id now and the inputs it recorded (None: no lineage record)."""

    name: str
    kind: str
    content_id: str | None
    inputs: dict[str, str] | None
    detail: dict[str, Any] = field(default_factory=dict)


class Graph:
    """The lineage of every artifact of a lake (see the module docstring)."""

    def __init__(self, nodes: dict[str, Node], reference_days: int) -> None:
        self.nodes = nodes
        self.reference_days = reference_days
        self._stale: dict[str, list[str]] = {}
        self._made_into: dict[str, list[str]] | None = None
        self._impressions_by_day: dict[str, dict[str, str]] = {}
        for node in nodes.values():
            if node.kind == "impressions":
                day = day_of(node.name)
                assert day is not None and node.content_id is not None
                self._impressions_by_day.setdefault(day, {})[node.name] = node.content_id

    @classmethod
    def build(cls, lake: Lake, reference_days: int) -> Graph:
        """Read the lineage of everything under the lake's root."""
        from exfm.registry import Registry

        nodes: dict[str, Node] = {}
        for name, cid in lake.content_ids(IMPRESSIONS).items():
            nodes[name] = Node(name, "impressions", cid, {})
        for values in lake.partitions(CHECKS):
            name = CHECKS.rel_dir(values)
            result = _check_result(lake, values["ds"])
            inputs = result.get("inputs") if result else None
            detail = {"status": result.get("status")} if result else {}
            nodes[name] = Node(name, "checks", lake.content_id(CHECKS, values), inputs, detail)
        for dataset, kind in ((DAS, "das"), (EVALS, "evals")):
            for values in lake.partitions(dataset):
                name = dataset.rel_dir(values)
                meta = lake.partition_metadata(dataset, values)
                inputs = json.loads(meta[INPUTS_KEY]) if INPUTS_KEY in meta else None
                nodes[name] = Node(name, kind, meta.get("exfm.write_id"), inputs)
        registry = Registry(lake)
        for model, vertical in registry.models():
            for meta in registry.history(model, vertical):
                inputs = dict(meta.inputs) if meta.inputs else None
                detail = {"published": meta.published, "reason": meta.publish_reason}
                if meta.pruned:
                    detail["pruned"] = meta.pruned
                nodes[meta.name] = Node(meta.name, "snapshot", meta.sha256, inputs, detail)
        return cls(nodes, reference_days)

    def expected_inputs(self, node: Node) -> dict[str, str] | None:
        """The impressions the artifact would read now, where that set is defined by a rule
        (a check: its day and reference window; the FM and the DAS: every vertical of the day);
        None where the recorded names are the whole story."""
        day = day_of(node.name)
        if day is None or node.inputs is None:
            return None
        if node.kind == "checks":
            window = [
                d
                for d in ids.ds_range(ids.ds_add(day, -self.reference_days), ids.ds_add(day, -1))
                if d in self._impressions_by_day
            ]
            out: dict[str, str] = {}
            for d in [*window, day]:
                out.update(self._impressions_by_day.get(d, {}))
            return out
        if node.kind == "das" or (node.kind == "snapshot" and node.name.startswith("registry/fm/")):
            recorded = {k: v for k, v in node.inputs.items() if not k.startswith("impressions/")}
            now = {k: self.current(k) for k in recorded}
            return {**self._impressions_by_day.get(day, {}), **now}  # type: ignore[dict-item]
        return None

    def current(self, name: str) -> str | None:
        node = self.nodes.get(name)
        return node.content_id if node else None

    def direct_changes(self, node: Node) -> list[Change]:
        if node.inputs is None:
            return []
        now = self.expected_inputs(node)
        if now is None:
            now = {k: self.current(k) for k in node.inputs}  # type: ignore[misc]
        return [
            Change(k, node.inputs.get(k), now.get(k))
            for k in sorted(set(node.inputs) | set(now))
            if node.inputs.get(k) != now.get(k)
        ]

    def stale(self, name: str) -> list[str]:
        """Why the artifact is stale ([] when it is current), inputs' staleness included."""
        if name in self._stale:
            return self._stale[name]
        self._stale[name] = []  # a cycle would be a bug; this stops it from recursing forever
        node = self.nodes[name]
        reasons: list[str] = []
        if node.inputs is None:
            reasons.append("no lineage record: made before content ids were recorded")
        else:
            reasons += [c.describe() for c in self.direct_changes(node)]
            for k in sorted(node.inputs):
                if k in self.nodes and node.inputs[k] == self.current(k) and self.stale(k):
                    reasons.append(f"made from {k}, which is stale")
        self._stale[name] = reasons
        return reasons

    def made_into(self, name: str) -> list[str]:
        if self._made_into is None:
            index: dict[str, list[str]] = {}
            for node in self.nodes.values():
                for k in node.inputs or {}:
                    index.setdefault(k, []).append(node.name)
            self._made_into = {k: sorted(v) for k, v in index.items()}
        return self._made_into.get(name, [])

    def all_stale(self) -> list[str]:
        return [name for name in sorted(self.nodes, key=_order) if self.stale(name)]

    def select(self, query: str) -> list[str]:
        """The artifacts a user means: a name, a snapshot label (fm@D, vm_ah_sa/feed@D), or a
        day (every artifact of that day)."""
        if ids.DS.match(query):
            day = ids.ds(query)
            found = [n for n in self.nodes if day_of(n) == day]
            if not found:
                raise ExfmError(f"the lake holds nothing for ds={day}")
            return sorted(found, key=_order)
        name = query.strip("/")
        if "@" in name:
            where, _, day = name.partition("@")
            model, _, vertical = where.partition("/")
            name = snapshot_name(model, vertical or None, day)
        else:
            kind_of(name)
        if name not in self.nodes:
            raise ExfmError(f"{name} is not in the lake")
        return [name]

    def describe(self, name: str) -> dict[str, Any]:
        """One artifact as plain data: id, inputs (recorded vs now), what was made from it."""
        node = self.nodes[name]
        now = self.expected_inputs(node)
        inputs = []
        names = set(node.inputs or {}) | set(now or {})
        for k in sorted(names, key=_order):
            recorded = (node.inputs or {}).get(k)
            current = now.get(k) if now is not None else self.current(k)
            if recorded != current:
                status = "changed" if recorded and current else ("gone" if recorded else "new")
            else:
                status = "stale" if k in self.nodes and self.stale(k) else "ok"
            inputs.append({"name": k, "recorded": recorded, "current": current, "status": status})
        return {
            "name": name,
            "kind": node.kind,
            "content_id": node.content_id,
            **node.detail,
            "stale": bool(self.stale(name)),
            "reasons": self.stale(name),
            "made_from": inputs if node.inputs is not None else None,
            "made_into": [
                {"name": k, "stale": bool(self.stale(k))}
                for k in sorted(self.made_into(name), key=_order)
            ],
        }


def _check_result(lake: Lake, ds: str) -> dict[str, Any] | None:
    key = f"checks/ds={ds}/result.json"
    if not lake.exists(key):
        return None
    try:
        return json.loads(lake.get_bytes(key))
    except ValueError as e:
        raise LakeError(f"{lake.uri(key)} is not JSON: {e}") from e


def _order(name: str) -> tuple[str, int, str]:
    """Sort artifacts by day, then in the order a day flows (impressions first)."""
    kind = "snapshot" if name.startswith("registry/") else name.split("/", 1)[0]
    rank = {"impressions": 0, "checks": 1, "das": 2, "snapshot": 3, "evals": 4}
    return (day_of(name) or "", rank.get(kind, 9), name)

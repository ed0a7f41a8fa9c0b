"""Snapshots in the lake: round trips (local and S3), lineage queries, refusing corrupted files and
foreign feature specs, weights-only loading, the index (one read however many days; built from a
registry that predates it; a corrupted one refused and rebuilt), what the policy keeps (optimizer
state at checkpoints, unpublished snapshots pruned with their record kept), and the gate."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
from pathlib import Path

import pytest
import torch

from exfm.config_schema import PublishConfig, RegistryConfig
from exfm.errors import RegistryError
from exfm.lake import Lake
from exfm.lineage import current_id
from exfm.metrics import Metrics
from exfm.registry import (
    Registry,
    SnapshotMeta,
    is_checkpoint_day,
    publish_decision,
    snapshot_prefix,
)


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> Registry:
    if request.param == "local":
        return Registry(Lake(str(tmp_path / "lake")))
    return Registry(Lake(request.getfixturevalue("s3_root")))


def _meta(
    ds: str, published: bool = False, model: str = "vm_ah_sa", vertical: str | None = "feed"
) -> SnapshotMeta:
    return SnapshotMeta(
        model=model,
        vertical=vertical,
        ds=ds,
        kind="vm",
        spec_fingerprint="abc123",
        published=published,
        metrics={"train": {"ne": 0.9}},
    )


def _payload(value: float) -> dict:
    return {"spec_fingerprint": "abc123", "model": {"w": torch.full((3,), value)}, "format": 1}


def test_round_trip_and_lineage(registry: Registry) -> None:
    for i, (ds, published) in enumerate(
        [("2026-01-05", True), ("2026-01-06", False), ("2026-01-07", True), ("2026-01-08", False)]
    ):
        saved = registry.save(_meta(ds, published), _payload(float(i)))
        assert saved.sha256 and saved.bytes > 0 and saved.created_at
    payload, meta = registry.load("vm_ah_sa", "feed", "2026-01-07", "abc123")
    assert torch.equal(payload["model"]["w"], torch.full((3,), 2.0))
    assert meta.published and meta.metrics == {"train": {"ne": 0.9}}
    assert [m.ds for m in registry.history("vm_ah_sa", "feed")] == [
        "2026-01-05",
        "2026-01-06",
        "2026-01-07",
        "2026-01-08",
    ]
    assert registry.latest("vm_ah_sa", "feed", before="2026-01-08").ds == "2026-01-07"
    assert registry.latest("vm_ah_sa", "feed", before="2026-01-05") is None
    assert registry.latest_published("vm_ah_sa", "feed", as_of="2026-01-06").ds == "2026-01-05"
    assert registry.latest_published("vm_ah_sa", "feed", as_of="2026-01-09").ds == "2026-01-07"
    assert registry.history("vm_ah_sa", "search") == []


def test_fm_has_no_vertical_level(registry: Registry) -> None:
    registry.save(_meta("2026-01-05", model="fm", vertical=None), _payload(1.0))
    assert snapshot_prefix("fm", None, "2026-01-05") == "registry/fm/ds=2026-01-05"
    assert [m.ds for m in registry.history("fm", None)] == ["2026-01-05"]


def test_set_published_records_the_reason(registry: Registry) -> None:
    meta = registry.save(_meta("2026-01-05"), _payload(1.0))
    registry.set_published(meta, True, "blessed by hand")
    again = registry.meta("vm_ah_sa", "feed", "2026-01-05")
    assert again.published and again.publish_reason == "blessed by hand"
    assert again.sha256 == meta.sha256


def test_feature_spec_mismatch_is_refused(registry: Registry) -> None:
    registry.save(_meta("2026-01-05"), _payload(1.0))
    with pytest.raises(RegistryError, match="trained on feature spec abc123.*current spec is zzz"):
        registry.load("vm_ah_sa", "feed", "2026-01-05", "zzz")


def test_corrupted_and_missing_snapshots_are_refused(registry: Registry) -> None:
    registry.save(_meta("2026-01-05"), _payload(1.0))
    key = "registry/vm_ah_sa/feed/ds=2026-01-05/snapshot.pt"
    data = bytearray(registry.lake.get_bytes(key))
    data[len(data) // 2] ^= 0xFF
    registry.lake.put_bytes(key, bytes(data))
    with pytest.raises(RegistryError, match="is corrupted"):
        registry.load("vm_ah_sa", "feed", "2026-01-05", "abc123")
    registry.lake.put_bytes(key, bytes(data[:100]))
    with pytest.raises(RegistryError, match="is corrupted"):
        registry.load("vm_ah_sa", "feed", "2026-01-05", "abc123")
    with pytest.raises(RegistryError, match="no snapshot vm_ah_sa/feed@2026-01-06"):
        registry.load("vm_ah_sa", "feed", "2026-01-06", "abc123")
    registry.lake.put_bytes("registry/vm_ah_sa/feed/index.jsonl", b"{not json")
    with pytest.raises(RegistryError, match=r"index.jsonl is corrupt .*exfm registry reindex"):
        registry.meta("vm_ah_sa", "feed", "2026-01-05")
    assert registry.reindex() == {"registry/vm_ah_sa/feed": 1}  # from the meta.json copies
    assert registry.meta("vm_ah_sa", "feed", "2026-01-05").sha256
    registry.lake.put_bytes("registry/vm_ah_sa/feed/ds=2026-01-05/meta.json", b"{not json")
    with pytest.raises(RegistryError, match="meta.json is corrupt"):
        registry.reindex()


class Evil:
    """An object that a full unpickler would construct (and could run code for)."""

    def __reduce__(self) -> tuple:
        return (print, ("this must never run",))


def test_only_weights_are_loaded(registry: Registry) -> None:
    """A snapshot holding a pickled object is refused: torch.load(weights_only=True)."""
    meta = registry.save(_meta("2026-01-05"), _payload(1.0))
    buf = io.BytesIO()
    torch.save({"spec_fingerprint": "abc123", "model": Evil()}, buf)
    data = buf.getvalue()
    registry.lake.put_bytes("registry/vm_ah_sa/feed/ds=2026-01-05/snapshot.pt", data)
    forged = dataclasses.replace(meta, sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    registry._write_index("vm_ah_sa", "feed", {meta.ds: forged})
    with pytest.raises(RegistryError, match="cannot load"):
        registry.load("vm_ah_sa", "feed", "2026-01-05", "abc123")


@pytest.mark.parametrize(
    ("candidate", "incumbent", "published", "reason"),
    [
        ({"ne": 0.95, "calibration": 1.0}, None, True, "no earlier published snapshot"),
        ({"ne": 0.95, "calibration": 1.0}, {"ne": 0.94}, True, "vs the published snapshot's"),
        ({"ne": 0.97, "calibration": 1.0}, {"ne": 0.94}, False, "by more than"),
        ({"ne": 1.02, "calibration": 1.0}, None, False, "above publish.max_ne"),
        ({"ne": 0.9, "calibration": 2.5}, None, False, "calibration 2.500 is outside"),
        ({"ne": None, "calibration": None}, None, False, "no evaluation"),
    ],
)
def test_publish_decision(
    candidate: dict, incumbent: dict | None, published: bool, reason: str
) -> None:
    ok, why = publish_decision(
        Metrics(rows=10, positives=1, **candidate),
        None if incumbent is None else Metrics(rows=10, positives=1, **incumbent),
        PublishConfig(max_ne_regression=0.02),
    )
    assert ok is published
    assert reason in why


class CountingLake(Lake):
    """The real lake, counting the objects read (a registry query's cost)."""

    reads = 0

    def get_bytes(self, key: str) -> bytes:
        CountingLake.reads += 1
        return super().get_bytes(key)


def test_history_is_one_read_however_many_days(tmp_path: Path) -> None:
    registry = Registry(CountingLake(str(tmp_path / "lake")))
    for i in range(40):
        ds = f"2026-02-{1 + i % 28:02d}" if i < 28 else f"2026-03-{i - 27:02d}"
        registry.save(_meta(ds, published=i % 3 == 0), _payload(float(i)))
    CountingLake.reads = 0
    assert len(registry.history("vm_ah_sa", "feed")) == 40
    assert registry.latest_published("vm_ah_sa", "feed", as_of="2026-03-11").ds == "2026-03-09"
    assert registry.latest("vm_ah_sa", "feed", before="2026-03-01").ds == "2026-02-28"
    assert CountingLake.reads == 3  # one index read per query, not one per snapshot


def test_a_registry_without_index_is_indexed_on_first_read(registry: Registry) -> None:
    """Snapshots saved before the index existed (meta.json alone) are read and indexed."""
    for i, ds in enumerate(["2026-01-05", "2026-01-06"]):
        registry.save(_meta(ds, published=True), _payload(float(i)))
    registry.lake.delete_key("registry/vm_ah_sa/feed/index.jsonl")
    assert [m.ds for m in registry.history("vm_ah_sa", "feed")] == ["2026-01-05", "2026-01-06"]
    assert registry.lake.exists("registry/vm_ah_sa/feed/index.jsonl")
    payload, _ = registry.load("vm_ah_sa", "feed", "2026-01-06", "abc123")
    assert torch.equal(payload["model"]["w"], torch.full((3,), 1.0))
    assert registry.history("fm", None) == []  # nothing there: nothing written
    assert not registry.lake.exists("registry/fm/index.jsonl")


def _trained(value: float) -> dict:
    return {**_payload(value), "optimizer": {"dense": {"m": torch.full((3,), -value)}}}


def test_the_policy_keeps_optimizer_state_where_training_resumes(registry: Registry) -> None:
    policy = RegistryConfig(optimizer_every_days=7, keep_unpublished_days=None)
    days = [f"2026-01-{d:02d}" for d in range(1, 16)]
    saved = {
        ds: registry.save(_meta(ds, True), _trained(float(i)), policy) for i, ds in enumerate(days)
    }
    history = {m.ds: m for m in registry.history("vm_ah_sa", "feed")}
    checkpoints = [d for d in days if is_checkpoint_day(d, 7)]
    assert checkpoints == ["2026-01-01", "2026-01-08", "2026-01-15"]  # days since 1970 % 7
    with_state = sorted(d for d, m in history.items() if m.optimizer_sha256)
    assert with_state == sorted({*checkpoints, days[-1]})
    for ds, meta in history.items():  # dropping the optimizer state changes no content id
        assert meta.sha256 == saved[ds].sha256
        assert registry.lake.exists(f"{meta.name}/optimizer.pt") == bool(meta.optimizer_sha256)
        copy = json.loads(registry.lake.get_bytes(f"{meta.name}/meta.json"))
        assert copy["optimizer_sha256"] == meta.optimizer_sha256
    payload, _ = registry.load("vm_ah_sa", "feed", days[-1], "abc123", optimizer=True)
    assert torch.equal(payload["optimizer"]["dense"]["m"], torch.full((3,), -14.0))
    assert "optimizer" not in registry.load("vm_ah_sa", "feed", days[-1], "abc123")[0]
    weights, _ = registry.load("vm_ah_sa", "feed", "2026-01-10", "abc123")  # weights: always
    assert torch.equal(weights["model"]["w"], torch.full((3,), 9.0))
    with pytest.raises(
        RegistryError, match=r"no optimizer state.*vm_ah_sa/feed@2026-01-08.*--start 2026-01-09"
    ):
        registry.load("vm_ah_sa", "feed", "2026-01-14", "abc123", optimizer=True)
    # a retrain of an older day keeps that day's state until the next day is saved
    registry.save(_meta("2026-01-03", True), _trained(3.0), policy)
    assert registry.meta("vm_ah_sa", "feed", "2026-01-03").optimizer_sha256
    registry.save(_meta("2026-01-04", True), _trained(4.0), policy)
    assert not registry.meta("vm_ah_sa", "feed", "2026-01-03").optimizer_sha256
    assert registry.meta("vm_ah_sa", "feed", days[-1]).optimizer_sha256  # the newest


def test_old_unpublished_snapshots_are_pruned_and_keep_their_record(registry: Registry) -> None:
    policy = RegistryConfig(optimizer_every_days=7, keep_unpublished_days=3)
    days = [f"2026-01-{d:02d}" for d in range(1, 11)]
    for i, ds in enumerate(days):
        registry.save(_meta(ds, published=i % 2 == 0), _trained(float(i)), policy)
    history = {m.ds: m for m in registry.history("vm_ah_sa", "feed")}
    assert len(history) == 10  # every record stays
    pruned = sorted(d for d, m in history.items() if m.pruned)
    # unpublished (odd i: 02, 04, 06), older than 3 days before 01-10, not a checkpoint
    assert pruned == [
        d for d in ["2026-01-02", "2026-01-04", "2026-01-06"] if not is_checkpoint_day(d, 7)
    ]
    for meta in history.values():
        assert registry.lake.exists(f"{meta.name}/snapshot.pt") == (not meta.pruned)
    gone = history[pruned[0]]
    assert "keep_unpublished_days=3" in gone.pruned
    with pytest.raises(RegistryError, match="has no files"):
        registry.load("vm_ah_sa", "feed", gone.ds, "abc123")
    assert current_id(registry.lake, gone.name) == gone.sha256  # lineage still resolves it
    assert not history["2026-01-07"].pruned  # within the window
    assert not history["2026-01-01"].pruned  # published


def test_a_format_2_snapshot_holds_its_optimizer_state(registry: Registry) -> None:
    """Snapshots written before optimizer.pt existed keep it inside: they load for training and
    no policy touches them (their content id would change)."""
    meta = registry.save(_meta("2026-01-05", True), _payload(1.0))
    buf = io.BytesIO()
    torch.save(_trained(1.0), buf)
    data = buf.getvalue()
    registry.lake.put_bytes(f"{meta.name}/snapshot.pt", data)
    old = dataclasses.replace(
        meta, format=2, sha256=hashlib.sha256(data).hexdigest(), bytes=len(data)
    )
    registry._write_index("vm_ah_sa", "feed", {meta.ds: old})
    policy = RegistryConfig(optimizer_every_days=7, keep_unpublished_days=0)
    for ds in ["2026-01-06", "2026-01-07"]:
        registry.save(_meta(ds), _trained(2.0), policy)
    payload, kept = registry.load("vm_ah_sa", "feed", "2026-01-05", "abc123", optimizer=True)
    assert kept == old and "optimizer" in payload


def test_a_save_re_encodes_only_the_entries_it_changes(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writing the index costs the entries a save changes, not every day so far."""
    policy = RegistryConfig(optimizer_every_days=1, keep_unpublished_days=None)
    for i in range(12):
        registry.save(_meta(f"2026-01-{i + 1:02d}", True), _payload(float(i)), policy)
    encoded: list[str] = []
    real = dataclasses.asdict

    def counting(meta: object) -> dict:
        encoded.append(getattr(meta, "ds", "?"))
        return real(meta)

    monkeypatch.setattr("exfm.registry.dataclasses.asdict", counting)
    Registry(registry.lake).save(_meta("2026-01-13", True), _payload(13.0), policy)
    assert set(encoded) == {"2026-01-13"}  # its meta.json copy and its line: no other day
    lines = registry.lake.get_bytes("registry/vm_ah_sa/feed/index.jsonl").decode().splitlines()
    assert len(lines) == 14 and json.loads(lines[0])["snapshots"] == 13
    registry.lake.put_bytes("registry/vm_ah_sa/feed/index.jsonl", "\n".join(lines[:-1]).encode())
    with pytest.raises(RegistryError, match="13 snapshots, 12 lines"):  # a truncated index
        registry.history("vm_ah_sa", "feed")

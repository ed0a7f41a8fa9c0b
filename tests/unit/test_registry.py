"""Snapshots in the lake: round trips (local and S3), lineage queries, refusing corrupted files and
foreign feature specs, weights-only loading, the index (one read however many days; built from a
registry that predates it; a corrupted one refused and rebuilt), what the policy keeps (optimizer
state at checkpoints, unpublished snapshots pruned with their record kept), and the gate."""

from __future__ import annotations

import copy
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


def test_an_index_read_again_sees_what_another_writer_changed(tmp_path: Path) -> None:
    # parsed entries are reused only for the same bytes: another process's save, a corruption
    mine, theirs = Registry(Lake(str(tmp_path / "lake"))), Registry(Lake(str(tmp_path / "lake")))
    mine.save(_meta("2026-01-05", published=True), _payload(1.0))
    assert [m.ds for m in mine.history("vm_ah_sa", "feed")] == ["2026-01-05"]
    theirs.save(_meta("2026-01-06", published=False), _payload(2.0))
    assert [m.ds for m in mine.history("vm_ah_sa", "feed")] == ["2026-01-05", "2026-01-06"]
    theirs.set_published(theirs.meta("vm_ah_sa", "feed", "2026-01-06"), True, "by hand")
    assert mine.meta("vm_ah_sa", "feed", "2026-01-06").published
    key = "registry/vm_ah_sa/feed/index.jsonl"
    mine.lake.put_bytes(key, mine.lake.get_bytes(key)[:-40])
    with pytest.raises(RegistryError, match="is corrupt"):
        mine.history("vm_ah_sa", "feed")


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


# ---------------------------------------------------------------------------------- deltas


def _model(seed: int) -> dict:
    """A payload shaped like a trainee's: a state dict (an OrderedDict with _metadata) with an
    embedding table of 256 rows and a dense layer, and the optimizer state."""
    layer = torch.nn.Module()
    layer.table = torch.nn.Embedding(256, 4)
    layer.dense = torch.nn.Linear(4, 2)
    torch.manual_seed(seed)
    for p in layer.parameters():
        torch.nn.init.normal_(p)
    return {
        "format": 1,
        "spec_fingerprint": "abc123",
        "layout": "{}",
        "model": layer.state_dict(),
        "optimizer": {"step": torch.tensor(float(seed))},
    }


def _step(payload: dict, rows: list[int], seed: int) -> dict:
    """A training day: a few embedding rows and every dense weight change."""
    torch.manual_seed(seed)
    out = {**payload, "model": type(payload["model"])(payload["model"])}
    out["model"]._metadata = payload["model"]._metadata
    table = out["model"]["table.weight"].clone()
    table[rows] += torch.randn(len(rows), 4)
    out["model"]["table.weight"] = table
    out["model"]["dense.weight"] = out["model"]["dense.weight"] + 1.0
    out["optimizer"] = {"step": payload["optimizer"]["step"] + 1}
    return out


def _chain(registry: Registry, days: list[str], policy: RegistryConfig) -> dict[str, dict]:
    """Save one snapshot a day, each with its parent's weights as the base; returns ds -> the
    weights saved."""
    from exfm.registry import base_of, weights_of

    payload, parent, saved = _model(0), None, {}
    for i, ds in enumerate(days):
        if i:
            payload = _step(payload, rows=[i, 100 + i, 200 + i], seed=i)
        base = (parent, base_of(saved[parent.ds])) if parent else None
        parent = registry.save(_meta(ds, True), payload, policy, base)
        saved[ds] = weights_of(payload)
    return saved


def _bytes(weights: dict) -> bytes:
    buf = io.BytesIO()
    torch.save(weights, buf)
    return buf.getvalue()


def test_days_are_stored_as_deltas_and_rebuild_their_content_id(registry: Registry) -> None:
    """Between checkpoint days a day's weights are the rows that changed (delta.pt): the same
    content id as whole weights, rebuilt bit for bit from the chain; checkpoint days are whole."""
    policy = RegistryConfig(optimizer_every_days=7, keep_unpublished_days=None)
    days = [f"2026-01-{d:02d}" for d in range(5, 13)]  # 01-08 is a checkpoint day
    saved = _chain(registry, days, policy)
    history = {m.ds: m for m in registry.history("vm_ah_sa", "feed")}
    for ds, meta in history.items():
        whole = ds in ("2026-01-05", "2026-01-08")  # the first day, the checkpoint day
        assert bool(meta.delta_of) == (not whole), ds
        assert registry.lake.exists(f"{meta.name}/snapshot.pt") == whole
        assert registry.lake.exists(f"{meta.name}/delta.pt") == (not whole)
        assert meta.sha256 == hashlib.sha256(_bytes(saved[ds])).hexdigest()  # as whole weights
        if not whole:
            assert meta.delta_of == days[days.index(ds) - 1]
            assert meta.delta_bytes * 2 < meta.bytes
            assert meta.stored_bytes == meta.delta_bytes + meta.optimizer_bytes
        payload, _ = registry.load("vm_ah_sa", "feed", ds, "abc123")
        assert _bytes(payload) == _bytes(saved[ds])  # bit for bit, the state dict's _metadata too
    payload, _ = registry.load("vm_ah_sa", "feed", days[-1], "abc123", optimizer=True)
    assert torch.equal(payload["optimizer"]["step"], torch.tensor(7.0))


def test_a_delta_chain_is_bounded_and_needs_its_parent(registry: Registry) -> None:
    """No chain grows past optimizer_every_days - 1 deltas (days without data break the
    calendar's checkpoints); a delta over no known parent, or a different one, is whole."""
    policy = RegistryConfig(optimizer_every_days=3, keep_unpublished_days=None)
    days = ["2026-01-02", "2026-01-03", "2026-01-05", "2026-01-06", "2026-01-08"]
    assert not any(is_checkpoint_day(d, 3) for d in days)
    _chain(registry, days, policy)
    kinds = [m.delta_of for m in registry.history("vm_ah_sa", "feed")]
    assert kinds == ["", "2026-01-02", "2026-01-03", "", "2026-01-06"]
    stranger = registry.save(_meta("2026-01-09", True), _model(9), policy, None)
    assert not stranger.delta_of
    other = dataclasses.replace(stranger, sha256="0" * 64)  # not the parent the registry knows
    from exfm.registry import base_of

    meta = registry.save(_meta("2026-01-10", True), _model(9), policy, (other, base_of(_model(9))))
    assert not meta.delta_of
    no_deltas = RegistryConfig(optimizer_every_days=3, keep_unpublished_days=None, deltas=False)
    base = (meta, base_of(_model(9)))
    meta = registry.save(_meta("2026-01-11", True), _model(9), no_deltas, base)
    assert not meta.delta_of


def test_corrupted_deltas_and_bases_are_refused(registry: Registry) -> None:
    policy = RegistryConfig(optimizer_every_days=7, keep_unpublished_days=None)
    days = ["2026-01-05", "2026-01-06", "2026-01-07"]
    _chain(registry, days, policy)
    first, second, third = registry.history("vm_ah_sa", "feed")
    data = registry.lake.get_bytes(f"{second.name}/delta.pt")
    registry.lake.put_bytes(f"{second.name}/delta.pt", data[:-10] + b"0123456789")
    with pytest.raises(RegistryError, match=r"ds=2026-01-06/delta\.pt is corrupted"):
        registry.load("vm_ah_sa", "feed", third.ds, "abc123")  # a delta before it
    registry.lake.put_bytes(f"{second.name}/delta.pt", data)
    registry.lake.delete_key(f"{first.name}/snapshot.pt")
    with pytest.raises(RegistryError, match=r"ds=2026-01-05/snapshot\.pt is missing"):
        registry.load("vm_ah_sa", "feed", third.ds, "abc123")  # the chain's whole start


def test_a_held_parent_is_not_read_again(registry: Registry) -> None:
    """The DAS holds yesterday's FM: today's delta over it reads delta.pt alone."""
    policy = RegistryConfig(optimizer_every_days=7, keep_unpublished_days=None)
    days = ["2026-01-05", "2026-01-06"]
    saved = _chain(registry, days, policy)
    first, second = registry.history("vm_ah_sa", "feed")
    held = (first.sha256, copy.deepcopy(saved[days[0]]))  # handed over: patched in place
    registry.lake.delete_key(f"{first.name}/snapshot.pt")
    payload, _ = registry.load("vm_ah_sa", "feed", second.ds, "abc123", held=held)
    assert _bytes(payload) == _bytes(saved[days[1]])
    with pytest.raises(RegistryError):
        registry.load("vm_ah_sa", "feed", second.ds, "abc123")


def test_retraining_or_deleting_a_base_stores_its_dependents_whole(registry: Registry) -> None:
    """A retrain changes the day's weights: the day after it, a delta over the old ones, is
    rewritten whole first, with the same content id (the registry never loses a content)."""
    policy = RegistryConfig(optimizer_every_days=7, keep_unpublished_days=None)
    days = ["2026-01-05", "2026-01-06", "2026-01-07"]
    saved = _chain(registry, days, policy)
    before = {m.ds: m for m in registry.history("vm_ah_sa", "feed")}
    registry.save(_meta(days[1], True), _model(42), policy)  # 01-06 retrained: other weights
    after = {m.ds: m for m in registry.history("vm_ah_sa", "feed")}
    assert not after[days[2]].delta_of and after[days[2]].sha256 == before[days[2]].sha256
    assert not registry.lake.exists(f"{after[days[2]].name}/delta.pt")
    payload, _ = registry.load("vm_ah_sa", "feed", days[2], "abc123")
    assert _bytes(payload) == _bytes(saved[days[2]])
    # deleting a base: the same
    registry.delete("vm_ah_sa", "feed", days[2])
    saved = _chain(Registry(registry.lake), ["2026-02-03", "2026-02-04"], policy)
    assert registry.meta("vm_ah_sa", "feed", "2026-02-04").delta_of == "2026-02-03"
    registry.delete("vm_ah_sa", "feed", "2026-02-03")
    payload, meta = registry.load("vm_ah_sa", "feed", "2026-02-04", "abc123")
    assert not meta.delta_of and _bytes(payload) == _bytes(saved["2026-02-04"])


def test_pruning_keeps_what_deltas_depend_on(registry: Registry) -> None:
    """An old unpublished snapshot whose files a kept delta needs keeps them."""
    policy = RegistryConfig(optimizer_every_days=7, keep_unpublished_days=2)
    days = [f"2026-01-{d:02d}" for d in range(1, 8)]  # 01-01 a checkpoint day, 01-08 not here
    payload, parent, saved = _model(0), None, {}
    from exfm.registry import base_of, weights_of

    for i, ds in enumerate(days):
        if i:
            payload = _step(payload, rows=[i], seed=i)
        base = (parent, base_of(saved[parent.ds])) if parent else None
        parent = registry.save(_meta(ds, published=False), payload, policy, base)
        saved[ds] = weights_of(payload)
    history = {m.ds: m for m in registry.history("vm_ah_sa", "feed")}
    # 01-02 .. 01-04 are old and unpublished, but 01-05 (kept) is a delta over 01-04, over ...
    assert not any(m.pruned for m in history.values())
    for ds in days:
        got, _ = registry.load("vm_ah_sa", "feed", ds, "abc123")
        assert _bytes(got) == _bytes(saved[ds])
    # 01-08 (a checkpoint day) is whole and starts a new chain: the old one goes
    more = [f"2026-01-{d:02d}" for d in range(8, 13)]
    for i, ds in enumerate(more, start=len(days)):
        payload = _step(payload, rows=[i], seed=i)
        parent = registry.save(
            _meta(ds, published=False), payload, policy, (parent, base_of(saved[parent.ds]))
        )
        saved[ds] = weights_of(payload)
    history = {m.ds: m for m in registry.history("vm_ah_sa", "feed")}
    pruned = sorted(ds for ds, m in history.items() if m.pruned)
    # older than 01-10, unpublished, no optimizer state (01-01 and 01-08 are checkpoints), and
    # no kept delta over them (01-10 is a delta over 01-09)
    assert pruned == [f"2026-01-{d:02d}" for d in range(2, 8)]
    assert not registry.lake.exists(f"{history['2026-01-04'].name}/delta.pt")
    for ds in more:
        got, _ = registry.load("vm_ah_sa", "feed", ds, "abc123")
        assert _bytes(got) == _bytes(saved[ds])

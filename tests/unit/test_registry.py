"""Snapshots in the lake: round trips (local and S3), lineage queries, refusing corrupted files and
foreign feature specs, weights-only loading, and the publishing gate."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
import torch

from exfm.config_schema import PublishConfig
from exfm.errors import RegistryError
from exfm.lake import Lake
from exfm.metrics import Metrics
from exfm.registry import Registry, SnapshotMeta, publish_decision, snapshot_prefix


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
    registry.lake.put_bytes("registry/vm_ah_sa/feed/ds=2026-01-05/meta.json", b"{not json")
    with pytest.raises(RegistryError, match="meta.json is corrupt"):
        registry.meta("vm_ah_sa", "feed", "2026-01-05")


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
    registry._write_meta(
        type(meta)(
            **{**meta.__dict__, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        )
    )
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

"""The DAS under real failures: the backfill process killed with SIGKILL, S3 going away in the
middle of a backfill, and reader processes joining while a backfill rewrites partitions."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from exfm import das
from exfm.config import Config
from exfm.errors import LakeError
from exfm.lake import DAS, IMPRESSIONS, Lake
from tests.conftest import REPO, SMALL_WORLD, TINY_MODELS, free_port, moto_server
from tests.unit.test_das import LENIENT, das_cfg, fill

pytestmark = pytest.mark.slow

DAYS = ["2026-01-06", "2026-01-07", "2026-01-08"]
SETS = ["world.impressions_per_day=30000"]


def _assert_complete(lake: Lake, cfg: Config) -> None:
    """Every DAS partition present is whole: one prediction per impression of its day."""
    for part in lake.partitions(DAS):
        rows = lake.read_partition(DAS, part, columns=["fm_logit"]).num_rows
        assert rows == lake.read(IMPRESSIONS, ds=[part["ds"]], columns=["label"]).num_rows


def _overrides(cfg: Config) -> list[str]:
    """The --set overrides that rebuild `cfg` in another process."""
    return [
        *SMALL_WORLD,
        *TINY_MODELS,
        *LENIENT,
        "world.days=4",
        *SETS,
        f"lake.root={cfg.lake.root}",
    ]


def test_sigkill_mid_backfill_keeps_what_was_stored_and_a_rerun_completes(tmp_path: Path) -> None:
    cfg = das_cfg(str(tmp_path / "lake"), *SETS)
    lake = fill(cfg)
    das.backfill(cfg, lake, DAYS[0], DAYS[-1])  # the previous state
    before = {p["ds"] for p in lake.partitions(DAS)}
    part_files = [
        tmp_path
        / "lake"
        / "das"
        / f"fm_version={das.fm_version(das.live_fm(cfg, das.Registry(lake), d))}"
        / f"ds={d}"
        / "part.parquet"
        for d in DAYS
    ]
    mtimes = {f: f.stat().st_mtime_ns for f in part_files}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "exfm",
            "das",
            "backfill",
            "--start",
            DAYS[0],
            "--end",
            DAYS[-1],
            "--force",
            *[a for o in _overrides(cfg) for a in ("--set", o)],
        ],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if any(f.stat().st_mtime_ns != mtimes[f] for f in part_files):
            break  # the first day is rewritten: kill it now, mid-backfill
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    rewritten = [f for f in part_files if f.stat().st_mtime_ns != mtimes[f]]
    assert 1 <= len(rewritten) < len(part_files), "the kill should land mid-backfill"
    assert {p["ds"] for p in lake.partitions(DAS)} == before
    _assert_complete(lake, cfg)
    lake.gc(older_than_s=0)
    results = das.backfill(cfg, lake, DAYS[0], DAYS[-1])
    assert all(r["skipped"] for r in results)  # the same FM already scored every day
    _assert_complete(lake, cfg)


@pytest.mark.s3
def test_s3_outage_mid_backfill_then_a_rerun_completes(
    s3_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    server = moto_server(port)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    import boto3

    boto3.client("s3").create_bucket(Bucket="outage")
    cfg = das_cfg("s3://outage/x", "lake.s3_max_attempts=2", "lake.s3_connect_timeout_s=0.5")
    lake = fill(cfg)
    real_write = Lake.write_partition
    writes = {"n": 0}

    def write_then_fail(self: Lake, dataset, values, table, **kw):
        result = real_write(self, dataset, values, table, **kw)
        if dataset is DAS:
            writes["n"] += 1
            if writes["n"] == 1:
                server.stop()  # S3 goes away after the first day is stored
        return result

    monkeypatch.setattr(Lake, "write_partition", write_then_fail)
    try:
        with pytest.raises(LakeError, match="did not answer"):
            das.backfill(cfg, lake, DAYS[0], DAYS[-1])
    finally:
        monkeypatch.setattr(Lake, "write_partition", real_write)
        server = moto_server(port)
    try:
        done = lake.partitions(DAS)
        assert [p["ds"] for p in done] == [DAYS[0]]  # nothing half-written is visible
        _assert_complete(lake, cfg)
        results = das.backfill(cfg, lake, DAYS[0], DAYS[-1])
        assert [r["skipped"] for r in results] == [True, False, False]
        _assert_complete(lake, cfg)
    finally:
        server.stop()


READER = """
import sys
from exfm import das
from exfm.config import load_config
from exfm.lake import Lake
cfg = load_config(sys.argv[1], sys.argv[4:])
lake = Lake.from_config(cfg.lake)
for i in range(int(sys.argv[3])):
    table, report = das.training_rows(cfg, lake, sys.argv[2], "feed")
    assert table.num_rows == report["rows"] and report["coverage"] == 1.0, report
    print(report["rows"], flush=True)
"""


def test_readers_join_while_a_backfill_writes(tmp_path: Path) -> None:
    cfg = das_cfg(str(tmp_path / "lake"), *SETS)
    lake = fill(cfg)
    das.backfill(cfg, lake, DAYS[0], DAYS[-1])
    readers = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                READER,
                str(REPO / "params.yaml"),
                DAYS[1],
                "15",
                *_overrides(cfg),
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ},
        )
        for _ in range(3)
    ]
    rounds = 0
    while any(r.poll() is None for r in readers) and rounds < 200:
        das.backfill_day(cfg, lake, DAYS[2 if rounds % 2 else 1], force=True)  # another day, and
        rounds += 1  # the very day being read: each rewrite is atomic
    outputs = [r.communicate(timeout=120) for r in readers]
    expected = lake.read(IMPRESSIONS, ds=[DAYS[1]], vertical=["feed"], columns=["label"]).num_rows
    for reader, (out, err) in zip(readers, outputs, strict=True):
        assert reader.returncode == 0, err
        assert out.split() == [str(expected)] * 15
    assert rounds >= 2

"""Ranges of days as a user runs them: in one process with the model in memory (the same bytes as
one process a day, no snapshot loaded between the days), a retrain resuming from the nearest
snapshot that kept its optimizer state, and ranges that follow the data (days without
partitions are skipped and named; a lone missing day is an error that stores nothing)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from data_checks import report
from exfm import cli, stages
from exfm.config import Config, load_config
from exfm.data.world import generate
from exfm.lake import CHECKS, IMPRESSIONS, Lake
from exfm.registry import Registry, is_checkpoint_day
from tests.conftest import REPO, SMALL_WORLD, TINY_MODELS

DAYS = ["2026-01-05", "2026-01-06", "2026-01-07", "2026-01-08"]


def _world(folder: Path, *overrides: str) -> Config:
    cfg = load_config(
        REPO / "params.yaml",
        [
            *SMALL_WORLD,
            *TINY_MODELS,
            "world.days=4",
            "world.start_ds=2026-01-05",
            f"lake.root={folder / 'lake'}",
            f"lake.catalog={folder / 'c.duckdb'}",
            *overrides,
        ],
    )
    generate(cfg, Lake.from_config(cfg.lake))
    return cfg


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, bool]]:
    """Every snapshot the registry loads: (label, with its optimizer state)."""
    seen: list[tuple[str, bool]] = []
    real = Registry.load

    def spy(self: Registry, model: str, vertical: Any, ds: str, *args: Any, **kw: Any) -> Any:
        payload, meta = real(self, model, vertical, ds, *args, **kw)
        seen.append((meta.label, bool(kw.get("optimizer"))))
        return payload, meta

    monkeypatch.setattr(Registry, "load", spy)
    return seen


def _shas(cfg: Config, model: str = "fm", vertical: str | None = None) -> dict[str, str]:
    registry = Registry(Lake.from_config(cfg.lake))
    return {m.ds: m.sha256 for m in registry.history(model, vertical)}


def test_a_range_keeps_the_model_in_memory_and_gives_the_bytes_of_lone_days(
    tmp_path: Path, loads: list[tuple[str, bool]]
) -> None:
    ranged = _world(tmp_path / "range")
    lone = _world(tmp_path / "lone")
    for cfg in (ranged, lone):
        for ds in DAYS:
            stages.check(cfg, ds)
    warm = stages.Warm()
    for ds in DAYS:
        stages.train_fm(ranged, ds, warm=warm)
        stages.train_vm(ranged, ds, "feed", "baseline", warm=warm)
    assert [label for label, resume in loads if resume] == []  # nothing loaded to go on
    for ds in DAYS:  # a process a day: each loads its parent with its optimizer state
        stages.train_fm(lone, ds)
        stages.train_vm(lone, ds, "feed", "baseline")
    resumed = sorted(label for label, resume in loads if resume)
    assert resumed == sorted(
        [f"fm@{d}" for d in DAYS[:-1]] + [f"vm_baseline/feed@{d}" for d in DAYS[:-1]]
    )
    assert _shas(ranged) == _shas(lone) and len(_shas(ranged)) == 4
    assert _shas(ranged, "vm_baseline", "feed") == _shas(lone, "vm_baseline", "feed")
    # both stored days 2 and 3 as deltas over their parents; day 4 is a checkpoint day: whole
    every = ranged.registry.optimizer_every_days
    assert [is_checkpoint_day(d, every) for d in DAYS] == [False, False, False, True]
    for cfg in (ranged, lone):
        history = Registry(Lake.from_config(cfg.lake)).history("fm", None)
        assert [m.delta_of for m in history] == ["", DAYS[0], DAYS[1], ""]


def test_a_retrain_resumes_from_the_last_checkpoint(
    tmp_path: Path, loads: list[tuple[str, bool]], caplog: pytest.LogCaptureFixture
) -> None:
    """Day 4's parent lost its optimizer state (registry.optimizer_every_days): retraining day 4
    trains again from the newest snapshot that kept it, and reproduces every day's bytes."""
    cfg = _world(tmp_path, "registry.optimizer_every_days=7")
    assert not any(is_checkpoint_day(d, 7) for d in DAYS[:-1])  # none before: from day 1
    warm = stages.Warm()
    for ds in DAYS:
        stages.check(cfg, ds)
        stages.train_fm(cfg, ds, warm=warm)
    before = _shas(cfg)
    history = Registry(Lake.from_config(cfg.lake)).history("fm", None)
    assert [m.ds for m in history if m.resumable] == [DAYS[-1]]  # the newest only
    caplog.set_level("INFO", logger="exfm.stages")
    result = stages.train_fm(cfg, DAYS[-1])  # a new process: nothing in memory
    assert result is not None and result["sha256"] == before[DAYS[-1]]
    assert "training again from the first day: " + ", ".join(DAYS[:-1]) in caplog.text
    assert _shas(cfg) == before  # the same inputs gave the same bytes: nothing went stale
    assert [label for label, resume in loads if resume] == []


def _run(capfd: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = cli.main(list(argv))
    out, err = capfd.readouterr()
    return rc, out, err


def test_ranges_follow_the_data(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _world(tmp_path)
    lake = Lake.from_config(cfg.lake)
    for values in lake.partitions(IMPRESSIONS, ds=[DAYS[1]]):
        lake.delete_partition(IMPRESSIONS, values)  # a gap, as real data has
    params = tmp_path / "params.yaml"
    params.write_text(
        (REPO / "params.yaml").read_text().replace("root: data/lake", f"root: {tmp_path / 'lake'}")
    )
    sets = [
        "--params",
        str(params),
        *[arg for o in [*SMALL_WORLD, *TINY_MODELS] for arg in ("--set", o)],
        "--set",
        f"lake.root={tmp_path / 'lake'}",
        "--set",
        f"lake.catalog={tmp_path / 'c.duckdb'}",
        "--set",
        "publish.max_ne=100.0",  # the tiny world's FM is near the base rate: publish it anyway
    ]
    reads = []
    real = report.load_results
    monkeypatch.setattr(report, "load_results", lambda lake: reads.append(1) or real(lake))
    rc, out, err = _run(capfd, "check", "--start", DAYS[0], "--end", DAYS[-1], *sets)
    assert rc == 0, err
    assert [p["ds"] for p in lake.partitions(CHECKS)] == [DAYS[0], DAYS[2], DAYS[3]]
    assert len(reads) == 1  # the drift pages once, at the range's end, not once a day
    pages = {k.rsplit("/", 1)[1] for k in lake.list_keys("reports/drift")}
    assert {f"{d}.html" for d in (DAYS[0], DAYS[2], DAYS[3])} | {"index.html"} <= pages
    assert f"1 of the 4 days of {DAYS[0]}..{DAYS[-1]} have no impressions" in err
    assert DAYS[1] in err and len(out.splitlines()) == 3
    rc, out, err = _run(capfd, "check", "--ds", DAYS[1], *sets)
    assert rc == 2 and f"no impressions for ds={DAYS[1]}" in err and out == ""
    assert DAYS[1] not in {p["ds"] for p in lake.partitions(CHECKS)}  # nothing stored
    rc, out, err = _run(capfd, "fm", "train", "--start", DAYS[0], "--end", DAYS[-1], *sets)
    assert rc == 0, err
    assert sorted(_shas(cfg)) == [DAYS[0], DAYS[2], DAYS[3]]
    rc, out, err = _run(capfd, "das", "backfill", "--start", DAYS[0], "--end", DAYS[-1], *sets)
    assert rc == 0, err
    scored = [json.loads(line) for line in out.splitlines()]
    assert [(r["ds"], "content_id" in r) for r in scored] == [
        (DAYS[0], False),  # no FM before the first day: skipped, named, and the range goes on
        (DAYS[2], True),
        (DAYS[3], True),
    ]
    assert f"das {DAYS[0]} skipped: no published FM" in err
    rc, out, err = _run(
        capfd, "vm", "train", "--vertical", "feed", "--start", DAYS[0], "--end", DAYS[-1], *sets
    )
    assert rc == 0, err
    assert [json.loads(line)["ds"] for line in out.splitlines()] == DAYS[2:]
    rc, out, err = _run(capfd, "check", "--start", "2026-02-01", "--end", "2026-02-03", *sets)
    assert rc == 2 and "no day of 2026-02-01..2026-02-03 has impressions" in err
    rc, out, err = _run(capfd, "registry", "ls", "fm", *sets)
    assert rc == 0, err
    listed = [line.split()[0] for line in out.splitlines() if line.startswith("2026-")]
    assert listed == [DAYS[0], DAYS[2], DAYS[3]]
    assert f"delta over {DAYS[0]}" in out  # day 3's weights: the rows that changed
    rc, out, err = _run(capfd, "registry", "reindex", *sets)
    assert rc == 0 and "registry/fm: 3 snapshots" in out, err
    rc, out, err = _run(capfd, "registry", "ls", "vm_kd", "--vertical", "feed", *sets)
    assert rc == 2 and "no snapshots of vm_kd/feed" in err

"""Distributed FM training: `exfm fm train --nproc 2` runs two CPU processes under torchrun with
DistributedDataParallel (gloo); rank 0 writes the snapshots, which load and train on in the
ordinary single-process path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from exfm.config import load_config
from exfm.data.schema import FeatureSpec
from exfm.data.world import generate
from exfm.inference import model_from_payload, predict
from exfm.lake import IMPRESSIONS, Lake
from exfm.models.inputs import to_batch
from exfm.registry import Registry
from exfm.trainee import build_trainee
from exfm.training import train_day
from tests.conftest import REPO, SMALL_WORLD, TINY_MODELS, run_exfm

pytestmark = pytest.mark.slow

DAYS = ["2026-01-05", "2026-01-06", "2026-01-07"]


def test_two_processes_train_and_rank_0_writes_a_portable_snapshot(tmp_path: Path) -> None:
    overrides = [*SMALL_WORLD, *TINY_MODELS, "publish.max_ne=100", f"lake.root={tmp_path / 'lake'}"]
    cfg = load_config(REPO / "params.yaml", overrides)
    lake = Lake.from_config(cfg.lake)
    generate(cfg, lake)
    sets = [a for o in overrides for a in ("--set", o)]
    refused = run_exfm("fm", "train", "--ds", DAYS[0], "--nproc", "2", *sets)
    assert refused.returncode == 2, refused.stderr[-3000:]
    assert f"ds={DAYS[0]} was never checked" in refused.stderr  # every rank passes the gate
    assert Registry(lake).history("fm", None) == []
    checked = run_exfm("check", "--start", DAYS[0], "--end", DAYS[1], *sets)
    assert checked.returncode == 0, checked.stderr[-3000:]
    result = run_exfm("fm", "train", "--start", DAYS[0], "--end", DAYS[1], "--nproc", "2", *sets)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [r["ds"] for r in lines] == DAYS[:2]  # one line per day: rank 0 reports
    assert all(r["processes"] == 2 for r in lines)
    registry = Registry(lake)
    spec = FeatureSpec.from_config(cfg.features)
    meta = registry.meta("fm", None, DAYS[1])
    assert meta.config["processes"] == 2 and meta.parent_ds == DAYS[0]
    assert (
        meta.metrics["train"]["rows"]
        == lake.read(IMPRESSIONS, ds=[DAYS[1]], columns=["label"]).num_rows
    )
    # the snapshot is the ordinary kind: it rebuilds alone and predicts
    payload, _ = registry.load("fm", None, DAYS[1], spec.fingerprint())
    model, layout = model_from_payload(payload)
    data = to_batch(lake.read(IMPRESSIONS, ds=[DAYS[2]]), layout)
    logits = predict(lambda b: model(b.cat, b.dense, b.vertical), data, 4096, torch.device("cpu"))
    assert np.isfinite(logits).all() and logits.std() > 0
    # and the single-process trainer carries on from it (weights and optimizer state)
    day3 = train_day(
        cfg, lake, build_trainee(cfg, spec, "fm"), lake.read(IMPRESSIONS, ds=[DAYS[2]]), DAYS[2]
    )
    assert day3.parent_ds == DAYS[1] and day3.eval.rows == len(data)

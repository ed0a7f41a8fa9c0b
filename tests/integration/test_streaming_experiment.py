"""A small streaming experiment through the production path (stage functions, the DAS store, the
registry, the evals dataset): a few simulated days, every vertical, the default models. Pooled over
the evaluation days, the FM beats the baseline VM on every vertical, and the distilled VM (ah_sa)
beats the baseline pooled over the verticals. Per-vertical claims with their uncertainty are the
Results issue's; this checks that the mechanism works end to end, with fixed seeds."""

from __future__ import annotations

from pathlib import Path

import pyarrow.compute as pc
import pytest

from exfm import ids, stages
from exfm.config import load_config
from exfm.data.world import generate
from exfm.evaluation import evaluate
from exfm.lake import Lake
from tests.conftest import REPO

pytestmark = pytest.mark.slow

WORLD = [
    "world.days=6",
    "world.impressions_per_day=40000",
    "world.n_users=2000",
    "world.n_ads=500",
    "world.n_advertisers=200",
    "world.n_contexts=500",
]


def test_fm_beats_the_baseline_and_distillation_transfers(tmp_path: Path) -> None:
    cfg = load_config(REPO / "params.yaml", [*WORLD, f"lake.root={tmp_path / 'lake'}"])
    lake = Lake.from_config(cfg.lake)
    generate(cfg, lake)
    days = ids.ds_range(cfg.world.start_ds, ids.ds_add(cfg.world.start_ds, cfg.world.days - 1))
    for i, ds in enumerate(days):
        stages.check(cfg, ds)  # the gate every training and scoring stage passes
        stages.train_fm(cfg, ds)
        if i == 0:
            continue  # no FM was live yet: the VMs (every variant alike) start tomorrow
        stages.backfill_das(cfg, ds)  # scored by the FM published the day before
        for vertical in cfg.features.verticals:
            stages.train_vm(cfg, ds, vertical, "baseline")
            stages.train_vm(cfg, ds, vertical, "ah_sa")

    table = evaluate(lake, models=["fm", "vm_baseline", "vm_ah_sa"])
    pooled = table.filter(pc.equal(table.column("ds"), "pooled")).to_pylist()
    ne = {(r["model"], r["vertical"]): r["ne"] for r in pooled}
    for vertical in cfg.features.verticals:
        assert ne[("fm", vertical)] < ne[("vm_baseline", vertical)], (vertical, ne)
    assert ne[("vm_ah_sa", "all")] < ne[("vm_baseline", "all")], ne
    gains = {r["vertical"]: r["ne_gain_pct"] for r in pooled if r["model"] == "vm_ah_sa"}
    assert gains["all"] > 0

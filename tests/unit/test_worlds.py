"""World shapes (exfm/experiments/worlds.py): the tuning family and the robustness grid are the
default world with another positive rate, drift, number of verticals and FM delay. Each shaped
config is a valid config whose world has what the shape says, and the world generator makes data
with that many verticals and about that positive rate; the one-axis-at-a-time design and the
grid extension of tune."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exfm.config import Config, RobustnessConfig, WorldShapeConfig, load_config
from exfm.errors import ConfigError
from exfm.experiments import worlds
from exfm.experiments.records import ExperimentError
from exfm.experiments.runner import config_with
from exfm.experiments.suite import extend_axis, refreshed_every
from tests.conftest import REPO


@pytest.fixture(scope="module")
def cfg() -> Config:
    return load_config(REPO / "params.yaml")


def test_the_default_shape_is_the_default_world_on_another_seed(cfg: Config) -> None:
    out = worlds.shaped(cfg, WorldShapeConfig(), seed=7)
    assert out.world.seed == 7
    assert out.world.model_copy(update={"seed": cfg.world.seed}) == cfg.world
    assert out.features == cfg.features and out.vm == cfg.vm and out.das == cfg.das


@settings(max_examples=40, deadline=None)
@given(
    base_ctr=st.one_of(st.none(), st.floats(0.001, 0.9)),
    drift=st.floats(0.1, 10),
    n=st.integers(1, 16),
    delay=st.one_of(st.none(), st.integers(0, 30)),
)
def test_a_shaped_world_has_what_its_shape_says(
    cfg: Config, base_ctr: float | None, drift: float, n: int, delay: int | None
) -> None:
    shape = WorldShapeConfig(base_ctr=base_ctr, drift=drift, verticals=n, fm_delay=delay)
    out = worlds.shaped(cfg, shape, seed=1)
    names = list(out.features.verticals)
    assert len(names) == n == len(set(names)) and set(out.world.verticals) == set(names)
    assert names[: min(n, 4)] == list(cfg.features.verticals)[: min(n, 4)]
    assert sum(v.traffic_share for v in out.world.verticals.values()) == pytest.approx(1)
    if base_ctr is not None:
        assert worlds.mean_ctr(out.world.verticals) == pytest.approx(base_ctr, rel=1e-6)
        # one factor on the odds: the verticals keep their order
        own = {k: cfg.world.verticals[k].base_ctr for k in names if k in cfg.world.verticals}
        moved = {k: out.world.verticals[k].base_ctr for k in own}
        assert sorted(own, key=own.get) == sorted(moved, key=moved.get)
    else:
        for k in names[:4]:
            assert out.world.verticals[k].base_ctr == cfg.world.verticals[k].base_ctr
    for key in worlds.DRIFT_KEYS:
        want = min(getattr(cfg.world, key) * drift, worlds.DRIFT_CAP[key])
        assert getattr(out.world, key) == pytest.approx(want)
    assert out.das.fm_delay_days == (cfg.das.fm_delay_days if delay is None else delay)
    # a feature some verticals lack is had by their clones and by no other vertical
    for name, feat in out.features.features.items():
        own_feat = cfg.features.features[name]
        if own_feat.only_verticals:
            for v in names:
                original = v.rstrip("0123456789")
                assert (v in feat.only_verticals) == (original in own_feat.only_verticals)


def test_the_generator_makes_the_shape(cfg: Config, tmp_path) -> None:
    from exfm import stages
    from exfm.lake import IMPRESSIONS, Lake

    small = config_with(
        cfg,
        [
            "world.days=2",
            "world.impressions_per_day=20000",
            "world.n_users=2000",
            "world.n_ads=500",
            f"lake.root={tmp_path / 'lake'}",
            f"lake.catalog={tmp_path / 'catalog.duckdb'}",
        ],
    )
    shaped = worlds.shaped(small, WorldShapeConfig(base_ctr=0.3, verticals=6), seed=11)
    stages.land_world(shaped)
    lake = Lake.from_config(shaped.lake)
    table = lake.read(IMPRESSIONS, columns=["vertical", "label"])
    assert set(table.column("vertical").to_pylist()) == set(shaped.features.verticals)
    rows, clicks = table.num_rows, sum(table.column("label").to_pylist())
    assert 0.15 < clicks / rows < 0.5  # base CTR 0.3; affinity, position and auction move it


def test_bad_shapes_and_grids_are_refused_naming_the_key(cfg: Config) -> None:
    with pytest.raises(ConfigError, match=r"experiment.robustness.base_ctr: 1.5"):
        config_with(cfg, ["experiment.robustness.base_ctr=[0.1, 1.5]"])
    with pytest.raises(ConfigError, match=r"experiment.robustness.verticals"):
        config_with(cfg, ["experiment.robustness.verticals=[2, 2]"])
    with pytest.raises(ConfigError, match=r"experiment.grid.distill_weight"):
        config_with(cfg, ["experiment.grid.distill_weight=[2.0, 1.0]"])
    with pytest.raises(ConfigError, match=r"experiment.grid.label_scale"):
        config_with(cfg, ["experiment.grid.label_scale=[0.0, 1.0]"])
    with pytest.raises(ConfigError, match=r"experiment.tune_worlds is empty"):
        config_with(cfg, ["experiment.tune_worlds=[]"])
    with pytest.raises(ExperimentError, match="mean base CTR"):
        worlds.at_mean_ctr(dict(cfg.world.verticals), 1.0)


def test_a_feature_no_vertical_of_the_shape_has_is_an_error(cfg: Config) -> None:
    one = config_with(cfg, ["features.features.context_id.only_verticals=[search]"])
    with pytest.raises(ExperimentError, match=r"context_id exists only in \['search'\]"):
        worlds.shaped(one, WorldShapeConfig(verticals=2), seed=1)


def test_one_at_a_time_cells_are_the_center_and_one_axis_changed(cfg: Config) -> None:
    r = cfg.experiment.robustness
    cells = worlds.cells(r)
    assert cells[0] == r.center
    assert len(cells) == 1 + sum(
        sum(v != getattr(r.center, a) for v in getattr(r, a)) for a in worlds.AXES
    )
    for cell in cells[1:]:
        changed = [a for a in worlds.AXES if getattr(cell, a) != getattr(r.center, a)]
        assert len(changed) == 1
    assert len(set(cells)) == len(cells)
    full = worlds.cells(RobustnessConfig(**{**r.model_dump(), "design": "full"}))
    assert len(full) == 3 * 2 * 3 * 2 and set(cells) <= set(full)
    # cells that differ only in the FM delay share a world
    delays = [c for c in cells if worlds.world_key(c) == worlds.world_key(r.center)]
    assert sorted(c.fm_delay for c in delays) == [0, 2]


def test_an_axis_is_extended_past_the_end_its_best_value_sits_at() -> None:
    assert extend_axis([0.5, 1.0, 2.0, 4.0], 4.0) == 8.0
    assert extend_axis([0.5, 1.0, 2.0, 4.0], 0.5) == 0.25
    assert extend_axis([0.5, 1.0, 2.0, 4.0], 2.0) is None
    assert extend_axis([1.0, 1.5], 1.5) == pytest.approx(2.25)
    assert extend_axis([1.0], 1.0) is None


def test_an_fm_refreshed_every_k_days_is_the_newest_refresh_day_before_the_day() -> None:
    days = [f"2026-01-{d:02d}" for d in range(5, 19)]
    weekly = refreshed_every(days, 7)
    published = days
    assert weekly("2026-01-06", published) == "2026-01-05"
    assert weekly("2026-01-12", published) == "2026-01-05"  # 01-12 is itself a refresh day
    assert weekly("2026-01-13", published) == "2026-01-12"
    daily = refreshed_every(days, 1)
    assert [daily(d, published) for d in days[1:]] == days[:-1]
    # an unpublished refresh leaves the previous one live; nothing before the first: None
    assert refreshed_every(days, 3)("2026-01-12", [d for d in days if d != "2026-01-11"]) == (
        "2026-01-08"
    )
    assert weekly("2026-01-05", published) is None

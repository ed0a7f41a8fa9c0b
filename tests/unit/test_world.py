"""The simulated ads world: determinism, churn, drift, verticals, counters, calendar, shock."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from exfm.config import Config, load_config
from exfm.data.impressions import summarize
from exfm.data.schema import FeatureSpec
from exfm.data.world import COUNTER_DECAY, World, generate
from exfm.errors import ConfigError
from exfm.lake import IMPRESSIONS, Lake
from tests.conftest import REPO, SMALL_WORLD


def _world(*overrides: str) -> World:
    cfg = load_config(REPO / "params.yaml", [*SMALL_WORLD, *overrides])
    return World(cfg.world, FeatureSpec.from_config(cfg.features))


def _ctr_by_vertical(table: pa.Table) -> dict[str, tuple[int, int, float]]:
    """vertical -> (rows, clicks, sum of true_ctr)."""
    g = table.group_by("vertical").aggregate(
        [("label", "count"), ("label", "sum"), ("true_ctr", "sum")]
    )
    return {v: (n, c, s) for v, n, c, s in zip(*g.to_pydict().values(), strict=True)}


def test_same_seed_gives_identical_days_and_another_seed_does_not() -> None:
    a, b, c = _world(), _world(), _world("world.seed=7")
    for _ in range(2):
        ta, _ = a.step()
        tb, _ = b.step()
        tc, _ = c.step()
        assert ta.equals(tb)
        assert not ta.equals(tc)


def test_churn_rates_match_params() -> None:
    world = _world(
        "world.n_users=20000",
        "world.n_ads=3000",
        "world.user_leave_rate=0.05",
        "world.user_arrival_rate=0.04",
        "world.ad_leave_rate=0.1",
        "world.ad_arrival_rate=0.12",
    )
    world.step()
    for _ in range(4):
        before_u, before_a = world.users.active.copy(), world.ads.active.copy()
        _, stats = world.step()
        for pop, before, leave, arrive, joined in (
            (world.users, before_u, 0.05, 0.04, stats.users_joined),
            (world.ads, before_a, 0.1, 0.12, stats.ads_joined),
        ):
            n = int(before.sum())
            left = int((before & ~pop.active[: len(before)]).sum())
            assert abs(left / n - leave) < 4 * math.sqrt(leave * (1 - leave) / n)
            new = len(pop.active) - len(before)
            assert new == joined
            assert abs(new - arrive * n) < 4 * math.sqrt(arrive * n)
        assert stats.active_users == world.users.n_active


def test_newcomers_appear_in_the_traffic_with_empty_history() -> None:
    world = _world()
    world.step()
    first_user_id = len(world.users.active)  # ids from here on join in the next step
    table, stats = world.step()
    assert stats.users_joined > 0
    new = table.filter(pc.greater_equal(table.column("user_id"), first_user_id))
    assert new.num_rows > 0
    assert pc.max(new.column("user_log_views")).as_py() == 0.0


def test_verticals_have_different_ctrs_near_their_base_ctr() -> None:
    world = _world("world.impressions_per_day=40000")
    table, _ = world.step()
    cfg = world.cfg
    stats = _ctr_by_vertical(table)
    rates = {v: c / n for v, (n, c, _) in stats.items()}
    for vertical, (n, _, true_sum) in stats.items():
        assert true_sum / n == pytest.approx(cfg.verticals[vertical].base_ctr, rel=0.2)
    # chi-square test of homogeneity of CTR across verticals
    total_n = sum(n for n, _, _ in stats.values())
    pooled = sum(c for _, c, _ in stats.values()) / total_n
    chi2 = sum((c - n * pooled) ** 2 / (n * pooled * (1 - pooled)) for n, c, _ in stats.values())
    assert chi2 > 50  # df = 3: p < 1e-10
    assert rates["search"] > rates["feed"] > rates["stories"] > rates["video"]


def test_labels_agree_with_true_ctr_within_three_sigma() -> None:
    world = _world("world.impressions_per_day=20000")
    tables = [world.step()[0] for _ in range(3)]
    table = pa.concat_tables(tables)
    p = table.column("true_ctr").to_numpy().astype(np.float64)
    y = table.column("label").to_numpy()
    assert abs(y.mean() - p.mean()) <= 3 * math.sqrt((p * (1 - p)).sum()) / len(p)
    for vertical in world.verticals:
        mask = pc.equal(table.column("vertical"), vertical).to_numpy(zero_copy_only=False)
        pv, yv = p[mask], y[mask]
        assert abs(yv.mean() - pv.mean()) <= 3 * math.sqrt((pv * (1 - pv)).sum()) / len(pv)


def test_features_a_vertical_lacks_are_null_there() -> None:
    table, _ = _world().step()
    for vertical, feature in (
        ("search", "device_type"),
        ("stories", "context_id"),
        ("video", "context_id"),
        ("video", "ad_log_views"),
    ):
        rows = table.filter(pc.equal(table.column("vertical"), vertical))
        assert rows.column(feature).null_count == rows.num_rows
    feed = table.filter(pc.equal(table.column("vertical"), "feed"))
    assert feed.column("context_id").null_count == 0


def test_counters_hold_only_previous_days_clicks() -> None:
    """A row's counters are the decayed views and clicks of the days before it, recomputed here
    from the rows themselves; the warm-up gives the first written day a history already."""
    world = _world()
    prior, g = world.cfg.counter_prior_views, world.global_ctr
    views, clicks = world.users.views.copy(), world.users.clicks.copy()
    assert views.sum() > 0  # the warm-up days left a history
    for _ in range(2):
        day, _ = world.step()
        uid = day.column("user_id").to_numpy()
        n = len(world.users.views)  # today's newcomers have no history yet
        views, clicks = np.pad(views, (0, n - len(views))), np.pad(clicks, (0, n - len(clicks)))
        v, c = views[uid], clicks[uid]
        np.testing.assert_allclose(
            day.column("user_ctr_hist").to_numpy(), (c + prior * g) / (v + prior), rtol=1e-5
        )
        np.testing.assert_allclose(day.column("user_log_views").to_numpy(), np.log1p(v), rtol=1e-5)
        # tomorrow's history: today's rows added, then one day of decay
        views = (views + np.bincount(uid, minlength=len(views))) * COUNTER_DECAY
        clicks = (
            clicks + np.bincount(uid, weights=day.column("label").to_numpy(), minlength=len(clicks))
        ) * COUNTER_DECAY


def test_latent_factors_drift_at_the_configured_rate() -> None:
    world = _world("world.latent_drift=0.2", "world.user_leave_rate=0")
    start = world.users.latent.copy()
    steps = 5
    for _ in range(steps + 1):  # day 0 does not drift
        world.step()
    now = world.users.latent[: len(start)]
    cos = (start * now).sum(1) / np.linalg.norm(start, axis=1) / np.linalg.norm(now, axis=1)
    assert cos.mean() == pytest.approx(math.sqrt(1 - 0.2**2) ** steps, abs=0.03)


def test_popularity_is_heavy_tailed() -> None:
    table, _ = _world("world.impressions_per_day=40000").step()
    counts = np.sort(np.bincount(table.column("user_id").to_numpy()))[::-1]
    counts = counts[counts > 0]
    top = counts[: max(1, len(counts) // 100)].sum() / counts.sum()
    assert top > 0.03  # the busiest 1% of users see well over 1% of the ads
    ads = np.sort(np.bincount(table.column("ad_id").to_numpy()))[::-1]
    assert ads[: len(ads) // 10].sum() / ads.sum() > 0.25


def test_weekly_rhythm_in_traffic() -> None:
    world = _world("world.weekly_traffic_amplitude=0.3")
    rows = {}
    for _ in range(7):
        _, stats = world.step()
        rows[stats.ds] = sum(stats.rows.values())
    weekend = [rows["2026-01-10"], rows["2026-01-11"]]  # start_ds 2026-01-05 is a Monday
    weekdays = [n for ds, n in rows.items() if ds not in ("2026-01-10", "2026-01-11")]
    assert min(weekend) > max(weekdays)


def test_shock_changes_the_world_from_its_day_on() -> None:
    calm, shocked = _world(), _world("world.shock_ds=2026-01-07", "world.shock_ctr_shift=-0.5")
    for day in range(4):
        a, _ = calm.step()
        b, _ = shocked.step()
        if day < 2:
            assert a.equals(b)
        else:
            ratio = pc.mean(b.column("true_ctr")).as_py() / pc.mean(a.column("true_ctr")).as_py()
            assert ratio < 0.8


def test_world_rejects_features_it_cannot_produce() -> None:
    cfg = load_config(REPO / "params.yaml", ["features.features.query_len.kind=dense"])
    with pytest.raises(ConfigError, match="cannot produce a dense feature"):
        World(cfg.world, FeatureSpec.from_config(cfg.features))
    cfg = load_config(
        REPO / "params.yaml",
        [
            "features.features.hour.kind=categorical",
            "features.features.hour.hash_buckets=24",
            "checks.dense_ranges={position: [1.0, 50.0]}",
        ],
    )
    with pytest.raises(ConfigError, match="features.features.hour"):
        World(cfg.world, FeatureSpec.from_config(cfg.features))


def test_generate_writes_every_day_and_vertical_and_is_idempotent(
    small_cfg: Config, lake: Lake
) -> None:
    stats = generate(small_cfg, lake)
    assert [s.ds for s in stats] == ["2026-01-05", "2026-01-06", "2026-01-07"]
    assert len(lake.partitions(IMPRESSIONS)) == 3 * 4
    first = lake.read(IMPRESSIONS).sort_by("example_id")
    assert first.num_rows == sum(sum(s.rows.values()) for s in stats)
    generate(small_cfg, lake)
    again = lake.read(IMPRESSIONS).sort_by("example_id")
    assert again.equals(first)
    summary = summarize(lake)
    assert summary.num_rows == 12
    assert summary.column("rows").to_pylist() == [
        stats[i].rows[v] for i in range(3) for v in sorted(stats[i].rows)
    ]


def test_a_later_start_replays_history_to_the_same_day(small_cfg: Config, tmp_path) -> None:
    full = Lake(str(tmp_path / "full"))
    generate(small_cfg, full)
    single = Lake(str(tmp_path / "single"))
    generate(small_cfg, single, days=1, start_ds="2026-01-07")
    assert single.partitions(IMPRESSIONS) == full.partitions(IMPRESSIONS, ds="2026-01-07")
    assert single.read(IMPRESSIONS).equals(full.read(IMPRESSIONS, ds="2026-01-07"))
    with pytest.raises(ConfigError, match="before world.start_ds"):
        generate(small_cfg, single, days=1, start_ds="2026-01-01")

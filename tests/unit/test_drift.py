"""Drift statistics against hand-computed values on tiny tables in a real lake; the grid KS and
shift against their exact values (numpy) within the bounds they record; each statistic computed
once per distinct rows; Great Expectations left out of the drift statistics."""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from data_checks.drift import (
    ALL,
    Drift,
    js_divergence,
    label_shift,
    psi,
    reference_window,
    shares,
)
from data_checks.gate import drift_checks
from data_checks.records import DayChecks
from exfm.config import Config, load_config, replace
from exfm.config_schema import FeatureConfig, FeaturesConfig
from exfm.data.schema import FeatureSpec
from exfm.lake import IMPRESSIONS, Lake
from tests.conftest import REPO


def test_smoothed_shares_psi_and_js_by_hand() -> None:
    ref, cur = np.array([10, 30]), np.array([20, 20])
    # (count + 0.5) / (n + 0.5 * bins): p = [10.5, 30.5] / 41, q = [20.5, 20.5] / 41
    p, q = [10.5 / 41, 30.5 / 41], [20.5 / 41, 20.5 / 41]
    assert shares(ref).tolist() == pytest.approx(p)
    expected_psi = (q[0] - p[0]) * math.log(q[0] / p[0]) + (q[1] - p[1]) * math.log(q[1] / p[1])
    assert psi(ref, cur) == pytest.approx(expected_psi)  # = 0.2035...
    m = [(p[0] + q[0]) / 2, (p[1] + q[1]) / 2]
    kl_pm = p[0] * math.log(p[0] / m[0]) + p[1] * math.log(p[1] / m[1])
    kl_qm = q[0] * math.log(q[0] / m[0]) + q[1] * math.log(q[1] / m[1])
    assert js_divergence(ref, cur) == pytest.approx((kl_pm + kl_qm) / 2 / math.log(2))
    assert psi(ref, ref) == 0.0 and js_divergence(ref, ref) == 0.0


def test_label_shift_by_hand() -> None:
    got = label_shift(1000, 20, 1000, 10)
    pooled = 30 / 2000
    se = math.sqrt(pooled * (1 - pooled) * (2 / 1000))
    assert got["shift"] == pytest.approx(-0.5)
    assert got["z"] == pytest.approx((0.01 - 0.02) / se)
    assert label_shift(0, 0, 10, 1)["shift"] is None


@pytest.fixture
def tiny(tmp_path: Path) -> tuple[Lake, FeatureSpec, object]:
    """Two reference days and today, feed only, hand-made values."""
    cfg = load_config(
        REPO / "params.yaml",
        [f"lake.root={tmp_path / 'lake'}", "checks.dense_bins=2", "checks.top_k=2"],
    )
    lake = Lake.from_config(cfg.lake)
    days = {
        "2026-01-05": {"hour": [1.0, 2.0], "user_id": [1, 2], "label": [0, 1]},
        "2026-01-06": {"hour": [3.0, 4.0], "user_id": [3, 1], "label": [0, 0]},
        "2026-01-07": {
            "hour": [3.0, 4.0, 5.0, 6.0],
            "user_id": [1, 4, 4, 5],
            "label": [1, 0, 0, 0],
        },
    }
    for ds, cols in days.items():
        n = len(cols["label"])
        lake.write_partition(
            IMPRESSIONS,
            {"ds": ds, "vertical": "feed"},
            pa.table(
                {
                    "example_id": pa.array(range(n), pa.int64()),
                    "label": pa.array(cols["label"], pa.int8()),
                    "hour": pa.array(cols["hour"], pa.float32()),
                    "user_id": pa.array(cols["user_id"], pa.int64()),
                }
            ),
        )
    return lake, FeatureSpec.from_config(cfg.features), cfg


def test_window_ks_churn_and_bins_by_hand(tiny) -> None:
    lake, spec, cfg = tiny
    window = reference_window(lake, "2026-01-07", 7)
    assert window == ["2026-01-05", "2026-01-06"]
    drift = Drift(lake, spec, cfg.checks, "2026-01-07", window)
    try:
        # reference hours {1,2,3,4}, today {3,4,5,6}: the CDFs differ most at 2 (0.5 vs 0)
        assert drift.ks("hour", "feed") == pytest.approx(0.5)
        assert drift.ks("hour", "all") == pytest.approx(0.5)
        # ids seen in the window {1,2,3}; today 1,4,4,5: three of four rows are unseen
        assert drift.churn("user_id", "feed") == pytest.approx(0.75)
        # median of the reference hours is 2.5: bins (-inf, 2.5), [2.5, inf), missing
        names, ref_c, cur_c = drift.dense_bins("hour", "all")
        assert names == ["[-inf, 2.5)", "[2.5, inf)", "missing"]
        assert ref_c.tolist() == [2, 2, 0] and cur_c.tolist() == [0, 4, 0]
        # top-2 reference users: 1 (twice), then 2 (tie with 3, smaller id first)
        labels, ref_c, cur_c = drift.categorical_bins("user_id", "all")
        assert labels == ["1", "2", "other", "missing"]
        assert ref_c.tolist() == [2, 1, 1, 0] and cur_c.tolist() == [1, 0, 3, 0]
        shift = drift.label_shift("feed")
        assert shift["ctr"] == 0.25 and shift["ref_ctr"] == 0.25 and shift["shift"] == 0.0
        assert drift.rows("feed") == (4, 2.0)
    finally:
        drift.close()


def test_shift_by_hand(tiny) -> None:
    """Today's hours are the reference's moved by 2: Wasserstein-1 is 2, in reference standard
    deviations 2 / sd{1, 2, 3, 4}; every reference value is a grid point, so KS is exact."""
    lake, spec, cfg = tiny
    drift = Drift(lake, spec, cfg.checks, "2026-01-07", ["2026-01-05", "2026-01-06"])
    try:
        cdfs = drift.grid("hour", "feed")
        assert cdfs is not None and cdfs.points.tolist() == [1.0, 2.0, 3.0, 4.0]
        assert cdfs.wasserstein() == pytest.approx(2.0)
        assert drift.shift("hour", "feed") == pytest.approx(2.0 / math.sqrt(1.25))
        assert cdfs.ks_bound() == 0.0
    finally:
        drift.close()


def _exact(ref: np.ndarray, cur: np.ndarray) -> tuple[float, float]:
    """(KS, Wasserstein-1) of two samples over every observed value, with numpy alone."""
    ref, cur = np.sort(ref), np.sort(cur)
    values = np.unique(np.concatenate([ref, cur]))
    gap = np.abs(
        np.searchsorted(ref, values, "right") / len(ref)
        - np.searchsorted(cur, values, "right") / len(cur)
    )
    return float(gap.max()), float(np.sum(gap[:-1] * np.diff(values)))


def _hours(lake: Lake, days: dict[str, dict[str, np.ndarray]]) -> None:
    """Write `hour` values per day and vertical, with the columns a drift of `hour` reads, a
    categorical user_id and an all-null ad_ctr_hist."""
    for ds, verticals in days.items():
        for vertical, values in verticals.items():
            n = len(values)
            lake.write_partition(
                IMPRESSIONS,
                {"ds": ds, "vertical": vertical},
                pa.table(
                    {
                        "example_id": pa.array(range(n), pa.int64()),
                        "label": pa.array(np.arange(n) % 50 == 0, pa.bool_()).cast(pa.int8()),
                        "hour": pa.array(values.astype(np.float32)),
                        "user_id": pa.array(np.arange(n) % 7, pa.int64()),
                        "ad_ctr_hist": pa.nulls(n, pa.float32()),
                    }
                ),
            )


def _samples(case: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    if case == "continuous":
        return rng.normal(0, 1, 6000), rng.normal(0.1, 1.2, 5000)
    if case == "ties":  # 30 distinct values: every one a grid point at 1000
        return rng.integers(0, 30, 6000).astype(float), rng.integers(2, 33, 5000).astype(float)
    if case == "point mass":
        # half the reference sits on 1; today's half sits just below it instead. Only the CDFs'
        # left limits at 1 see the gap (0.5): at or above 1 both CDFs are 1
        return (
            np.concatenate([rng.uniform(0, 0.5, 3000), np.ones(3000)]),
            np.concatenate([rng.uniform(0, 0.5, 2500), rng.uniform(0.9, 1.0, 2500)]),
        )
    # today mostly beyond the reference's range
    return rng.uniform(0, 1, 6000), rng.uniform(0.5, 2, 5000)


@pytest.mark.parametrize("grid", [10, 1000])
@pytest.mark.parametrize("case", ["continuous", "ties", "point mass", "outside the reference"])
def test_grid_ks_is_at_most_its_bound_below_the_exact_ks(
    tmp_path: Path, case: str, grid: int
) -> None:
    ref, cur = (x.astype(np.float32) for x in _samples(case))
    cfg = load_config(
        REPO / "params.yaml", [f"lake.root={tmp_path / 'lake'}", f"checks.ks_grid={grid}"]
    )
    lake = Lake.from_config(cfg.lake)
    _hours(lake, {"2026-01-05": {"feed": ref}, "2026-01-06": {"feed": cur}})
    drift = Drift(
        lake, FeatureSpec.from_config(cfg.features), cfg.checks, "2026-01-06", ["2026-01-05"]
    )
    try:
        cdfs = drift.grid("hour", "feed")
    finally:
        drift.close()
    assert cdfs is not None
    exact_ks, exact_w1 = _exact(ref.astype(np.float64), cur.astype(np.float64))
    tiny = 1e-9
    assert exact_ks - 1 / grid - tiny <= cdfs.ks() <= exact_ks + tiny
    # the recorded bound: the largest reference share strictly between neighbouring grid points
    assert cdfs.ks_bound() <= 1 / grid + tiny
    assert exact_ks - cdfs.ks_bound() - tiny <= cdfs.ks()
    assert abs(cdfs.wasserstein() - exact_w1) <= cdfs.wasserstein_bound() + 1e-6
    if case == "point mass":
        assert cdfs.ks() >= 0.5 - 1 / grid
    if case == "ties" and grid == 1000:
        assert cdfs.ks() == pytest.approx(exact_ks) and cdfs.ks_bound() == 0.0


@pytest.mark.parametrize(
    ("name", "move", "expected"),
    [
        ("0.25-sd mean shift", lambda x: x + 0.25, 0.25),
        # W1 of a scale change by s about the median: |s - 1| E|X - median| = 0.5 sqrt(2 / pi)
        ("scale x1.5", lambda x: 1.5 * x, 0.5 * math.sqrt(2 / math.pi)),
        ("unchanged", lambda x: x, 0.0),
    ],
)
def test_shift_reads_in_reference_standard_deviations(
    tmp_path: Path, name: str, move: Callable[[np.ndarray], np.ndarray], expected: float
) -> None:
    """The scale-free statistic: a normal feature of any scale moved by a quarter of its
    standard deviation reads 0.25, whatever its units."""
    rng = np.random.default_rng(5)
    cfg = load_config(REPO / "params.yaml", [f"lake.root={tmp_path / 'lake'}"])
    lake = Lake.from_config(cfg.lake)
    ref, cur = rng.normal(0, 1, 40_000), move(rng.normal(0, 1, 40_000))
    _hours(
        lake, {"2026-01-05": {"feed": 1000 + 300 * ref}, "2026-01-06": {"feed": 1000 + 300 * cur}}
    )
    drift = Drift(
        lake, FeatureSpec.from_config(cfg.features), cfg.checks, "2026-01-06", ["2026-01-05"]
    )
    try:
        assert drift.shift("hour", "feed") == pytest.approx(expected, abs=0.02), name
    finally:
        drift.close()


@pytest.mark.parametrize(("today", "ks", "shift"), [(5.0, 0.0, 0.0), (6.0, 1.0, 2.0)])
def test_a_constant_reference_is_scaled_by_the_pooled_sd(
    tmp_path: Path, today: float, ks: float, shift: float
) -> None:
    """Every reference value 5: no standard deviation to scale by. Today at 5 has not moved;
    today at 6 moved by 1, and the pooled sd of the two constants is 0.5."""
    cfg = load_config(REPO / "params.yaml", [f"lake.root={tmp_path / 'lake'}"])
    lake = Lake.from_config(cfg.lake)
    _hours(
        lake,
        {"2026-01-05": {"feed": np.full(100, 5.0)}, "2026-01-06": {"feed": np.full(100, today)}},
    )
    drift = Drift(
        lake, FeatureSpec.from_config(cfg.features), cfg.checks, "2026-01-06", ["2026-01-05"]
    )
    try:
        assert drift.ks("hour", ALL) == ks and drift.shift("hour", ALL) == pytest.approx(shift)
        assert drift.grid("ad_ctr_hist", ALL) is None  # no value on either side
    finally:
        drift.close()


def _spec() -> FeatureSpec:
    return FeatureSpec.from_config(
        FeaturesConfig(
            verticals=("feed", "video"),
            features={
                "hour": FeatureConfig(kind="dense"),
                "user_id": FeatureConfig(kind="categorical", hash_buckets=16),
            },
        )
    )


def _queries(lake: Lake, cfg: Config, scopes: list[str]) -> tuple[int, DayChecks]:
    """The SQL queries computing the drift checks of 2026-01-06 over `scopes` (less the lookup
    of each side's verticals), and their results."""
    drift = Drift(lake, _spec(), cfg.checks, "2026-01-06", ["2026-01-05"])
    calls: list[str] = []
    run = drift._rows

    def counted(sql: str, params: list) -> list[tuple]:
        if not sql.startswith("SELECT DISTINCT vertical"):
            calls.append(sql)
        return run(sql, params)

    drift._rows = counted  # type: ignore[method-assign]
    result = DayChecks("2026-01-06", ["2026-01-05"], [], inputs={})
    try:
        drift_checks(drift, _spec(), cfg, scopes, result)
    finally:
        drift.close()
    return len(calls), result


def test_each_statistic_is_computed_once_per_distinct_rows(tmp_path: Path) -> None:
    """One vertical on both sides: its rows are all the rows, and "all" reuses its statistics
    (both still recorded); with a second vertical they are other rows, computed apart."""
    cfg = load_config(REPO / "params.yaml", [f"lake.root={tmp_path / 'lake'}"])
    cfg = replace(cfg, checks=replace(cfg.checks, id_features=("user_id",)))
    lake = Lake.from_config(cfg.lake)
    rng = np.random.default_rng(3)
    _hours(lake, {ds: {"feed": rng.normal(12, 3, 500)} for ds in ("2026-01-05", "2026-01-06")})
    alone, _ = _queries(lake, cfg, [ALL])
    both, result = _queries(lake, cfg, ["feed", ALL])
    assert both == alone
    values = {(r.check, r.scope, r.feature): r.value for r in result}
    checks = {(check, feature) for check, _, feature in values}
    assert {c for c, _ in checks} == {"label_shift", "psi", "js", "ks", "shift", "churn"}
    for check, feature in checks:
        assert values[check, "feed", feature] == values[check, ALL, feature]

    _hours(lake, {"2026-01-06": {"video": rng.normal(12, 3, 200)}})
    apart, _ = _queries(lake, cfg, ["feed", "video", ALL])
    assert apart > 2 * alone


def test_the_drift_statistics_do_not_import_great_expectations(tmp_path: Path) -> None:
    """Great Expectations loads only where the suite runs (SuiteRunner): the gate's and the
    report's modules and the drift statistics alone leave it out."""
    script = f"""
import sys
import numpy as np
from data_checks import gate, report  # noqa: F401
from data_checks.drift import ALL, Drift
from data_checks.records import DayChecks
from exfm.config import load_config
from exfm.data.schema import FeatureSpec
from exfm.lake import Lake
from tests.unit.test_drift import _hours

cfg = load_config("params.yaml", ["lake.root={tmp_path / "lake"}", "checks.id_features=[]"])
lake = Lake.from_config(cfg.lake)
_hours(lake, {{d: {{"feed": np.arange(100.0)}} for d in ("2026-01-05", "2026-01-06")}})
drift = Drift(lake, FeatureSpec.from_config(cfg.features), cfg.checks, "2026-01-06", ["2026-01-05"])
print(drift.ks("hour", ALL), drift.shift("hour", ALL), drift.categorical_bins("user_id", ALL)[0])
print(sorted(m for m in sys.modules if m.split(".")[0] == "great_expectations"))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    stats, modules = done.stdout.strip().splitlines()
    assert stats.startswith("0.0 0.0 [")
    assert modules == "[]"

"""Drift statistics against hand-computed values on tiny tables in a real lake."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from data_checks.drift import Drift, js_divergence, label_shift, psi, reference_window, shares
from exfm.config import load_config
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

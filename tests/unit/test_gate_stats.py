"""The rows and CTR bands of the gate (data_checks/suite.py Bands): the ratio band widened to
the sampling interval of the count at checks.confidence."""

from __future__ import annotations

import numpy as np
import pytest

from data_checks.suite import Bands
from exfm.config_schema import ChecksConfig

DEFAULT = ChecksConfig()
PLAIN = ChecksConfig(confidence=0.0)


def _inside(bounds: tuple[float, float], x: float) -> bool:
    return bounds[0] <= x <= bounds[1]


def test_large_counts_keep_the_ratio_bands() -> None:
    """At the default world's size the ratio bands are wider than the interval and decide."""
    big = Bands(days=7, rows=7 * 200_000, clicks=7 * 4_000)
    assert big.row_bounds(DEFAULT) == big.row_bounds(PLAIN) == (100_000, 400_001)
    assert big.ctr_bounds(200_000, DEFAULT) == pytest.approx((0.01, 0.04))


def test_small_counts_widen_to_the_sampling_interval() -> None:
    """2,000 rows at a CTR of 0.8%: 16 clicks expected; 7 (0.35%) happens by chance."""
    small = Bands(days=7, rows=14_000, clicks=112)
    assert not _inside(small.ctr_bounds(2000, PLAIN), 7 / 2000)
    assert _inside(small.ctr_bounds(2000, DEFAULT), 7 / 2000)
    lo, hi = small.ctr_bounds(2000, DEFAULT)
    assert not _inside((lo, hi), 0.0) and not _inside((lo, hi), 60 / 2000)
    # exact counts sit half a count inside the bounds, never on them
    assert lo * 2000 % 1 == pytest.approx(0.5) and hi * 2000 % 1 == pytest.approx(0.5)


def test_a_rare_vertical_may_miss_a_day() -> None:
    """3 rows over a week: a day without rows is within the Poisson interval."""
    rare = Bands(days=7, rows=3, clicks=0)
    assert rare.row_bounds(DEFAULT)[0] == 0 < rare.row_bounds(PLAIN)[1]
    assert rare.ctr_bounds(10, DEFAULT) is None  # no clicks in the window: no CTR band
    assert Bands().row_bounds(DEFAULT) is None and Bands().ctr_bounds(100, DEFAULT) is None


@pytest.mark.parametrize(("rows", "ctr"), [(400, 0.008), (2000, 0.008), (2000, 0.035), (50, 0.2)])
def test_the_interval_covers_what_chance_draws(rows: int, ctr: float) -> None:
    """Days drawn from the reference's own rates fall outside the bands about as often as the
    confidence allows, no more (rows Poisson, clicks binomial; 3,000 simulated days each, at a
    90% interval so that a too-narrow one shows)."""
    rng = np.random.default_rng(7)
    cfg = ChecksConfig(confidence=0.9, rows_ratio=(1.0, 1.0), ctr_ratio=(1.0, 1.0))
    misses_rows = misses_ctr = 0
    for _ in range(60):  # reference windows of 7 days, 50 days each
        ref_rows = int(rng.poisson(rows * 7))
        bands = Bands(days=7, rows=ref_rows, clicks=int(rng.binomial(ref_rows, ctr)))
        days = rng.poisson(rows, 50)
        lo, hi = bands.row_bounds(cfg)
        misses_rows += int(((days < lo) | (days > hi)).sum())
        for n in days:
            bounds = bands.ctr_bounds(int(n), cfg)
            if bounds is not None:
                misses_ctr += not _inside(bounds, rng.binomial(n, ctr) / n)
    assert misses_rows / 3000 <= 0.12 and misses_ctr / 3000 <= 0.12, (misses_rows, misses_ctr)


def test_confidence_is_checked() -> None:
    from exfm.config import replace
    from exfm.errors import ConfigError

    with pytest.raises(ConfigError, match=r"confidence = 1.0 is out of range: allowed \[0, 1\)"):
        replace(DEFAULT, confidence=1.0)

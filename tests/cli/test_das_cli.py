"""`exfm das backfill` and `exfm das join` through the real command line on a world with an FM
published for each day: a range backfilled, a join with full coverage, and exit 2 naming the day
when no published FM predates it."""

from __future__ import annotations

import pytest

from exfm.config import Config
from exfm.lake import Lake
from tests.conftest import SMALL_WORLD, TINY_MODELS, run_exfm
from tests.unit.test_das import DAYS, LENIENT, das_cfg, fill

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, Lake]:
    cfg = das_cfg(str(tmp_path_factory.mktemp("das") / "lake"))
    return cfg, fill(cfg)


def test_cli(filled: tuple[Config, Lake]) -> None:
    cfg, _ = filled
    sets = [
        a
        for o in [*SMALL_WORLD, *TINY_MODELS, *LENIENT, f"lake.root={cfg.lake.root}"]
        for a in ("--set", o)
    ]
    result = run_exfm("das", "backfill", "--start", DAYS[1], "--end", DAYS[2], *sets)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count('"fm_version"') == 2
    joined = run_exfm("das", "join", "--ds", DAYS[2], "--vertical", "video", *sets)
    assert joined.returncode == 0 and '"coverage": 1.0' in joined.stdout
    bad = run_exfm("das", "backfill", "--ds", DAYS[0], *sets)
    assert bad.returncode == 2 and "no published FM trained on 2026-01-04" in bad.stderr

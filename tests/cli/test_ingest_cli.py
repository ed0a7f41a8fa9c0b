"""`exfm ingest` through the real command line: the Open Bandit Dataset sample (configs/obd.yaml)
exits 0 printing the row count and the summary, and bad input exits 2 naming the file and the
value, with nothing written to the lake."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, run_exfm
from tests.unit.test_ingest import FULL, bad_cfg, row

pytestmark = pytest.mark.slow


def test_cli_ingest_of_obd_exits_0_and_prints_the_count_and_summary(tmp_path: Path) -> None:
    result = run_exfm(
        "ingest",
        "--params",
        "configs/obd.yaml",
        "--set",
        f"lake.root={tmp_path / 'lake'}",
        "--set",
        f"lake.catalog={tmp_path / 'c.duckdb'}",
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    assert "ingested 30000 rows into 21 partitions" in result.stdout
    assert "2019-11-30  women" in result.stdout
    assert "(21 rows)" in result.stdout
    assert (tmp_path / "lake" / "impressions" / "ds=2019-11-24" / "vertical=men").is_dir()

    # real data with few clicks: every day passes the gate's default bands (they widen to the
    # sampling interval of ~10 clicks), where the ratio bands alone fail a day on chance
    lake = [
        "--set",
        f"lake.root={tmp_path / 'lake'}",
        "--set",
        f"lake.catalog={tmp_path / 'c.duckdb'}",
    ]
    check = ["check", "--params", "configs/obd.yaml", *lake]
    week = run_exfm(*check, "--start", "2019-11-24", "--end", "2019-11-30", cwd=REPO)
    assert week.returncode == 0, week.stderr
    plain = run_exfm(*check, "--ds", "2019-11-25", "--set", "checks.confidence=0", cwd=REPO)
    assert plain.returncode == 2, plain.stderr
    assert "expect_column_mean_to_be_between [men/label]" in plain.stderr


@pytest.mark.parametrize(
    ("rows", "message"),
    [([row(click="2")], "'click', row 1: bad value 2"), ([row(price="n/a!")], "'n/a!'")],
    ids=["label-2", "text-in-dense"],
)
def test_cli_ingest_of_bad_input_exits_2_with_the_error(tmp_path: Path, rows, message) -> None:
    cfg = bad_cfg(tmp_path, FULL, rows)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(cfg.to_dict()))
    result = run_exfm("ingest", "--params", str(params), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "exfm: error:" in result.stderr and "bad.csv" in result.stderr
    assert message in result.stderr
    assert not (tmp_path / "lake" / "impressions").exists()

"""The config through the real command line: `--set` and `--params` reach every command, bad
overrides and missing files exit 2 with the key or the path named, and `exfm config keys`
documents every key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import run_exfm

pytestmark = pytest.mark.slow


def test_cli_set_and_params_reach_every_command(tmp_path: Path) -> None:
    shown = run_exfm("config", "show", "--set", "world.days=5")
    assert shown.returncode == 0, shown.stderr
    assert yaml.safe_load(shown.stdout)["world"]["days"] == 5

    bad = run_exfm("world", "generate", "--set", "world.bogus=1")
    assert bad.returncode == 2
    assert "unknown key world.bogus" in bad.stderr

    out_of_range = run_exfm("lake", "ls", "--set", "lake.s3_max_attempts=0")
    assert out_of_range.returncode == 2
    assert "lake.s3_max_attempts = 0 is out of range" in out_of_range.stderr

    missing = run_exfm("config", "show", "--params", str(tmp_path / "none.yaml"))
    assert missing.returncode == 2
    assert "none.yaml does not exist" in missing.stderr


def test_config_keys_documents_every_key() -> None:
    result = run_exfm("config", "keys")
    assert result.returncode == 0
    assert "world.user_leave_rate = 0.03    # users leaving a day / active users" in result.stdout
    assert "lake.root = 'data/lake'" in result.stdout

"""`exfm experiment` through the real command line: an experiment whose inputs are missing (an
earlier experiment's output, the OBD params file) or that does not exist exits 2 naming what is
missing and what to run."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_exfm

pytestmark = pytest.mark.slow


def test_cli_refuses_an_experiment_whose_inputs_are_missing(tmp_path: Path) -> None:
    sets = [
        "--set",
        f"experiment.dir={tmp_path / 'w'}",
        "--set",
        f"experiment.reports_dir={tmp_path / 'r'}",
    ]
    result = run_exfm("experiment", "ladder", "--quick", *sets)
    assert result.returncode == 2
    assert "tune.json" in result.stderr and "exfm experiment tune" in result.stderr
    result = run_exfm("experiment", "nope", *sets)
    assert result.returncode == 2 and "invalid choice" in result.stderr
    result = run_exfm("experiment", "obd", *sets, "--set", "experiment.obd_params=missing.yaml")
    assert result.returncode == 2 and "missing.yaml" in result.stderr

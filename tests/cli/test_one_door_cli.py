"""One door, in a fresh interpreter: importing the DAS loads none of the trainer's modules
(exfm.training, exfm.trainee, exfm.optim, exfm.losses), so it predicts without the trainer."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def test_the_das_predicts_without_the_trainer() -> None:
    probe = "import sys, exfm.das; print(sorted(m for m in sys.modules if m in ("
    probe += "'exfm.training', 'exfm.trainee', 'exfm.optim', 'exfm.losses')))"
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"

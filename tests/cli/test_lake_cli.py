"""The lake through the real command line: an S3 endpoint that does not answer makes `exfm lake ls`
exit 2 after bounded retries with one error line naming the endpoint, and no traceback."""

from __future__ import annotations

import pytest

from tests.conftest import run_exfm
from tests.unit.test_lake import _closed_port

pytestmark = pytest.mark.slow


def test_unreachable_s3_through_the_cli(s3_env: dict[str, str]) -> None:
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{_closed_port()}"}
    result = run_exfm(
        "lake",
        "ls",
        "--set",
        "lake.root=s3://nobody-home/x",
        "--set",
        "lake.s3_max_attempts=2",
        env=env,
        timeout=120,
    )
    assert result.returncode == 2
    assert "exfm: error: S3 endpoint http://127.0.0.1:" in result.stderr
    assert "Traceback" not in result.stderr

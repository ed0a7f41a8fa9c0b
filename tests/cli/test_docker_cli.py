"""`docker compose config` on the production stack's compose file with .env.example, where the
docker client here has the compose plugin (skipped otherwise: tests/unit/test_docker.py checks
the same file statically)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.unit.test_docker import DOCKER

pytestmark = pytest.mark.slow


def test_docker_compose_config_where_the_plugin_exists(tmp_path) -> None:
    docker = shutil.which("docker")
    probe = (
        subprocess.run([docker, "compose", "version"], capture_output=True, check=False)
        if (docker)
        else None
    )
    if probe is None or probe.returncode != 0:
        pytest.skip(
            "the docker client here has no compose plugin: the static checks of "
            "tests/unit/test_docker.py stand in for `docker compose config`"
        )
    env_file = tmp_path / ".env"
    env_file.write_text((DOCKER / ".env.example").read_text())
    result = subprocess.run(
        [
            docker,
            "compose",
            "-f",
            str(DOCKER / "docker-compose.yaml"),
            "--env-file",
            str(env_file),
            "config",
            "-q",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr

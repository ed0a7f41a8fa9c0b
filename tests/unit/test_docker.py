"""The production stack, checked statically (no Docker engine runs on these machines): the compose
file's services, images, executor, environment, volumes, healthchecks and ports; that every
variable it uses is documented in .env.example and no secret is written in it; the Dockerfile; and
the stack's params file. `docker compose config`, where the client has the plugin, is in
tests/cli/test_docker_cli.py."""

from __future__ import annotations

import re

import pytest
import yaml

from exfm.config import load_config
from tests.conftest import REPO

DOCKER = REPO / "docker"
AIRFLOW = {
    "airflow-init",
    "api-server",
    "scheduler",
    "dag-processor",
    "triggerer",
    "worker",
    "worker-torch",
}
LONG_RUNNING = {"postgres", "redis", "minio"} | AIRFLOW - {"airflow-init"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DOCKER / "docker-compose.yaml").read_text())


def test_services_images_and_executor(compose: dict) -> None:
    services = compose["services"]
    assert set(services) == {"postgres", "redis", "minio", "minio-init"} | AIRFLOW
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["redis"]["image"].startswith("redis:")
    assert services["minio"]["image"].startswith("minio/minio:")
    for name in AIRFLOW:
        svc = services[name]
        assert svc["image"] == "exfm:latest" and svc["build"]["dockerfile"] == "docker/Dockerfile"
        env = svc["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert "@postgres:5432/" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
        assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://redis:6379")
        assert env["AWS_ENDPOINT_URL"] == "http://minio:9000"
        assert env["EXFM_PARAMS"] == "/opt/exfm/docker/params.docker.yaml"
        mounts = {v.split(":")[1]: v for v in svc["volumes"]}
        assert mounts["/opt/exfm/dags"].endswith(":ro")
        assert mounts["/opt/exfm/docker/params.docker.yaml"].endswith(":ro")
    assert "--queues" in services["worker-torch"]["command"]
    assert (
        services["worker-torch"]["command"][
            services["worker-torch"]["command"].index("--queues") + 1
        ]
        == "torch"
    )


def test_healthchecks_and_start_order(compose: dict) -> None:
    services = compose["services"]
    for name in LONG_RUNNING:
        assert services[name]["healthcheck"]["test"], name
    for name in AIRFLOW - {"airflow-init"}:
        needs = services[name]["depends_on"]
        assert needs["postgres"]["condition"] == "service_healthy"
        assert needs["redis"]["condition"] == "service_healthy"
        assert needs["minio-init"]["condition"] == "service_completed_successfully"
        assert needs["airflow-init"]["condition"] == "service_completed_successfully"
    assert services["minio-init"]["depends_on"]["minio"]["condition"] == "service_healthy"
    assert "mc mb" in " ".join(services["minio-init"]["command"])
    assert "airflow db migrate" in " ".join(services["airflow-init"]["command"])


def test_ports_are_local_and_secrets_come_from_the_environment(compose: dict) -> None:
    for svc in compose["services"].values():
        for port in svc.get("ports", []):
            assert port.startswith("127.0.0.1:"), port
    text = (DOCKER / "docker-compose.yaml").read_text()
    used = set(re.findall(r"\$\{([A-Z_]+)\}", text))
    documented = {
        line.split("=")[0]
        for line in (DOCKER / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert used <= documented, used - documented
    for svc in compose["services"].values():
        env = svc.get("environment") or {}
        for key, value in env.items():
            if re.search(r"PASSWORD|SECRET|FERNET|ACCESS_KEY", key):
                assert str(value).startswith("${"), (key, value)


def test_dockerfile_installs_from_the_lock_as_a_non_root_user() -> None:
    text = (DOCKER / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim$", text, re.M)
    assert "torch==2.13.0" in text and "-c constraints.txt" in text
    users = re.findall(r"^USER (\S+)$", text, re.M)
    assert users and users[-1] not in ("root", "0")
    for source in re.findall(r"^COPY (.+) \S+$", text, re.M):
        for path in source.split():
            assert (REPO / path).exists(), path


def test_the_stacks_params_put_the_lake_on_s3() -> None:
    cfg = load_config(DOCKER / "params.docker.yaml")
    assert cfg.lake.root.startswith("s3://")
    assert cfg.airflow.torch_queue == "torch"
    bucket = cfg.lake.root.removeprefix("s3://").split("/")[0]
    env = dict(
        line.split("=", 1)
        for line in (DOCKER / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert env["EXFM_BUCKET"] == bucket

"""Shared fixtures: a small config, a lake in a temp folder, a real S3 endpoint (moto's server over
HTTP on 127.0.0.1), and a helper that runs the real `exfm` command in a subprocess; every test that
uses the S3 endpoint is marked `s3`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from exfm.config import Config, load_config
from exfm.data.schema import FeatureSpec
from exfm.lake import Lake

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

# A world small enough for unit tests (a few thousand rows a day) that keeps every mechanism on.
SMALL_WORLD = [
    "world.days=3",
    "world.impressions_per_day=4000",
    "world.n_users=2000",
    "world.n_ads=300",
    "world.n_advertisers=40",
    "world.n_contexts=100",
]


# Models small enough for unit tests (the defaults are measured in benchmarks/bench_train.py).
TINY_MODELS = [
    "fm.embedding_dim=8",
    "fm.vertical_dim=4",
    "fm.cross_layers=1",
    "fm.deep_layers=[32, 16]",
    "vm.embedding_dim=4",
    "vm.hidden=[16, 8]",
    "vm.aux_hidden=4",
    "vm.max_hash_buckets=512",
    "features.features.user_id.hash_buckets=4096",
    "features.features.ad_id.hash_buckets=1024",
    "features.features.context_id.hash_buckets=1024",
]


@pytest.fixture
def tiny_cfg(tmp_path: Path) -> Config:
    return load_config(
        REPO / "params.yaml",
        [
            *SMALL_WORLD,
            *TINY_MODELS,
            f"lake.root={tmp_path / 'lake'}",
            f"lake.catalog={tmp_path / 'c.duckdb'}",
        ],
    )


@pytest.fixture
def small_cfg(tmp_path: Path) -> Config:
    return load_config(
        REPO / "params.yaml",
        [*SMALL_WORLD, f"lake.root={tmp_path / 'lake'}", f"lake.catalog={tmp_path / 'c.duckdb'}"],
    )


@pytest.fixture
def spec(small_cfg: Config) -> FeatureSpec:
    return FeatureSpec.from_config(small_cfg.features)


@pytest.fixture
def lake(small_cfg: Config) -> Lake:
    return Lake.from_config(small_cfg.lake)


_AIRFLOW_PARAMS = """
world: {days: 2, impressions_per_day: IMPRESSIONS, n_users: 2000, n_ads: 300, n_advertisers: 40,
        n_contexts: 100}
fm: {embedding_dim: 8, vertical_dim: 4, cross_layers: 1, deep_layers: [32, 16]}
vm: {embedding_dim: 4, hidden: [16, 8], aux_hidden: 4, max_hash_buckets: 512}
publish: {max_ne: 100}
lake: {root: lake, catalog: exfm.duckdb}
airflow: {schedule: none, retries: 1, retry_delay_s: RETRY_DELAY}
"""


def airflow_params(retry_delay_s: float, impressions_per_day: int = 4000) -> str:
    """A params file for the DAG tests: a tiny world and tiny models, the lake beside the file,
    unscheduled DAGs and one quick retry. More impressions a day make `land` run longer (a task
    a test interrupts must still be running when the signal arrives)."""
    return _AIRFLOW_PARAMS.replace("RETRY_DELAY", str(retry_delay_s)).replace(
        "IMPRESSIONS", str(impressions_per_day)
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_ports(n: int) -> int:
    """A free port on 127.0.0.1 whose next n - 1 are free too (the stack's --base-port: the
    other shard's services take ports of their own at the same time)."""
    for _ in range(50):
        base = free_port()
        if base + n <= 65536 and all(_free(base + i) for i in range(n)):
            return base
    raise AssertionError(f"no {n} consecutive free ports on 127.0.0.1")


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def moto_server(port: int) -> Any:
    """A started moto S3 server on 127.0.0.1:`port` that a test can stop (an outage) and start
    again on the same port; the caller stops it."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return server


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3 endpoint for the whole session: moto's server on 127.0.0.1, a free port."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_env(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The standard AWS environment pointing at the moto server (fake credentials)."""
    env = {
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    return env


@pytest.fixture
def s3_root(s3_env: dict[str, str]) -> str:
    """A fresh bucket on the moto server; returns an s3:// lake root inside it."""
    bucket = f"lake-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    return f"s3://{bucket}/exfm"


# the fixtures that start (or need) the session's moto server; a test that starts its own with
# moto_server() is marked `s3` where it is written, as is an "s3" fixture parameter
S3_FIXTURES = frozenset({"s3_endpoint", "s3_env", "s3_root"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark `s3` every test that uses the moto S3 server (`-m "not s3"` runs the rest)."""
    for item in items:
        if S3_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.s3)


def small_project(root: Path, *overrides: str) -> Path:
    """root/params.yaml for a small world with tiny models, its lake and catalog under root (for
    tests that drive the real command line); returns the file."""
    import yaml

    cfg = load_config(
        REPO / "params.yaml",
        [
            *SMALL_WORLD,
            *TINY_MODELS,
            f"lake.root={root / 'lake'}",
            f"lake.catalog={root / 'exfm.duckdb'}",
            *overrides,
        ],
    )
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump(cfg.to_dict()))
    return params


def run_exfm(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run the real `exfm` command line (python -m exfm) and capture its output."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "exfm", *args],
        cwd=cwd or REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def airflow_demo_params(retry_delay_s: float, days: int = 3) -> str:
    """airflow_params for the demo as a user runs it: `days` simulated days on the daily
    schedule (demo mode), so that unpausing exfm_fm_daily catches up over them in order. One VM
    per vertical and day (no baseline VM beside it) keeps the days' torch tasks few."""
    params = airflow_params(retry_delay_s)
    assert "days: 2," in params and "schedule: none," in params
    params = params.replace("days: 2,", f"days: {days},")
    return params.replace("schedule: none,", 'schedule: "@daily",') + (
        "pipeline: {compare_baseline: false}\n"
    )


def stack_module() -> Any:
    """docker/stack.py (`make stack`'s launcher) as a module: docker/ is no package (a package of
    that name would hide the `docker` distribution that moto imports)."""
    import importlib.util

    name = "exfm_docker_stack"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "docker" / "stack.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]

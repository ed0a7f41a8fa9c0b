"""docker/stack.py (`make stack`) without starting it: its settings are compose's (one shared file,
docker/stack.env, and the same keys), its params put the lake on S3, and what it refuses it names.
tests/e2e/test_stack.py starts it."""

from __future__ import annotations

import argparse
import json
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO, free_port, free_ports, stack_module
from tests.unit.test_docker import AIRFLOW

stack = stack_module()
DOCKER = REPO / "docker"


def native_env(tmp_path: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    layout = stack.Layout(tmp_path)
    ports = stack.Ports.from_base(8080, 15432)
    keys = stack.Secrets("pg", "redis", "jwt", "api", "fernet")
    shared = stack.read_env_file(stack.STACK_ENV)
    return stack.airflow_env(layout, ports, keys, ("AK", "SK"), shared, base or {"PATH": "/bin"})


def compose_env(service: str) -> tuple[dict[str, str], dict[str, str]]:
    compose = yaml.safe_load((DOCKER / "docker-compose.yaml").read_text())
    svc = compose["services"][service]
    files = {}
    for name in svc["env_file"]:
        files.update(stack.read_env_file(DOCKER / name))
    return files, svc["environment"]


def test_the_native_stack_sets_what_compose_sets_and_shares_its_file(tmp_path: Path) -> None:
    shared = stack.read_env_file(stack.STACK_ENV)
    native = native_env(tmp_path)
    for service in sorted(AIRFLOW):
        files, environment = compose_env(service)
        # compose reads the same file, and sets none of its keys a second time
        assert files == shared
        assert not set(environment) & set(shared), service
        expected = set(files) | set(environment) - {"EXFM_TORCH_SLOTS"}
        assert set(native) - stack.NATIVE_ONLY == expected, service
    for key, value in shared.items():
        assert native[key] == value


def test_the_users_environment_overrides_the_shared_file_as_compose_environment_does(
    tmp_path: Path,
) -> None:
    key = "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT"
    assert stack.read_env_file(stack.STACK_ENV)[key] == "60"
    assert native_env(tmp_path, {"PATH": "/bin", key: "20"})[key] == "20"
    # what the stack itself decides is not the caller's to change (addresses, secrets)
    env = native_env(tmp_path, {"PATH": "/bin", "AWS_ENDPOINT_URL_S3": "http://elsewhere"})
    assert "AWS_ENDPOINT_URL_S3" not in env
    assert env["AWS_ACCESS_KEY_ID"] == "AK"


def test_processes_reach_each_other_on_loopback_with_the_generated_secrets(tmp_path: Path) -> None:
    env = native_env(tmp_path)
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == (
        "postgresql+psycopg2://airflow:pg@127.0.0.1:15432/airflow"
    )
    # SQLAlchemy's default PostgreSQL driver is psycopg 3, which is not in the lock
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql+psycopg2://")
    assert env["AIRFLOW__CELERY__BROKER_URL"] == "redis://:redis@127.0.0.1:15433/0"
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:15434"
    assert env["AIRFLOW__API__HOST"] == "127.0.0.1"
    assert env["EXFM_PARAMS"] == str(tmp_path / "state" / "params.yaml")


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ('A="quoted"', "without quotes"),
        ("A=$HOME", "without quotes or $"),
        ("lower=1", "KEY=VALUE"),
        ("A=1\nA=2", "set twice"),
    ],
)
def test_the_shared_file_refuses_what_compose_and_the_launcher_would_read_differently(
    tmp_path: Path, line: str, why: str
) -> None:
    bad = tmp_path / "stack.env"
    bad.write_text(f"# a comment\n\n{line}\n")
    with pytest.raises(stack.StackError, match=f"{re.escape(str(bad))}:[34]: .*{re.escape(why)}"):
        stack.read_env_file(bad)


def test_the_stacks_params_keep_the_lake_on_s3_and_the_catalog_in_its_state(
    tmp_path: Path,
) -> None:
    layout = stack.Layout(tmp_path)
    params, bucket = stack.stack_params(stack.DEFAULT_PARAMS, layout)
    assert bucket == "exfm"
    assert params["lake"] == {"root": "s3://exfm/lake", "catalog": str(layout.catalog)}
    assert params["airflow"]["torch_queue"] == "torch"
    local = tmp_path / "local.yaml"
    local.write_text("lake: {root: lake}\n")
    with pytest.raises(stack.StackError, match=r"local.yaml: lake.root is 'lake'; .* on its S3"):
        stack.stack_params(local, layout)
    local.write_text("lake: {root: 's3://Not_A_Bucket/x'}\n")
    with pytest.raises(stack.StackError, match="'Not_A_Bucket' is not an S3 bucket name"):
        stack.stack_params(local, layout)


def _held_port_above_a_free_one() -> tuple[socket.socket, int]:
    """A listening socket on some port p whose p - 1 is free (found together, not assumed)."""
    for _ in range(50):
        held = socket.socket()
        held.bind(("127.0.0.1", 0))
        base = held.getsockname()[1] - 1
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", base))
            except OSError:
                held.close()
                continue
        held.listen()
        return held, base
    raise AssertionError("no free port found below a free port")


def test_a_busy_port_is_named_before_anything_starts(tmp_path: Path) -> None:
    busy, base = _held_port_above_a_free_one()  # redis's port (base + 1) held, postgres's free
    with busy:
        done = subprocess.run(
            [
                sys.executable,
                str(DOCKER / "stack.py"),
                "--home",
                str(tmp_path / "home"),
                "--port",
                str(free_port()),
                "--base-port",
                str(base),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 1
    assert f"ports in use on 127.0.0.1: redis {base + 1}" in done.stderr
    assert not (tmp_path / "home").exists()  # nothing was made


def test_a_lake_off_s3_is_refused_with_the_file_named(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("lake: {root: /data/lake}\n")
    done = subprocess.run(
        [
            sys.executable,
            str(DOCKER / "stack.py"),
            "--home",
            str(tmp_path / "home"),
            "--params",
            str(params),
            "--port",
            str(free_port()),
            "--base-port",
            str(free_ports(5)),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert f"stack: error: {params}: lake.root is '/data/lake'" in done.stderr


def _stack(home: Path) -> Any:
    """A launcher on `home` (its logs and state folders made), not started."""
    (home / "logs").mkdir(exist_ok=True)
    (home / "state").mkdir(exist_ok=True)
    return stack.Stack(argparse.Namespace(home=str(home), port=1, base_port=2))


def test_the_supervisor_starts_an_exited_process_again(tmp_path: Path, capsys: Any) -> None:
    supervisor = _stack(tmp_path)
    starts = []

    def started(component: Any) -> None:
        starts.append(component.proc.pid)
        if len(starts) == 2:
            supervisor.stopping = True

    flaky = stack.Component(
        "flaky", [sys.executable, "-c", "print('once')"], {}, tmp_path / "logs", on_start=started
    )
    supervisor.add(flaky).start()
    supervisor.supervise()
    assert len(starts) == 2 and starts[0] != starts[1]
    err = capsys.readouterr().err
    assert "stack: flaky exited (status 0); starting it again in 1 s" in err
    assert f"stack: flaky started again (pid {starts[1]})" in err
    assert (tmp_path / "logs" / "flaky.log").read_text().count("once") == 2
    assert json.loads((tmp_path / "state" / "pids.json").read_text()).keys() <= {"flaky"}


def test_an_exited_s3_endpoint_stops_the_stack_since_its_lake_was_in_memory(
    tmp_path: Path,
) -> None:
    supervisor = _stack(tmp_path)
    s3 = stack.Component("s3", [sys.executable, "-c", "raise SystemExit(3)"], {}, tmp_path / "logs")
    supervisor.add(s3).start()
    with pytest.raises(stack.StackError, match=r"the S3 endpoint exited \(status 3\): the lake"):
        supervisor.supervise()


def test_a_second_stack_on_the_same_home_is_refused_before_it_wipes_anything(
    tmp_path: Path,
) -> None:
    first, second = _stack(tmp_path), _stack(tmp_path)
    first.lock()
    (tmp_path / "state" / "keep").write_text("the running stack's")
    with pytest.raises(
        stack.StackError, match=f"another stack runs from {re.escape(str(tmp_path))}"
    ):
        second.prepare()
    assert (tmp_path / "state" / "keep").read_text() == "the running stack's"


def test_an_unexpected_error_while_starting_stops_what_was_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error the launcher did not foresee (here: the shared settings cannot be read) still
    stops the processes it had started before it propagates; none outlives the launcher."""
    import psutil

    launcher = _stack(tmp_path)
    launcher.args.grace_s = 5
    infra = stack.Component(
        "redis", [sys.executable, "-c", "import time; time.sleep(600)"], {}, tmp_path / "logs"
    )

    def start_infrastructure(keys: Any, bucket: str) -> tuple[str, str]:
        launcher.add(infra).start()
        return ("AK", "SK")

    def unreadable(path: Path) -> dict[str, str]:
        raise FileNotFoundError(path)

    monkeypatch.setattr(launcher, "preflight", lambda: None)
    monkeypatch.setattr(launcher, "prepare", lambda: (None, "exfm"))
    monkeypatch.setattr(launcher, "start_infrastructure", start_infrastructure)
    monkeypatch.setattr(stack, "read_env_file", unreadable)
    with pytest.raises(FileNotFoundError):
        launcher.run()
    assert infra.proc is not None
    assert not psutil.pid_exists(infra.proc.pid) or (
        psutil.Process(infra.proc.pid).status() == psutil.STATUS_ZOMBIE
    )

"""`make airflow` started and stopped as a user does, for the end-to-end tests: on free local ports
in a temporary AIRFLOW_HOME, in a new session (make leads the process group that a terminal's
Ctrl-C signals), stopped with SIGINT to that group, then checked: every process of the tree is
gone. Also the REST API client (a token from /auth/token) and the socket and file-mode probes."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from tests.conftest import REPO, free_port

LOOPBACK = "127.0.0.1"
TIMEOUT_S = 600


class Api:
    """Airflow's REST API on `base`, with a Bearer token once `login` has run."""

    def __init__(self, base: str) -> None:
        self.base, self.token = base, ""

    def call(self, method: str, path: str, body: dict | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"null")

    def login(self, password: str) -> None:
        body = {"username": "admin", "password": password}
        self.token = self.call("POST", "/auth/token", body)["access_token"]

    def wait(self, what: str, probe: Callable[[], Any], timeout: float = TIMEOUT_S) -> Any:
        """probe() until it returns something true; connection errors count as not yet."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = probe()
                if last:
                    return last
            except (urllib.error.URLError, OSError, KeyError, ValueError) as e:
                last = e
            time.sleep(1)
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last: {last}")

    def runs(self, dag_id: str) -> list[dict]:
        return self.call("GET", f"/api/v2/dags/{dag_id}/dagRuns?limit=100")["dag_runs"]

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{urllib.request.quote(run_id)}/taskInstances"
        return self.call("GET", path + "?limit=100")["task_instances"]


@dataclass
class Airflow:
    """A started `make airflow`: its process (make), home, log, ports and the processes seen."""

    api: Api
    proc: subprocess.Popen
    home: Path
    log: Path
    log_ports: tuple[int, int]  # the worker's and the triggerer's task log servers
    seen: set[psutil.Process] = field(default_factory=set)

    @property
    def listeners(self) -> set[tuple[str, int]]:
        """What may listen: the API server and the two log servers, on 127.0.0.1."""
        port = int(self.api.base.rsplit(":", 1)[1])
        return {(LOOPBACK, p) for p in (port, *self.log_ports)}

    @property
    def password_file(self) -> Path:
        return self.home / "simple_auth_manager_passwords.json.generated"

    def password(self) -> str:
        self.api.wait("the admin password", self.password_file.exists, 60)
        return json.loads(self.password_file.read_text())["admin"]

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def note_processes(self) -> None:
        """Remember the tree's processes now (task processes come and go)."""
        self.seen.update(descendants(self.proc))


WITH_DEFAULT_SIGINT = [
    sys.executable,
    "-c",
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.argv[1], sys.argv[1:])",
]


def start(tmp_path: Path, params: Path, env: dict[str, str] | None = None) -> Airflow:
    """Start `make -o setup airflow` with `params`; returns once it is started (not yet up)."""
    port, worker_logs, trigger_logs = free_port(), free_port(), free_port()
    home = tmp_path / "airflow"
    full_env = {
        **os.environ,
        # what `make airflow` reads: the home, the UI port and the params file
        "AIRFLOW_HOME": str(home),
        "AIRFLOW_PORT": str(port),
        "EXFM_PARAMS": str(params),
        # the log servers' ports (8793 and 8794 by default) are Airflow's own options
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(worker_logs),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(trigger_logs),
        # a quicker test: a short parse interval and heartbeat
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        # a task the last start left running is reset once that start's scheduler has been
        # silent for scheduler_health_check_threshold (30 s): checked at start and then every
        # 300 s by default, so a restart within 30 s waited 5 minutes; every 10 s here
        "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "10",
        **(env or {}),
    }
    full_env.pop("AIRFLOW__CORE__UNIT_TEST_MODE", None)
    make = shutil.which("make")
    assert make, "make is not installed"
    log = tmp_path / "airflow.log"
    with open(log, "w") as out:
        # -o setup: the venv this test runs in is the one `make airflow` uses; do not reinstall it.
        # A new session: make is the leader of the process group that Ctrl-C would signal.
        # SIGINT as a terminal has it: a test run started in the background (`make test &`,
        # nohup) inherits SIGINT ignored, which no shell trap of `make airflow` can undo; the
        # wrapper restores the default and becomes make (exec: same process, same session).
        proc = subprocess.Popen(
            [*WITH_DEFAULT_SIGINT, make, "--no-print-directory", "-s", "-o", "setup", "airflow"],
            cwd=REPO,
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Airflow(Api(f"http://{LOOPBACK}:{port}"), proc, home, log, (worker_logs, trigger_logs))


def wait_healthy(airflow: Airflow, timeout: float = 240) -> None:
    """Until the API server answers and the scheduler, DAG processor and triggerer heartbeat."""

    def healthy() -> bool:
        airflow.note_processes()
        if airflow.proc.poll() is not None:
            raise AssertionError(
                f"make airflow exited ({airflow.proc.returncode}):\n{tail(airflow)}"
            )
        health = airflow.api.call("GET", "/api/v2/monitor/health")
        parts = ("metadatabase", "scheduler", "dag_processor", "triggerer")
        return all((health.get(p) or {}).get("status") == "healthy" for p in parts)

    airflow.api.wait("Airflow's components to be healthy", healthy, timeout)


def ctrl_c(airflow: Airflow, presses: int = 1, gap_s: float = 0.3) -> None:
    """Ctrl-C in the terminal: SIGINT to its foreground process group (make's), `presses` times."""
    airflow.note_processes()
    for press in range(presses):
        if press:
            time.sleep(gap_s)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(airflow.proc.pid, signal.SIGINT)


def stop(airflow: Airflow, within_s: float, presses: int = 1) -> float:
    """Ctrl-C, then wait until make and every process seen in its tree are gone; returns the
    seconds that took. Whatever is still alive after `within_s` is killed and named."""
    ctrl_c(airflow, presses)
    started = time.monotonic()
    with contextlib.suppress(subprocess.TimeoutExpired):
        airflow.proc.wait(timeout=within_s)
    watched = set(airflow.seen)
    if airflow.proc.poll() is None:
        watched.add(psutil.Process(airflow.proc.pid))
    left = alive(watched)
    while left and time.monotonic() < started + within_s:
        time.sleep(0.5)
        left = alive(left)
    took = time.monotonic() - started
    described = [_describe(p) for p in left]  # before the kill: a killed process has no cmdline
    for p in left:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        airflow.proc.wait(timeout=10)
    assert not left, (
        f"{len(left)} processes left {within_s:.0f} s after Ctrl-C x{presses} (killed now): "
        f"{described}\n{shutdown_lines(airflow)}\n{tail(airflow)}"
    )
    return took


@contextlib.contextmanager
def running(tmp_path: Path, params: Path, env: dict[str, str] | None = None) -> Iterator[Airflow]:
    """A healthy `make airflow`, stopped with Ctrl-C afterwards (and checked: nothing is left)."""
    airflow = start(tmp_path, params, env)
    try:
        wait_healthy(airflow)
        yield airflow
    finally:
        took = stop(airflow, within_s=120)
        print(f"Ctrl-C stopped {len(airflow.seen)} processes in {took:.1f} s")


SHUTDOWN = ("airflow:", "Exiting gracefully", "Shutting down LocalExecutor", "Received signal")


def shutdown_lines(airflow: Airflow) -> str:
    """The lines of make airflow's output that tell how far its shutdown got."""
    lines = [line for line in airflow.output().splitlines() if any(k in line for k in SHUTDOWN)]
    return "the shutdown's lines:\n" + "\n".join(lines[-20:])


def tail(airflow: Airflow, lines: int = 40) -> str:
    return "make airflow's last lines:\n" + "\n".join(airflow.output().splitlines()[-lines:])


def descendants(proc: subprocess.Popen) -> set[psutil.Process]:
    try:
        return set(psutil.Process(proc.pid).children(recursive=True))
    except psutil.NoSuchProcess:
        return set()


def alive(processes: set[psutil.Process]) -> set[psutil.Process]:
    found = set()
    for p in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                found.add(p)
    return found


def _describe(p: psutil.Process) -> str:
    with contextlib.suppress(psutil.Error):
        return f"{p.pid} {' '.join(p.cmdline())[:120]}"
    return str(p.pid)


def listening(proc: subprocess.Popen) -> set[tuple[str, int]]:
    """(address, port) of every listening TCP socket (IPv4 and IPv6) of the process tree."""
    found = set()
    for p in descendants(proc):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.ZombieProcess):
            for conn in p.net_connections(kind="tcp"):
                if conn.status == psutil.CONN_LISTEN:
                    found.add((conn.laddr.ip, conn.laddr.port))
    return found


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)

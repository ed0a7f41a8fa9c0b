"""`make stack`: the production stack of docker/docker-compose.yaml, started natively on 127.0.0.1
for a user without Docker and for the tests.

    python docker/stack.py [--home .stack] [--params docker/params.docker.yaml] [--port 8080]

One process per compose service, each in its own session, supervised as compose does it
(`restart: unless-stopped`: a component that exits is started again, with back-off):

    compose service   here
    postgres          PostgreSQL 15 (`initdb` + `postgres`), a private cluster in HOME/postgres
    redis             redis-server, append-only file fsynced at every write, password required
    minio (+ init)    moto's S3 server (a stand-in for MinIO: no Docker here), the lake bucket and
                      a lake user whose IAM policy allows that bucket only; requests are signed
    airflow-init      `airflow db migrate` and the torch pool, before the Airflow components
    api-server, scheduler, dag-processor, triggerer: the same commands
    worker            `airflow celery worker -q default -c 4`
    worker-torch      two workers on the torch queue (-c 1 each): the pool's 2 slots
                      and one task log server for the workers, one for the triggerer (127.0.0.1)

The settings every Airflow process shares come from docker/stack.env, the file compose reads as
the Airflow services' env_file; what depends on where a process runs (hosts, ports, paths) is set
here as compose sets it there. Secrets are generated at each start into HOME/state (0600), never
printed except the UI's admin password.

moto keeps its objects in memory: each start begins with an empty lake, so each start begins with
a fresh HOME/state (metadata database, broker, catalog); HOME/logs is kept. Fault drills: SIGUSR1
to the S3 process takes the endpoint down for --s3-outage-s seconds (the process and its objects
live on); signal PostgreSQL or Redis and the supervisor starts them again. The PIDs of the current
processes are in HOME/state/pids.json.

Ctrl-C stops everything: the scheduler and the workers first (running tasks get --grace-s seconds
to finish; then they are interrupted, fail, and are retried at the next start), then the other
Airflow components, then S3, Redis and PostgreSQL. Ctrl-C again kills every process at once.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
STACK_ENV = REPO / "docker" / "stack.env"
DEFAULT_PARAMS = REPO / "docker" / "params.docker.yaml"
LOOPBACK = "127.0.0.1"
# the compose file's names (docker/.env.example): the metadata database and its owner
PG_USER = PG_DB = "airflow"
ADMIN_USER = "admin"
LAKE_USER = "exfm-lake"
# the log server the UI reads a running task's log from (as `make airflow` runs it)
LOG_SERVER = (
    "import sys, uvicorn; from airflow.configuration import conf; uvicorn.run("
    '"airflow.utils.serve_logs.log_server:get_app", factory=True, host="127.0.0.1", '
    'port=conf.getint("logging", sys.argv[1]), log_config=None, access_log=False)'
)
_ENV_LINE = re.compile(r"^([A-Z][A-Z0-9_]*)=([^$'\"]*)$")


class StackError(Exception):
    """What stops the stack from starting, in words a user can act on."""


def log(message: str) -> None:
    print(f"stack: {message}", file=sys.stderr, flush=True)


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines (comments and blank lines skipped); anything else is an error naming the
    line, as is a key set twice."""
    out: dict[str, str] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = _ENV_LINE.match(line)
        if not m:
            raise StackError(f"{path}:{n}: not a KEY=VALUE line without quotes or $: {line!r}")
        if m[1] in out:
            raise StackError(f"{path}:{n}: {m[1]} is set twice")
        out[m[1]] = m[2]
    return out


# --------------------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Ports:
    api: int
    postgres: int
    redis: int
    s3: int
    worker_logs: int
    trigger_logs: int

    @classmethod
    def from_base(cls, api: int, base: int) -> Ports:
        return cls(api, base, base + 1, base + 2, base + 3, base + 4)


@dataclass(frozen=True)
class Secrets:
    postgres: str
    redis: str
    jwt: str
    api: str
    fernet: str

    @classmethod
    def generate(cls) -> Secrets:
        from cryptography.fernet import Fernet

        token = secrets.token_urlsafe
        return cls(token(24), token(24), token(32), token(32), Fernet.generate_key().decode())


@dataclass
class Layout:
    home: Path

    @property
    def state(self) -> Path:
        return self.home / "state"

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def postgres(self) -> Path:
        return self.state / "postgres"

    @property
    def redis(self) -> Path:
        return self.state / "redis"

    @property
    def airflow(self) -> Path:
        return self.state / "airflow"

    @property
    def params(self) -> Path:
        return self.state / "params.yaml"

    @property
    def catalog(self) -> Path:
        return self.state / "exfm.duckdb"

    @property
    def s3_credentials(self) -> Path:
        return self.state / "s3-lake-user.json"

    @property
    def pids(self) -> Path:
        return self.state / "pids.json"

    @property
    def password_file(self) -> Path:
        return self.airflow / "simple_auth_manager_passwords.json.generated"


def stack_params(source: Path, layout: Layout) -> tuple[dict[str, Any], str]:
    """The params the Airflow processes read (HOME/state/params.yaml): `source` with the catalog
    in the stack's state (compose keeps it in the Airflow home's volume). Returns them with the
    lake's bucket; the lake must be on S3."""
    raw = yaml.safe_load(source.read_text()) or {}
    if not isinstance(raw, dict):
        raise StackError(f"{source}: not a mapping of params")
    lake = dict(raw.get("lake") or {})
    root = str(lake.get("root", ""))
    if not root.startswith("s3://"):
        raise StackError(
            f"{source}: lake.root is {root!r}; the stack's lake is on its S3 endpoint "
            "(s3://BUCKET/PREFIX, as docker/params.docker.yaml)"
        )
    bucket = root[len("s3://") :].split("/", 1)[0]
    if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket):
        raise StackError(f"{source}: lake.root {root!r}: {bucket!r} is not an S3 bucket name")
    lake["catalog"] = str(layout.catalog)
    return {**raw, "lake": lake}, bucket


def airflow_env(
    layout: Layout,
    ports: Ports,
    keys: Secrets,
    s3_key: tuple[str, str],
    shared: dict[str, str],
    base: dict[str, str],
) -> dict[str, str]:
    """The environment of every Airflow process: docker/stack.env, under the caller's environment
    (`base`: as compose's `environment` overrides its env_file, so a user can change a setting for
    one start), then what compose's x-exfm-env sets, for 127.0.0.1 (NATIVE_ONLY: what only a
    process outside a container needs)."""
    db = f"{PG_USER}:{keys.postgres}@{LOOPBACK}:{ports.postgres}/{PG_DB}"
    env = {
        **shared,
        **base,
        # compose's x-exfm-env, with this host's addresses and paths
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://{LOOPBACK}:{ports.api}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
        "AIRFLOW__API_AUTH__JWT_SECRET": keys.jwt,
        "AIRFLOW__API__SECRET_KEY": keys.api,
        "AIRFLOW__CORE__FERNET_KEY": keys.fernet,
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://{db}",
        "AIRFLOW__CELERY__BROKER_URL": f"redis://:{keys.redis}@{LOOPBACK}:{ports.redis}/0",
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql+psycopg2://{db}",
        "EXFM_PARAMS": str(layout.params),
        "AWS_ENDPOINT_URL": f"http://{LOOPBACK}:{ports.s3}",
        "AWS_ACCESS_KEY_ID": s3_key[0],
        "AWS_SECRET_ACCESS_KEY": s3_key[1],
        # NATIVE_ONLY
        "AIRFLOW_HOME": str(layout.airflow),
        "AIRFLOW__API__HOST": LOOPBACK,
        "AIRFLOW__API__PORT": str(ports.api),
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": "urllib.request.localhost",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(ports.worker_logs),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(ports.trigger_logs),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{base.get('PATH', '')}",
    }
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN", "AIRFLOW_CONFIG"):
        env.pop(name, None)
    return env


# keys of airflow_env that compose's Airflow services have no counterpart for (set per host there)
NATIVE_ONLY = frozenset(
    {
        "AIRFLOW_HOME",
        "AIRFLOW__API__HOST",
        "AIRFLOW__API__PORT",
        "AIRFLOW__CORE__HOSTNAME_CALLABLE",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT",
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT",
        "PATH",
    }
)


# -------------------------------------------------------------------------------------- processes


@dataclass
class Component:
    """One supervised process (a compose service): started in its own session, its output in
    HOME/logs/NAME.log; started again when it exits unless the stack is stopping."""

    name: str
    argv: list[str]
    env: dict[str, str]
    logs: Path
    stop_signal: int = signal.SIGTERM
    cwd: Path = REPO
    proc: subprocess.Popen | None = None
    restarts: int = 0
    started_at: float = 0.0
    next_start: float = 0.0
    on_start: Callable[[Component], None] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def log_path(self) -> Path:
        return self.logs / f"{self.name}.log"

    def start(self) -> None:
        with open(self.log_path, "a") as out:
            out.write(f"\n==== stack: {self.name} starting at {time.strftime('%H:%M:%S')}\n")
            out.flush()
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.started_at = time.monotonic()
        if self.on_start:
            self.on_start(self)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, sig)  # type: ignore[union-attr]

    def kill_session(self) -> None:
        """SIGKILL to every process of the component's session (a task runs in its own process
        group, not its own session)."""
        if self.proc is None:
            return
        sid = self.proc.pid
        for pid in _session_members(sid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)

    def session_alive(self) -> bool:
        return self.proc is not None and bool(_session_members(self.proc.pid))


def _session_members(sid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            if fields[0] != "Z" and int(fields[3]) == sid:
                out.append(int(entry.name))
    return out


def wait_for(
    what: str, probe: Callable[[], bool], timeout: float, alive: Callable[[], bool]
) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if not alive():
            raise StackError(f"{what}: the process exited while starting")
        try:
            if probe():
                return
        except Exception as e:  # noqa: BLE001 - a probe's failure means "not yet"
            last = e
        time.sleep(0.5)
    raise StackError(f"{what}: not ready after {timeout:.0f} s ({last or 'no answer'})")


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        # as the servers bind (connections closing in TIME_WAIT do not make a port busy)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


# ---------------------------------------------------------------------------------------- the stack


class Stack:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.layout = Layout(Path(args.home).resolve())
        self.ports = Ports.from_base(args.port, args.base_port)
        self.components: dict[str, Component] = {}
        self.stopping = False
        self.interrupts = 0
        self.as_postgres: list[str] = []
        self._lock_fd: int | None = None

    # ---- preparation
    def preflight(self) -> None:
        missing = [b for b in ("initdb", "postgres", "redis-server") if not shutil.which(b)]
        if missing:
            raise StackError(
                f"not installed: {', '.join(missing)} (PostgreSQL 15's initdb/postgres; "
                "redis-server: apt-get install redis-server)"
            )
        busy = [f"{name} {port}" for name, port in vars(self.ports).items() if not port_free(port)]
        if busy:
            raise StackError(
                f"ports in use on {LOOPBACK}: {', '.join(busy)} (choose others: --port for the "
                "UI, --base-port for the five after it)"
            )
        if os.geteuid() == 0:
            # PostgreSQL refuses to run as root: the cluster runs as the `postgres` user
            try:
                pg = pwd.getpwnam("postgres")
            except KeyError as e:
                raise StackError(
                    "running as root, and there is no `postgres` user to run PostgreSQL as "
                    "(it refuses root): run the stack as another user"
                ) from e
            self.as_postgres = [
                "setpriv",
                f"--reuid={pg.pw_uid}",
                f"--regid={pg.pw_gid}",
                "--clear-groups",
                "--",
            ]

    def lock(self) -> None:
        """One stack per home: a second launcher would wipe the first one's state. The lock is
        held until this process exits."""
        self.layout.home.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.layout.home / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            os.close(fd)
            raise StackError(
                f"another stack runs from {self.layout.home}: stop it first (Ctrl-C in its "
                "terminal), or give this one another --home"
            ) from e
        self._lock_fd = fd

    def prepare(self) -> tuple[Secrets, str]:
        lay = self.layout
        self.lock()
        if self.as_postgres:  # the postgres user passes through to its cluster, sees nothing else
            lay.home.chmod(0o711)
        if lay.state.exists():
            shutil.rmtree(lay.state)
        lay.logs.mkdir(mode=0o700, exist_ok=True)
        lay.state.mkdir()
        lay.state.chmod(0o711 if self.as_postgres else 0o700)  # (mkdir's mode is under the umask)
        for d in (lay.redis, lay.airflow):
            d.mkdir(mode=0o700)
        params, bucket = stack_params(Path(self.args.params), lay)
        lay.params.write_text(
            f"# generated by docker/stack.py from {self.args.params}: the catalog is the stack's\n"
            + yaml.safe_dump(params, sort_keys=False)
        )
        keys = Secrets.generate()
        self._initdb(keys)
        return keys, bucket

    def _initdb(self, keys: Secrets) -> None:
        lay = self.layout
        lay.postgres.mkdir(mode=0o700)
        pwfile = lay.state / "pg-password"
        pwfile.write_text(keys.postgres + "\n")
        pwfile.chmod(0o600)
        if self.as_postgres:
            pg = pwd.getpwnam("postgres")
            for p in (lay.postgres, pwfile):
                os.chown(p, pg.pw_uid, pg.pw_gid)
            probe = subprocess.run(
                [*self.as_postgres, "test", "-w", str(lay.postgres)], check=False
            )
            if probe.returncode != 0:
                raise StackError(
                    f"the postgres user cannot reach {lay.postgres} (PostgreSQL runs as that user "
                    "when the stack runs as root): every folder above it must be traversable "
                    "(chmod o+x), or choose another --home"
                )
        out = subprocess.run(
            [
                *self.as_postgres,
                "initdb",
                "-D",
                str(lay.postgres),
                "-U",
                PG_USER,
                "--auth=scram-sha-256",
                f"--pwfile={pwfile}",
                "-E",
                "UTF8",
                "--no-instructions",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        pwfile.unlink()
        (lay.logs / "initdb.log").write_text(out.stdout + out.stderr)
        if out.returncode != 0:
            raise StackError(f"initdb failed ({out.returncode}): {out.stderr.strip()[-500:]}")

    # ---- components
    def add(self, component: Component) -> Component:
        self.components[component.name] = component
        return component

    def start_infrastructure(self, keys: Secrets, bucket: str) -> tuple[str, str]:
        lay, ports, base = self.layout, self.ports, {**os.environ}
        pg = self.add(
            Component(
                "postgres",
                [
                    *self.as_postgres,
                    "postgres",
                    "-D",
                    str(lay.postgres),
                    "-h",
                    LOOPBACK,
                    "-p",
                    str(ports.postgres),
                    "-k",
                    "",
                    "-c",
                    "max_connections=300",
                ],
                base,
                lay.logs,
                stop_signal=signal.SIGINT,  # fast shutdown: clients are disconnected
            )
        )
        pg.start()
        wait_for("PostgreSQL", lambda: self._pg_ready(keys, "postgres"), 60, pg.alive)
        self._create_database(keys)

        conf = lay.redis / "redis.conf"
        conf.write_text(
            f"bind {LOOPBACK}\nport {ports.redis}\nprotected-mode yes\ndir {lay.redis}\n"
            f'requirepass {keys.redis}\nappendonly yes\nappendfsync always\nsave ""\n'
            "daemonize no\n"
        )
        conf.chmod(0o600)
        redis = self.add(Component("redis", ["redis-server", str(conf)], base, lay.logs))
        redis.start()
        wait_for("Redis", lambda: self._redis_ready(keys), 30, redis.alive)

        s3 = self.add(
            Component(
                "s3",
                [
                    sys.executable,
                    str(Path(__file__).resolve()),
                    "s3",
                    "--port",
                    str(ports.s3),
                    "--bucket",
                    bucket,
                    "--credentials",
                    str(lay.s3_credentials),
                    "--outage-s",
                    str(self.args.s3_outage_s),
                ],
                {**base, "PYTHONUNBUFFERED": "1"},
                lay.logs,
            )
        )
        s3.start()
        wait_for("S3", lay.s3_credentials.exists, 60, s3.alive)
        creds = json.loads(lay.s3_credentials.read_text())
        return creds["access_key"], creds["secret_key"]

    def _pg_ready(self, keys: Secrets, db: str) -> bool:
        import psycopg2

        psycopg2.connect(
            host=LOOPBACK,
            port=self.ports.postgres,
            user=PG_USER,
            password=keys.postgres,
            dbname=db,
            connect_timeout=3,
        ).close()
        return True

    def _create_database(self, keys: Secrets) -> None:
        import psycopg2

        conn = psycopg2.connect(
            host=LOOPBACK,
            port=self.ports.postgres,
            user=PG_USER,
            password=keys.postgres,
            dbname="postgres",
        )
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {PG_DB}")  # a constant identifier
        conn.close()

    def _redis_ready(self, keys: Secrets) -> bool:
        import redis

        client = redis.Redis(
            host=LOOPBACK, port=self.ports.redis, password=keys.redis, socket_timeout=2
        )
        try:
            return bool(client.ping())
        finally:
            client.close()

    def init_airflow(self, env: dict[str, str]) -> None:
        """compose's airflow-init: the metadata database's schema and the torch pool."""
        from exfm.config import load_config

        cfg = load_config(self.layout.params)
        steps = [
            ["airflow", "db", "migrate"],
            [
                "airflow",
                "pools",
                "set",
                cfg.airflow.pool,
                str(cfg.airflow.pool_slots),
                "ExFM torch tasks",
            ],
        ]
        with open(self.layout.logs / "airflow-init.log", "a") as out:
            for argv in steps:
                done = subprocess.run(
                    argv, env=env, stdout=out, stderr=subprocess.STDOUT, check=False
                )
                if done.returncode != 0:
                    raise StackError(
                        f"airflow-init: `{' '.join(argv)}` failed ({done.returncode}); see "
                        f"{self.layout.logs / 'airflow-init.log'}"
                    )

    def start_airflow(self, env: dict[str, str]) -> list[Component]:
        from exfm.config import load_config

        cfg = load_config(self.layout.params)
        torch_queue = cfg.airflow.torch_queue
        if not torch_queue:
            raise StackError(
                f"{self.args.params}: airflow.torch_queue is empty; the stack routes the torch "
                "tasks to its torch workers (docker/params.docker.yaml sets `torch`)"
            )
        lay = self.layout
        airflow = [str(Path(sys.executable).parent / "airflow")]
        specs: list[tuple[str, list[str]]] = [
            ("scheduler", [*airflow, "scheduler", "--skip-serve-logs"]),
            ("api-server", [*airflow, "api-server"]),
            ("dag-processor", [*airflow, "dag-processor"]),
            ("triggerer", [*airflow, "triggerer", "--skip-serve-logs"]),
            (
                "worker",
                [*airflow, "celery", "worker", "-q", "default", "-c", str(self.args.concurrency)],
            ),
        ]
        for i in range(1, self.args.torch_workers + 1):
            specs.append(
                (f"worker-torch-{i}", [*airflow, "celery", "worker", "-q", torch_queue, "-c", "1"])
            )
        started = []
        for name, argv in specs:
            if "worker" in argv:
                argv += [
                    "-H",
                    f"{name}@%h",
                    "--skip-serve-logs",
                    "--pid",
                    str(lay.airflow / f"{name}.pid"),
                ]
            started.append(self.add(Component(name, argv, env, lay.logs)))
        for port in ("worker_log_server_port", "trigger_log_server_port"):
            name = port.replace("_server_port", "-server").replace("_", "-")
            argv = [sys.executable, "-c", LOG_SERVER, port]
            started.append(self.add(Component(name, argv, env, lay.logs)))
        for c in started:
            c.start()
        return started

    def write_pids(self) -> None:
        pids = {n: c.proc.pid for n, c in self.components.items() if c.alive()}  # type: ignore[union-attr]
        tmp = self.layout.pids.with_suffix(".tmp")
        tmp.write_text(json.dumps(pids, indent=1))
        tmp.replace(self.layout.pids)

    def wait_ready(self, workers: Sequence[Component]) -> str:
        api = f"http://{LOOPBACK}:{self.ports.api}"

        def healthy() -> bool:
            with urllib.request.urlopen(api + "/api/v2/monitor/health", timeout=5) as r:  # noqa: S310 (http://127.0.0.1)
                health = json.loads(r.read())
            parts = ("metadatabase", "scheduler", "dag_processor", "triggerer")
            return all((health.get(p) or {}).get("status") == "healthy" for p in parts)

        everything = lambda: all(c.alive() for c in self.components.values())  # noqa: E731
        wait_for("Airflow", healthy, self.args.start_timeout_s, everything)
        for w in workers:
            wait_for(
                f"the Celery worker {w.name}",
                lambda w=w: " ready." in w.log_path.read_text(errors="replace"),
                self.args.start_timeout_s,
                w.alive,
            )
        wait_for("the admin password", lambda: self.layout.password_file.exists(), 60, everything)
        return json.loads(self.layout.password_file.read_text())[ADMIN_USER]

    # ---- supervision
    def supervise(self) -> None:
        """compose's `restart: unless-stopped`: a component that exits is started again after
        1, 2, 4 ... 30 s (back to 1 s once it has run 60 s). Except the S3 endpoint: moto keeps
        the lake in memory, so when it exits the stack stops, with an error."""
        while not self.stopping:
            now = time.monotonic()
            changed = False
            for c in self.components.values():
                if c.alive():
                    continue
                if c.next_start == 0.0:
                    code = c.proc.returncode if c.proc else None
                    if c.name == "s3":
                        # its objects were in memory, and a new one would mint a new lake key
                        raise StackError(
                            f"the S3 endpoint exited (status {code}): the lake it held in "
                            "memory is gone; stopping the stack (see its log, s3.log)"
                        )
                    if now - c.started_at > 60:
                        c.restarts = 0
                    delay = min(30, 2**c.restarts)
                    c.restarts += 1
                    c.next_start = now + delay
                    log(f"{c.name} exited (status {code}); starting it again in {delay} s")
                elif now >= c.next_start:
                    c.next_start = 0.0
                    c.start()
                    changed = True
                    log(f"{c.name} started again (pid {c.proc.pid})")  # type: ignore[union-attr]
            if changed:
                self.write_pids()
            time.sleep(0.5)

    def on_signal(self, signum: int, _frame: Any) -> None:
        self.interrupts += 1
        if self.interrupts == 1:
            self.stopping = True
            raise KeyboardInterrupt
        log("killing every process now")
        for c in self.components.values():
            c.kill_session()
        os._exit(130)

    def stop(self) -> None:
        """The scheduler and the workers first (SIGTERM: the workers finish their running tasks,
        at most --grace-s s), then the other Airflow processes, then S3, Redis and PostgreSQL."""
        self.stopping = True
        comps = self.components
        first = [c for n, c in comps.items() if n == "scheduler" or n.startswith("worker")]
        infra = [comps[n] for n in ("s3", "redis", "postgres") if n in comps]
        rest = [c for c in comps.values() if c not in first and c not in infra]
        if any(c.alive() for c in first):
            log(
                f"stopping; running tasks have {self.args.grace_s} s to finish "
                "(Ctrl-C again kills everything now)"
            )
        self._stop_group(first, self.args.grace_s, "interrupting the running tasks")
        self._stop_group(rest, 10)
        self._stop_group(infra, 20)
        log("stopped")

    def _stop_group(self, group: Sequence[Component], grace: float, late: str = "") -> None:
        for c in group:
            c.signal(c.stop_signal)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(c.session_alive() for c in group):
            time.sleep(0.3)
        stuck = [c for c in group if c.session_alive()]
        if stuck and late:
            log(f"{late} ({', '.join(c.name for c in stuck)})")
        for c in stuck:
            c.kill_session()

    def run(self) -> int:
        signal.signal(signal.SIGINT, self.on_signal)
        signal.signal(signal.SIGTERM, self.on_signal)
        signal.signal(signal.SIGHUP, self.on_signal)
        try:
            self.preflight()
            keys, bucket = self.prepare()
            log(f"PostgreSQL, Redis and S3 on {LOOPBACK} (state in {self.layout.state})")
            s3_key = self.start_infrastructure(keys, bucket)
            env = airflow_env(
                self.layout, self.ports, keys, s3_key, read_env_file(STACK_ENV), dict(os.environ)
            )
            self.init_airflow(env)
            started = self.start_airflow(env)
            self.write_pids()
            password = self.wait_ready([c for c in started if "celery" in c.argv])
            print(
                f"stack: ready: Airflow http://{LOOPBACK}:{self.ports.api}  "
                f"login {ADMIN_USER} / {password}\n"
                f"stack: lake s3://{bucket} on http://{LOOPBACK}:{self.ports.s3}; logs in "
                f"{self.layout.logs}; Ctrl-C stops everything",
                flush=True,
            )
            self.supervise()
            return 0
        except KeyboardInterrupt:
            self.stop()
            return 130
        except StackError as e:
            log(f"error: {e}")
            self.stop()
            return 1
        except BaseException:
            # a bug or an unforeseen error: nothing the stack started may outlive the launcher
            log("error: unexpected; stopping what was started")
            self.stop()
            raise


# ------------------------------------------------------------------------------------- S3 process


def serve_s3(port: int, bucket: str, credentials: Path, outage_s: float) -> int:
    """moto's S3 server on 127.0.0.1:port with `bucket`, the lake policy (list the bucket; get,
    put and delete its objects) and a lake user holding it, whose keys go to `credentials`
    (0600); then every request must be signed by a key IAM allows. SIGUSR1: the listener closes
    for outage_s seconds (an outage; the objects stay), then opens again."""
    import boto3
    from moto import settings
    from moto.core.authorization import ActionAuthenticatorMixin
    from moto.server import ThreadedMotoServer

    def serve() -> ThreadedMotoServer:
        server = ThreadedMotoServer(ip_address=LOOPBACK, port=port, verbose=False)
        server.start()
        return server

    server = serve()
    root = {
        "endpoint_url": f"http://{LOOPBACK}:{port}",
        "region_name": "us-east-1",
        "aws_access_key_id": "moto-root",
        "aws_secret_access_key": "moto-root",
    }
    boto3.client("s3", **root).create_bucket(Bucket=bucket)
    iam = boto3.client("iam", **root)
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["s3:GetBucketLocation", "s3:ListBucket"],
                "Resource": [f"arn:aws:s3:::{bucket}"],
            },
            {
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                "Resource": [f"arn:aws:s3:::{bucket}/*"],
            },
        ],
    }
    arn = iam.create_policy(PolicyName="exfm-lake", PolicyDocument=json.dumps(policy))["Policy"][
        "Arn"
    ]
    iam.create_user(UserName=LAKE_USER)
    iam.attach_user_policy(UserName=LAKE_USER, PolicyArn=arn)
    key = iam.create_access_key(UserName=LAKE_USER)["AccessKey"]
    # from here on, every request is authenticated and authorized
    settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
    ActionAuthenticatorMixin.request_count = 0
    tmp = credentials.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({"access_key": key["AccessKeyId"], "secret_key": key["SecretAccessKey"]}, out)
    tmp.replace(credentials)
    print(f"s3: bucket {bucket} and user {LAKE_USER} on {LOOPBACK}:{port}", flush=True)

    outages: list[int] = []
    signal.signal(signal.SIGUSR1, lambda *_: outages.append(1))
    stop: list[int] = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    while not stop:
        if outages:
            outages.clear()
            print(f"s3: down for {outage_s:g} s (SIGUSR1)", flush=True)
            server.stop()
            server._server.server_close()  # type: ignore[attr-defined]  # stop() keeps the socket
            deadline = time.monotonic() + outage_s
            while time.monotonic() < deadline and not stop:
                time.sleep(0.2)
            if stop:
                break
            server = serve()
            print("s3: up again", flush=True)
        time.sleep(0.2)
    with contextlib.suppress(Exception):
        server.stop()
    return 0


# ---------------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    s3 = sub.add_parser("s3", help="(internal) the stack's S3 endpoint")
    s3.add_argument("--port", type=int, required=True)
    s3.add_argument("--bucket", required=True)
    s3.add_argument("--credentials", type=Path, required=True)
    s3.add_argument("--outage-s", type=float, default=20.0)
    parser.add_argument("--home", default=os.environ.get("STACK_HOME", ".stack"))
    parser.add_argument("--params", default=str(DEFAULT_PARAMS))
    parser.add_argument("--port", type=int, default=int(os.environ.get("STACK_PORT", "8080")))
    parser.add_argument(
        "--base-port",
        type=int,
        default=int(os.environ.get("STACK_BASE_PORT", "15432")),
        help="PostgreSQL's port; Redis, S3 and the two log servers take the next four",
    )
    parser.add_argument("--torch-workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=4, help="the default worker's")
    parser.add_argument("--grace-s", type=float, default=20.0)
    parser.add_argument("--s3-outage-s", type=float, default=20.0)
    parser.add_argument("--start-timeout-s", type=float, default=300.0)
    args = parser.parse_args(argv)
    if args.command == "s3":
        return serve_s3(args.port, args.bucket, args.credentials, args.outage_s)
    os.umask(0o077)
    return Stack(args).run()


if __name__ == "__main__":
    sys.exit(main())

"""The production stack, checked statically (no Docker engine runs on these machines): the compose
file's services, images, executor, environment, volumes, healthchecks and ports; that every
variable it uses is required (`${VAR:?message}`), documented in .env.example, and that no secret is
written in it; the `check-secrets` and `minio-init` scripts, run here through `sh` against stub
commands; the lake user's bucket-only policy; the two-stage Dockerfile; .dockerignore and
.gitignore keeping docker/.env out of the image and out of git; and the stack's params file.
`docker compose config`, where the client has the plugin, is in tests/cli/test_docker_cli.py."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from exfm.config import load_config
from tests.conftest import REPO, stack_module

DOCKER = REPO / "docker"
read_env_file = stack_module().read_env_file
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
ONE_SHOT = {"check-secrets", "minio-init", "airflow-init"}
# The stack's secrets: each must be required in compose and refused by check-secrets while it is
# still the placeholder of .env.example.
SECRETS = {
    "POSTGRES_PASSWORD",
    "REDIS_PASSWORD",
    "MINIO_ROOT_PASSWORD",
    "EXFM_S3_SECRET_KEY",
    "AIRFLOW_JWT_SECRET",
    "AIRFLOW_API_SECRET_KEY",
    "AIRFLOW_FERNET_KEY",
}
# Credentials that are not secret on their own but must be set (required in compose).
CREDENTIALS = SECRETS | {"POSTGRES_USER", "MINIO_ROOT_USER", "EXFM_S3_ACCESS_KEY"}
# What the lake user may do, and where.
LAKE_BUCKET_ACTIONS = {"s3:ListBucket", "s3:GetBucketLocation"}
LAKE_OBJECT_ACTIONS = {"s3:GetObject", "s3:PutObject", "s3:DeleteObject"}

# Compose's interpolation (compose-go's template package): `$$` is a literal `$`, `${NAME...}` and
# `$NAME` are variables, any other `$` is an error.
_INTERPOLATION = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?+])?(?P<arg>[^}]*)\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<invalid>))"
)


class MissingVariable(Exception):
    """What compose answers to a required variable that is unset or empty."""


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """The compose file as compose sees it with `env` as its .env: every `${NAME:?message}` replaced
    (MissingVariable when NAME is unset or empty), `$$` unescaped. Anything else (a bare `$NAME`, a
    default, a stray `$`) fails the test: this stack writes every variable as required."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        assert match["name"] and match["op"] == ":?", f"not ${{NAME:?message}}: {match[0]!r}"
        if not env.get(match["name"]):
            raise MissingVariable(match["name"], match["arg"])
        return env[match["name"]]

    return _INTERPOLATION.sub(substitute, value)


def read_env(path: Path) -> dict[str, str]:
    return dict(
        line.split("=", 1)
        for line in path.read_text().splitlines()
        if line and not line.startswith("#")
    )


def a_real_env() -> dict[str, str]:
    """.env.example with every secret replaced by a generated one, as an operator would."""
    env = read_env(DOCKER / ".env.example")
    for name in SECRETS:
        env[name] = base64.urlsafe_b64encode(os.urandom(24)).decode()
    env["AIRFLOW_FERNET_KEY"] = base64.urlsafe_b64encode(os.urandom(32)).decode()
    return env


def strings(value: Any) -> list[str]:
    """Every string value in the parsed compose file (what compose interpolates; not comments)."""
    if isinstance(value, dict):
        return [s for item in value.values() for s in strings(item)]
    if isinstance(value, list):
        return [s for item in value for s in strings(item)]
    return [value] if isinstance(value, str) else []


def references(compose: dict) -> list[re.Match[str]]:
    return [m for s in strings(compose) for m in _INTERPOLATION.finditer(s) if not m["escaped"]]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DOCKER / "docker-compose.yaml").read_text())


def test_services_images_and_executor(compose: dict) -> None:
    services = compose["services"]
    assert set(services) == {"check-secrets", "postgres", "redis", "minio", "minio-init"} | AIRFLOW
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["redis"]["image"].startswith("redis:")
    assert services["minio"]["image"].startswith("minio/minio:")
    for name in AIRFLOW:
        svc = services[name]
        assert svc["image"] == "exfm:latest" and svc["build"]["dockerfile"] == "docker/Dockerfile"
        assert svc["env_file"] == ["stack.env"]  # what every Airflow process shares
        env = {**read_env_file(DOCKER / "stack.env"), **svc["environment"]}
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert "@postgres:5432/" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
        assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://:${REDIS_PASSWORD:?")
        assert env["AIRFLOW__CELERY__BROKER_URL"].endswith("@redis:6379/0")
        assert env["AWS_ENDPOINT_URL"] == "http://minio:9000"
        assert env["EXFM_PARAMS"] == "/opt/exfm/docker/params.docker.yaml"
        mounts = {v.split(":")[1]: v for v in svc["volumes"]}
        assert mounts["/opt/exfm/dags"].endswith(":ro")
        # the ExFM console plugin, shipped in the image and mounted read-only like the DAGs
        assert env["AIRFLOW__CORE__PLUGINS_FOLDER"] == "/opt/exfm/plugins"
        assert mounts["/opt/exfm/plugins"] == "../plugins:/opt/exfm/plugins:ro"
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
    for name in ONE_SHOT:
        assert services[name].get("restart") in (None, "no"), name


def test_every_service_waits_for_the_secret_check(compose: dict) -> None:
    """Nothing starts (PostgreSQL and MinIO least of all: they would initialise their volumes with
    the placeholder passwords) before check-secrets has exited 0."""
    services = compose["services"]
    for name in ("postgres", "redis", "minio"):
        needs = services[name]["depends_on"]
        assert needs["check-secrets"]["condition"] == "service_completed_successfully", name
    assert not services["check-secrets"].get("depends_on")

    def needs(name: str) -> set[str]:
        direct = set(services[name].get("depends_on") or {})
        return direct.union(*(needs(other) for other in direct))

    for name in set(services) - {"check-secrets"}:
        assert "check-secrets" in needs(name), name


def test_ports_are_local_and_secrets_come_from_the_environment(compose: dict) -> None:
    for svc in compose["services"].values():
        for port in svc.get("ports", []):
            assert port.startswith("127.0.0.1:"), port
    used = {m["name"] for m in references(compose) if m["name"]}
    assert used >= CREDENTIALS, CREDENTIALS - used
    documented = set(read_env(DOCKER / ".env.example"))
    assert used <= documented, used - documented
    for svc in compose["services"].values():
        env = svc.get("environment") or {}
        for key, value in env.items():
            if re.search(r"PASSWORD|SECRET|FERNET|ACCESS_KEY", key):
                assert str(value).startswith("${"), (key, value)


def test_every_variable_is_required_with_a_message_naming_the_example(compose: dict) -> None:
    """`${VAR}` starts the stack with an empty value; `${VAR:?message}` stops compose first."""
    found = references(compose)
    assert {m["name"] for m in found} >= CREDENTIALS
    for m in found:
        assert m["name"] and m["op"] == ":?", m[0]
        assert "docker/.env.example" in m["arg"], m[0]
        # compose-go tries `-` (a default) before `:?` when the string has a `-` before its first
        # `?`, and a `-` inside the message would then be read as NAME-default: no `-` in messages.
        assert "-" not in m["arg"], m[0]


def test_compose_refuses_to_start_without_each_credential(compose: dict) -> None:
    example = read_env(DOCKER / ".env.example")
    assert all(example.values()), "every variable in .env.example must have a value"
    interpolate(compose, example)  # the example itself interpolates (docker compose config)
    for name in CREDENTIALS:
        for value in (None, ""):
            env = {k: v for k, v in example.items() if k != name}
            if value is not None:
                env[name] = value
            with pytest.raises(MissingVariable) as caught:
                interpolate(compose, env)
            assert caught.value.args[0] == name


def run_script(script: str, env: dict[str, str], path: Path | None = None) -> Any:
    sh = shutil.which("sh")
    if sh is None:
        pytest.skip("no POSIX sh here")
    search = os.environ.get("PATH", "")
    env = {**env, "PATH": f"{path}{os.pathsep}{search}" if path else search}
    return subprocess.run(
        [sh, "-c", script], env=env, capture_output=True, text=True, timeout=30, check=False
    )


def check_secrets(compose: dict, env: dict[str, str]) -> Any:
    svc = interpolate(compose, env)["services"]["check-secrets"]
    assert svc["entrypoint"] == ["/bin/sh", "-c"]
    return run_script(svc["command"][0], svc["environment"])


def test_check_secrets_refuses_the_example_placeholders(compose: dict) -> None:
    result = check_secrets(compose, read_env(DOCKER / ".env.example"))
    assert result.returncode != 0
    for name in SECRETS:
        assert f"{name} in docker/.env is empty or still the placeholder" in result.stderr, name
    assert "docker/.env.example" in result.stderr


def test_check_secrets_passes_real_secrets_and_names_each_bad_one(compose: dict) -> None:
    env = a_real_env()
    result = check_secrets(compose, env)
    assert result.returncode == 0, result.stderr
    placeholders = read_env(DOCKER / ".env.example")
    for name in SECRETS:
        result = check_secrets(compose, {**env, name: placeholders[name]})
        assert result.returncode != 0, name
        refusals = result.stderr.splitlines()
        assert refusals and all(name in line for line in refusals), (name, refusals)
    result = check_secrets(compose, {**env, "AIRFLOW_FERNET_KEY": "not-a-fernet-key-at-all"})
    assert result.returncode != 0 and "AIRFLOW_FERNET_KEY" in result.stderr
    result = check_secrets(compose, {**env, "EXFM_S3_ACCESS_KEY": env["MINIO_ROOT_USER"]})
    assert result.returncode != 0 and "EXFM_S3_ACCESS_KEY" in result.stderr


def test_airflow_gets_the_lake_user_not_minios_root(compose: dict) -> None:
    services = compose["services"]
    for name in AIRFLOW:
        env = services[name]["environment"]
        assert env["AWS_ACCESS_KEY_ID"].startswith("${EXFM_S3_ACCESS_KEY:?"), name
        assert env["AWS_SECRET_ACCESS_KEY"].startswith("${EXFM_S3_SECRET_KEY:?"), name
        assert not any("MINIO_ROOT" in str(value) for value in env.values()), name
    with_root = {
        name
        for name, svc in services.items()
        if any("MINIO_ROOT" in str(value) for value in (svc.get("environment") or {}).values())
    }
    assert with_root == {"check-secrets", "minio", "minio-init"}


# A stand-in for MinIO's client: logs each call, keeps the policy file it is given, and fails the
# call named in FAIL_ON.
FAKE_MC = """#!/bin/sh
echo "$*" >> "$MC_LOG"
if [ "$1 $2 $3" = "admin policy create" ]; then cp "$6" "$MC_LOG.policy.json"; fi
if [ -n "${FAIL_ON:-}" ] && [ "$1 $2 $3" = "$FAIL_ON" ]; then exit 1; fi
exit 0
"""


def minio_init(compose: dict, env: dict[str, str], tmp_path: Path, **extra: str) -> Any:
    svc = interpolate(compose, env)["services"]["minio-init"]
    assert svc["entrypoint"] == ["/bin/sh", "-c"]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "mc").write_text(FAKE_MC)
    (bin_dir / "mc").chmod(0o755)
    log = tmp_path / "mc.log"
    log.unlink(missing_ok=True)
    script = svc["command"][0].replace("/tmp/", f"{tmp_path}/")
    return run_script(script, {**svc["environment"], "MC_LOG": str(log), **extra}, bin_dir)


def test_minio_init_creates_the_lake_user_with_a_bucket_only_policy(
    compose: dict, tmp_path: Path
) -> None:
    env = a_real_env()
    bucket, user, secret = env["EXFM_BUCKET"], env["EXFM_S3_ACCESS_KEY"], env["EXFM_S3_SECRET_KEY"]
    assert user != env["MINIO_ROOT_USER"]
    result = minio_init(compose, env, tmp_path)
    assert result.returncode == 0, result.stderr
    calls = (tmp_path / "mc.log").read_text().splitlines()
    created = next(c for c in calls if c.startswith("admin policy create lake "))
    policy_name = created.split()[4]
    assert calls.index(f"mb --ignore-existing lake/{bucket}") < calls.index(created)
    assert f"admin user add lake {user} {secret}" in calls
    assert calls[-1] == f"admin policy attach lake {policy_name} --user {user}"

    policy = json.loads((tmp_path / "mc.log.policy.json").read_text())
    granted: set[str] = set()
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"
        actions = set(statement["Action"])
        resources = set(statement["Resource"])
        assert "Condition" not in statement and "NotAction" not in statement
        if actions <= LAKE_BUCKET_ACTIONS:
            assert resources == {f"arn:aws:s3:::{bucket}"}, statement
        else:
            assert actions <= LAKE_OBJECT_ACTIONS, statement
            assert resources == {f"arn:aws:s3:::{bucket}/*"}, statement
        granted |= actions
    assert granted == LAKE_BUCKET_ACTIONS | LAKE_OBJECT_ACTIONS


def test_minio_init_fails_when_a_step_fails(compose: dict, tmp_path: Path) -> None:
    """The Airflow services wait for minio-init to succeed: a failed step must fail it."""
    for step in ("admin policy create", "admin user add", "admin policy attach"):
        result = minio_init(compose, a_real_env(), tmp_path, FAIL_ON=step)
        assert result.returncode != 0, step


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """docker/Dockerfile as stages of (INSTRUCTION, arguments), continuation lines joined."""
    text = (DOCKER / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", re.sub(r"^\s*#.*\n", "", text, flags=re.M))
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        instruction, _, args = line.strip().partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        assert stages, "an instruction before the first FROM"
        stages[-1].append((instruction.upper(), " ".join(args.split())))
    return stages


def test_dockerfile_builds_in_one_stage_and_runs_from_another() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2
    builder, final = stages[0], stages[-1]
    builder_name = builder[0][1].split()[-1]
    assert re.fullmatch(r"python:3\.11-slim AS \S+", builder[0][1], re.I)
    assert re.fullmatch(r"python:3\.11-slim( AS \S+)?", final[0][1], re.I)

    def runs(stage: list[tuple[str, str]]) -> str:
        return " && ".join(args for instruction, args in stage if instruction == "RUN")

    # the builder: a compiler, then torch's CPU wheel, then the lock, then the package
    built = runs(builder)
    assert "build-essential" in built
    torch = built.index(
        "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"
    )
    assert torch < built.index("pip install -r requirements.txt -c constraints.txt")
    assert re.search(r"pip install --no-deps (-e )?\.", built)
    # the final stage: runtime libraries only, the builder's virtualenv on PATH, a non-root user
    final_runs = runs(final)
    words = set(final_runs.split())
    assert not words & {"build-essential", "gcc", "g++", "make"}, words
    assert not any(word.endswith("-dev") for word in words), words
    assert "build-essential" not in final_runs and "pip install" not in final_runs
    assert {"libpq5", "tini"} <= words
    copied = [args.split() for instruction, args in final if instruction == "COPY"]
    venv = next(a[-1] for a in copied if a[0] == f"--from={builder_name}")
    envs = " ".join(args for instruction, args in final if instruction == "ENV")
    assert re.search(rf"\bPATH={re.escape(venv)}/bin:\$PATH\b", envs)
    users = [args for instruction, args in final if instruction == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert re.search(rf"useradd [^&]*--uid 50000 [^&]*\b{users[-1]}\b", final_runs)
    assert ("ENTRYPOINT", '["/usr/bin/tini", "--"]') in final


def dockerfile_sources() -> list[str]:
    """The repository paths the Dockerfile COPYs (not those copied from another stage)."""
    sources = []
    for stage in dockerfile_stages():
        for instruction, args in stage:
            if instruction == "COPY" and not args.startswith("--from="):
                sources += [p for p in args.split()[:-1] if not p.startswith("--")]
    return sources


def test_dockerfile_copies_only_what_exists() -> None:
    sources = dockerfile_sources()
    assert {"requirements.txt", "constraints.txt", "exfm", "dags", "plugins"} <= set(sources)
    for path in sources:
        assert (REPO / path).exists(), path


def dockerignore_excludes(path: str) -> bool:
    """Whether .dockerignore keeps `path` (relative to the build context) out of the context: the
    last pattern that matches the path or one of its parent folders decides, `!` lets back in."""
    excluded = False
    for line in (REPO / ".dockerignore").read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negated = pattern.startswith("!")
        pattern = os.path.normpath(pattern.removeprefix("!")).lstrip("/")
        regex = ""
        for token in re.split(r"(\*\*/|\*\*|\*|\?)", pattern):
            regex += {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(
                token, re.escape(token)
            )
        parts = path.split("/")
        candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(re.fullmatch(regex, candidate) for candidate in candidates):
            excluded = not negated
    return excluded


def test_dockerignore_keeps_secrets_and_local_state_out_of_the_build_context() -> None:
    for path in (
        ".venv/bin/python",
        "data/lake/x.parquet",
        "docker/.env",
        ".env",
        "dags/.env",
        ".git/HEAD",
        ".dvc/cache/files/md5/00/aa",
        "reports/index.html",
        ".airflow/airflow.cfg",
        ".pytest_cache/v/cache",
        "exfm/__pycache__/cli.cpython-311.pyc",
        "tests/conftest.py",
    ):
        assert dockerignore_excludes(path), path


def test_dockerignore_keeps_what_the_dockerfile_copies() -> None:
    for source in dockerfile_sources():
        root = REPO / source
        files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
        for file in files:
            relative = file.relative_to(REPO).as_posix()
            if "__pycache__" in relative or relative.endswith(".pyc"):
                continue
            assert not dockerignore_excludes(relative), relative


def git(*args: str) -> subprocess.CompletedProcess[str]:
    git_bin = shutil.which("git")
    inside = git_bin and subprocess.run(
        [git_bin, "rev-parse", "--is-inside-work-tree"],
        cwd=REPO,
        capture_output=True,
        check=False,
    )
    if not inside or inside.returncode != 0:
        pytest.skip("not a git work tree")
    return subprocess.run([git_bin, *args], cwd=REPO, capture_output=True, text=True, check=False)


def test_docker_env_is_git_ignored_and_the_example_is_not() -> None:
    # `git check-ignore` reads the ignore rules only; a tracked docker/.env reports "not ignored"
    assert git("check-ignore", "-q", "docker/.env").returncode == 0
    assert git("check-ignore", "-q", "--no-index", "some/where/.env").returncode == 0
    assert git("check-ignore", "-q", "--no-index", "docker/.env.example").returncode == 1


def test_the_stacks_params_put_the_lake_on_s3() -> None:
    cfg = load_config(DOCKER / "params.docker.yaml")
    assert cfg.lake.root.startswith("s3://")
    assert cfg.airflow.torch_queue == "torch"
    bucket = cfg.lake.root.removeprefix("s3://").split("/")[0]
    env = read_env(DOCKER / ".env.example")
    assert env["EXFM_BUCKET"] == bucket

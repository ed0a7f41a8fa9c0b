"""A copy of the working tree as its own git + DVC project, and running `dvc` in it (the DVC
end-to-end tests share these)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

TOP_LEVEL_SKIP = {".venv", ".git", "data", "reports", ".airflow"}
SKIP_EVERYWHERE = {"__pycache__", ".pytest_cache", ".ruff_cache", "dvc.lock"}


def copy_project(dest: Path) -> None:
    """The working tree as a user has it, without the venv, the data and git's history."""

    def ignore(folder: str, names: list[str]) -> set[str]:
        top = Path(folder) == REPO
        return {
            n
            for n in names
            if (top and n in TOP_LEVEL_SKIP) or n in SKIP_EVERYWHERE or n.endswith(".egg-info")
        }

    shutil.copytree(REPO, dest, ignore=ignore)


def dvc(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DVC_NO_ANALYTICS": "1",
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
    }
    return subprocess.run(
        [str(Path(sys.executable).parent / "dvc"), *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def ran(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [
        line.split("'")[1]
        for line in result.stdout.splitlines()
        if line.startswith("Running stage")
    ]


def commit_all(root: Path, message: str) -> None:
    git = ["git", "-c", "user.email=ci@example.invalid", "-c", "user.name=ci"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", message]):
        subprocess.run([*git, *args], cwd=root, check=True, capture_output=True)

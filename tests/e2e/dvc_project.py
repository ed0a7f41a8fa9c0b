"""A copy of the working tree as its own git + DVC project, and running `dvc` in it (the DVC
end-to-end tests share these)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def copy_project(dest: Path) -> None:
    """The files a checkout of the working tree has (what git tracks, and what it would track:
    untracked files that are not ignored), as a fresh clone gives them to a user; no venv, no
    data, no reports."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        check=True,
        capture_output=True,
    ).stdout.decode()
    for rel in filter(None, listed.split("\0")):
        src = REPO / rel
        if not src.is_file():  # deleted in the working tree, not yet committed
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)


def dvc(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DVC_NO_ANALYTICS": "1",
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(project),  # the stages run the project's code, as in a checkout
    }
    return subprocess.run(
        [str(Path(sys.executable).parent / "dvc"), *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,  # the quick results set on a busy machine (make test runs two shards)
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

"""The committed dvc.lock files are those of the committed code: in a fresh checkout, `dvc status`
names no code dependency and no param as changed, in either pipeline (dvc.yaml and
experiments/dvc.yaml); only the outputs, which a clone does not have, are missing. A commit that
changes code without running the pipeline again fails here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.dvc_project import commit_all, copy_project, dvc

pytestmark = pytest.mark.slow

OUTPUTS = ("data/", "reports/")


def test_a_fresh_checkout_finds_its_locks_matching_its_code(tmp_path: Path) -> None:
    root = tmp_path / "clone"
    copy_project(root)
    commit_all(root, "a checkout")
    result = dvc(root, "status", "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    status = json.loads(result.stdout or "{}")
    stages = [s.split(":")[-1] for s in status]
    assert "fm" in stages and "ladder" in stages, status  # both pipelines were looked at
    stale = {}
    for stage, changes in status.items():
        for change in changes:
            if not isinstance(change, dict):  # "always changed" and the like
                stale[stage] = change
                continue
            for path, what in change.get("changed deps", {}).items():
                if isinstance(what, dict) or not path.startswith(OUTPUTS):  # params or code
                    stale.setdefault(stage, {})[path] = what
    assert not stale, (
        "dvc.lock does not match the code or params of this checkout; run `make run` (and "
        f"`make results` for experiments/dvc.lock) and commit the locks: {stale}"
    )

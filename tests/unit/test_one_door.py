"""One door: the entry points (the CLI, the DVC stages, distributed training, the experiments, the
DAGs) reach training, scoring, landing and evaluation only through exfm.stages, so the gate and
the lineage checks hold on every path. That the DAS predicts without the trainer (a fresh
interpreter) is in tests/cli/test_one_door_cli.py."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

ENTRY_POINTS = [
    "exfm/cli.py",
    "exfm/pipeline.py",
    "exfm/distributed.py",
    "exfm/experiments/runner.py",
    "exfm/experiments/suite.py",
    *sorted(str(p.relative_to(REPO)) for p in (REPO / "dags").glob("*.py")),
]
# what only exfm.stages may call: it gates the day and records lineage around each
BEHIND_THE_DOOR = {
    ("exfm.training", "train_day"),
    ("exfm.das", "backfill_day"),
    ("exfm.das", "backfill"),
    ("exfm.data.world", "generate"),
    ("exfm.data.ingest", "ingest"),
    ("exfm.evaluation", "evaluate"),
    ("data_checks.gate", "check_day"),
}


def _imports(path: Path) -> set[tuple[str, str]]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found |= {(node.module, alias.name) for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {(alias.name, "*") for alias in node.names}
    return found


def test_entry_points_reach_the_work_through_the_stages_only() -> None:
    for rel in ENTRY_POINTS:
        used = _imports(REPO / rel)
        assert not used & BEHIND_THE_DOOR, f"{rel} calls {used & BEHIND_THE_DOOR} directly"
        assert ("exfm.training", "*") not in used and ("exfm.das", "*") not in used, rel

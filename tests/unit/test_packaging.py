"""`pip install .` gives a working install: pyproject.toml declares every third-party package that
exfm and data_checks import (the lock, constraints.txt, stays the source of versions)."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib

from tests.conftest import REPO


def _imported_packages() -> set[str]:
    found = set()
    for package in ("exfm", "data_checks"):
        for path in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    found |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"exfm", "data_checks", "__future__"}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_every_imported_package_is_a_declared_dependency() -> None:
    declared = {
        _name(r)
        for r in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    }
    distributions = importlib.metadata.packages_distributions()
    missing = {}
    for module in sorted(_imported_packages()):
        names = {d.lower().replace("_", "-") for d in distributions.get(module, [module])}
        if not names & declared:
            missing[module] = sorted(names)
    assert not missing, f"imported but not in pyproject.toml's dependencies: {missing}"
    assert "torch" in declared and "great-expectations" in declared

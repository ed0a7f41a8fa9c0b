"""`dvc repro` on a temporary copy of the repository with a tiny params override: the whole
pipeline runs, a second repro does nothing, metrics list NE per vertical, a params change shows in
`dvc params diff` and re-runs only the stages that read it, and `dvc exp run` / `dvc exp show`
compare variants."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.e2e.dvc_project import commit_all, copy_project, dvc, ran


def _tiny(params: Path) -> None:
    data = yaml.safe_load(params.read_text())
    data["world"].update(
        days=3, impressions_per_day=4000, n_users=2000, n_ads=300, n_advertisers=40, n_contexts=100
    )
    data["fm"].update(embedding_dim=8, vertical_dim=4, cross_layers=1, deep_layers=[32, 16])
    data["vm"].update(embedding_dim=4, hidden=[16, 8], aux_hidden=4, max_hash_buckets=512)
    data["publish"]["max_ne"] = 100.0
    data["checks"]["reference_days"] = 2
    params.write_text(yaml.safe_dump(data, sort_keys=False))


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dvc") / "exfm"
    copy_project(root)
    _tiny(root / "params.yaml")
    commit_all(root, "tiny params")
    return root


def test_repro_noop_metrics_params_and_experiments(project: Path) -> None:
    first = dvc(project, "repro")
    assert first.returncode == 0, first.stdout + first.stderr
    assert ran(first) == [
        "land",
        "checks",
        "fm",
        "das",
        "vm@feed",
        "vm@stories",
        "vm@search",
        "vm@video",
        "evaluate",
        "report",
    ]
    assert (project / "reports" / "index.html").exists()

    again = dvc(project, "repro")
    assert again.returncode == 0 and ran(again) == []
    assert "Data and pipelines are up to date" in again.stdout

    shown = dvc(project, "metrics", "show", "--json")
    metrics = json.loads(shown.stdout)
    values = next(iter(metrics.values()))["data"]["reports/metrics.json"]["data"]
    for vertical in ("feed", "stories", "search", "video", "all"):
        assert values[vertical]["vm"]["ne"] > 0
        assert values[vertical]["fm"]["ne"] > 0
        assert "transfer_ratio" in values[vertical]["vm"]

    params = project / "params.yaml"
    data = yaml.safe_load(params.read_text())
    data["vm"]["variant"] = "kd"
    params.write_text(yaml.safe_dump(data, sort_keys=False))
    diff = dvc(project, "params", "diff")
    assert "vm.variant" in diff.stdout and "kd" in diff.stdout
    rerun = dvc(project, "repro")
    assert rerun.returncode == 0, rerun.stderr
    assert ran(rerun) == ["vm@feed", "vm@stories", "vm@search", "vm@video", "evaluate", "report"]

    data["vm"]["per_vertical"]["search"]["lr"] = 0.01
    params.write_text(yaml.safe_dump(data, sort_keys=False))
    one = dvc(project, "repro")
    assert ran(one) == ["vm@search", "evaluate", "report"]

    data["vm"]["variant"] = "ah_sa"
    data["vm"]["per_vertical"]["search"]["lr"] = None
    params.write_text(yaml.safe_dump(data, sort_keys=False))
    assert dvc(project, "repro").returncode == 0
    exp = dvc(project, "exp", "run", "-S", "vm.variant=baseline")
    assert exp.returncode == 0, exp.stdout + exp.stderr
    table = json.loads(dvc(project, "exp", "show", "--json").stdout)
    experiments = [e for rev in table for e in (rev.get("experiments") or [])]
    assert experiments
    data_of = experiments[0]["revs"][0]["data"]
    ne = data_of["metrics"]["reports/metrics.json"]["data"]["feed"]["vm"]["ne"]
    assert ne > 0
    assert data_of["params"]["params.yaml"]["data"]["vm"]["variant"] == "baseline"

"""`dvc repro` on a temporary copy of the repository with a tiny params override (a small world
of two of the verticals), the way a user works: the whole pipeline runs; a second repro does
nothing; every stage's code dependencies name every project module it loads; then one change at
a time (a param of the FM, of the DAS, of one vertical's VM, a line of code) re-runs exactly the
stages that read what changed (one of the world is named by `dvc status` as the landing stage's
alone), and afterwards every VM snapshot was trained on the DAS partitions the lake holds and
reports/metrics.json was computed from evaluations of the models the registry holds; an experiment
that retrains the FM into the same lake is rebuilt by `dvc repro` once the committed params are
back, to the same metrics, and DVC's experiments table shows it with its param and metrics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from exfm.lake import DAS, EVALS, Lake
from exfm.lineage import parse_snapshot
from exfm.registry import Registry
from tests.e2e.dvc_project import commit_all, copy_project, dvc, ran

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

# two of the default four, as a user's own set of verticals: the fan-out follows
# features.verticals (and halves the VM stages of every repro)
VERTICALS = ["feed", "search"]
VMS = [f"vm@{v}" for v in VERTICALS]
ALL = ["land", "checks", "fm", "das", *VMS, "evaluate", "report"]


def _tiny(params: Path) -> None:
    data = yaml.safe_load(params.read_text())
    data["world"].update(
        days=4, impressions_per_day=4000, n_users=2000, n_ads=300, n_advertisers=40, n_contexts=100
    )
    world = data["world"]["verticals"]
    share = sum(world[v]["traffic_share"] for v in VERTICALS)
    data["world"]["verticals"] = {
        v: {**world[v], "traffic_share": world[v]["traffic_share"] / share} for v in VERTICALS
    }
    data["features"]["verticals"] = VERTICALS
    for feature in data["features"]["features"].values():
        if feature.get("only_verticals"):
            feature["only_verticals"] = [v for v in feature["only_verticals"] if v in VERTICALS]
    data["vm"]["per_vertical"] = {v: data["vm"]["per_vertical"][v] for v in VERTICALS}
    data["fm"].update(embedding_dim=8, vertical_dim=4, cross_layers=1, deep_layers=[32, 16])
    data["vm"].update(embedding_dim=4, hidden=[16, 8], aux_hidden=4, max_hash_buckets=512)
    data["publish"]["max_ne"] = 100.0
    data["checks"]["reference_days"] = 2
    # 1,200 to 2,800 rows a vertical: CTRs and feature shares move by chance from one day to
    # the next
    data["checks"]["ctr_ratio"] = [0.2, 5.0]
    data["checks"]["psi"] = {"warn": 0.5, "fail": 5.0}
    params.write_text(yaml.safe_dump(data, sort_keys=False))


def _set(project: Path, path: str, value: object) -> None:
    params = project / "params.yaml"
    data = yaml.safe_load(params.read_text())
    node = data
    *parents, key = path.split(".")
    for part in parents:
        node = node[part]
    node[key] = value
    params.write_text(yaml.safe_dump(data, sort_keys=False))


def _exfm(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The project's own `exfm` (its code, not the installed one's)."""
    return _python(project, "-m", "exfm", *args)


def _python(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=project,
        env={**os.environ, "PYTHONPATH": str(project)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def _repro(project: Path, *args: str) -> list[str]:
    """The stages `dvc repro` ran, in its order, but the VMs' (which do not depend on each other
    and which DVC runs in an order of its own) in the order of VERTICALS."""
    result = dvc(project, "repro", *args)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    stages = ran(result)
    vms = iter(sorted((s for s in stages if s in VMS), key=VMS.index))
    return [next(vms) if s in VMS else s for s in stages]


def _assert_consistent(project: Path) -> None:
    """Nothing in the lake is stale; every VM snapshot was trained on the DAS partition the lake
    holds now; metrics.json was computed from evaluations that the lake holds, made by the
    snapshots the registry holds."""
    stale = _exfm(project, "lineage", "--stale", "--json")
    assert stale.returncode == 0, stale.stderr
    assert json.loads(stale.stdout)["stale"] == []
    lake = Lake(str(project / "data" / "lake"))
    registry = Registry(lake)
    vms = 0
    for vertical in VERTICALS:
        for model in ("vm_ah_sa", "vm_baseline"):
            for meta in registry.history(model, vertical):
                vms += 1
                das = {k: v for k, v in meta.inputs.items() if k.startswith("das/")}
                assert len(das) == (model != "vm_baseline"), meta.inputs
                for name, content in das.items():
                    values = DAS.parse(name)
                    assert values is not None and lake.content_id(DAS, values) == content
    assert vms
    read = json.loads((project / "data" / "pipeline" / "evaluate.json").read_text())["evals"]
    assert read
    for name, entry in read.items():
        values = EVALS.parse(name)
        assert values is not None and lake.content_id(EVALS, values) == entry["content_id"]
        for source, content in entry["inputs"].items():
            snapshot = parse_snapshot(source)
            if snapshot is not None:
                assert registry.meta(*snapshot).sha256 == content
    # the metrics are those of these evaluations: recomputed from the lake, they agree
    metrics = json.loads((project / "reports" / "metrics.json").read_text())
    table = _exfm(project, "evaluate", "--model", "fm", "--model", "vm_ah_sa")
    assert table.returncode == 0, table.stderr
    pooled = {
        (cells[0], cells[1]): float(cells[5])
        for cells in (line.split() for line in table.stdout.splitlines())
        if len(cells) > 5 and cells[2] == "pooled"
    }
    assert pooled[("fm", "all")] == pytest.approx(metrics["all"]["fm"]["ne"], abs=1e-4)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dvc") / "exfm"
    copy_project(root)
    _tiny(root / "params.yaml")
    commit_all(root, "tiny params")
    assert _repro(root) == ALL
    return root


def test_noop_and_every_stage_names_the_code_it_runs(project: Path) -> None:
    again = dvc(project, "repro")
    assert again.returncode == 0 and ran(again) == []
    assert "Data and pipelines are up to date" in again.stdout
    assert (project / "reports" / "index.html").exists()
    _assert_consistent(project)
    declared = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]
    probe = (
        "import json, os, sys\n"
        "from exfm.cli import main\n"
        "rc = main(sys.argv[1:])\n"
        "root = os.getcwd() + os.sep\n"
        "files = {getattr(m, '__file__', None) or '' for m in list(sys.modules.values())}\n"
        "print(json.dumps(sorted(os.path.relpath(f, root) for f in files\n"
        "    if f.startswith(root) and not f.startswith(root + '.'))))\n"
        "sys.exit(rc)\n"
    )
    for stage in ["land", "checks", "fm", "das", "vm", "evaluate", "report"]:
        args = ["pipeline", stage, *(["--vertical", "search"] if stage == "vm" else [])]
        result = _python(project, "-c", probe, *args)
        assert result.returncode == 0, result.stderr[-3000:]
        loaded = json.loads(result.stdout.splitlines()[-1])
        entry = declared[stage]["do"] if stage == "vm" else declared[stage]
        deps = [d for d in entry["deps"] if not d.startswith(("data/", "reports/"))]
        missing = [
            f for f in loaded if not any(f == d or f.startswith(d.rstrip("/") + "/") for d in deps)
        ]
        assert not missing, f"stage {stage} runs {missing}, which dvc.yaml does not name"
    # running the stages again by hand wrote the same content: nothing for DVC to do
    assert ran(dvc(project, "repro")) == []


def test_each_change_reruns_exactly_the_stages_that_read_it(project: Path) -> None:
    _set(project, "fm.lr", 0.003)  # a new FM: new predictions, new VMs
    assert _repro(project) == ["fm", "das", *VMS, "evaluate", "report"]
    _assert_consistent(project)

    # other traffic: the stage that lands it reads the seed, everything else follows from its
    # output (as the first repro, from nothing, ran ALL); set back without running it
    seed = yaml.safe_load((project / "params.yaml").read_text())["world"]["seed"]
    _set(project, "world.seed", seed + 1)
    status = dvc(project, "status", "--json", "dvc.yaml")
    assert status.returncode == 0, status.stderr
    assert list(json.loads(status.stdout)) == ["land"], status.stdout
    _set(project, "world.seed", seed)

    _set(project, "das.fm_delay_days", 1)  # older FMs score each day: new predictions
    assert _repro(project) == ["das", *VMS, "evaluate", "report"]
    _assert_consistent(project)
    das = json.loads((project / "data" / "pipeline" / "das.json").read_text())
    assert das["2026-01-08"]["fm_version"] == "fm-2026-01-06"
    assert "skipped" in das["2026-01-06"]  # no FM trained two days before it

    _set(project, "vm.per_vertical.search.lr", 0.01)  # one vertical's VM
    assert _repro(project) == ["vm@search", "evaluate", "report"]
    _assert_consistent(project)

    optim = project / "exfm" / "optim.py"
    optim.write_text(optim.read_text() + "\n# a comment: same code, same models\n")
    # the training stages run again, retrain to the same bytes, and nothing downstream moves
    assert _repro(project) == ["fm", *VMS]
    _assert_consistent(project)


def test_an_experiment_on_the_same_lake_is_rebuilt_by_repro(project: Path) -> None:
    commit_all(project, "the committed run")
    committed = (project / "reports" / "metrics.json").read_text()
    page = (project / "reports" / "index.html").read_text()
    exp = dvc(project, "exp", "run", "-S", "fm.lr=0.01")
    assert exp.returncode == 0, exp.stdout[-3000:] + exp.stderr[-3000:]
    assert (project / "reports" / "metrics.json").read_text() != committed
    # the experiment is in DVC's table, with its param and its metrics
    table = json.loads(dvc(project, "exp", "show", "--json").stdout)
    experiments = [e for rev in table for e in (rev.get("experiments") or [])]
    assert len(experiments) == 1
    data_of = experiments[0]["revs"][0]["data"]
    assert data_of["params"]["params.yaml"]["data"]["fm"]["lr"] == 0.01
    shown = data_of["metrics"]["reports/metrics.json"]["data"]
    assert (
        shown["all"]["fm"]["ne"]
        == json.loads((project / "reports" / "metrics.json").read_text())["all"]["fm"]["ne"]
    )
    git = ["git", "-c", "user.email=ci@example.invalid", "-c", "user.name=ci"]
    subprocess.run([*git, "checkout", "--", "."], cwd=project, check=True)  # back to the commit
    # the experiment overwrote the FM, the predictions, the VMs and their evaluations: rebuilt;
    # the report, whose inputs are the committed metrics again, comes back from DVC's cache
    assert _repro(project) == ["fm", "das", *VMS, "evaluate"]
    assert (project / "reports" / "metrics.json").read_text() == committed
    assert (project / "reports" / "index.html").read_text() == page
    _assert_consistent(project)


def test_variants_and_the_metrics_and_params_tables(project: Path) -> None:
    shown = dvc(project, "metrics", "show", "--json")
    metrics = json.loads(shown.stdout)
    values = next(iter(metrics.values()))["data"]["reports/metrics.json"]["data"]
    for vertical in (*VERTICALS, "all"):
        assert values[vertical]["vm"]["ne"] > 0
        assert values[vertical]["fm"]["ne"] > 0
        assert "transfer_ratio" in values[vertical]["vm"]

    _set(project, "vm.variant", "kd")
    diff = dvc(project, "params", "diff")
    assert "vm.variant" in diff.stdout and "kd" in diff.stdout
    assert _repro(project) == [*VMS, "evaluate", "report"]
    _set(project, "vm.variant", "ah_sa")
    # the same VMs as before kd: the same metrics, so DVC restores the report from its run cache
    assert _repro(project) == [*VMS, "evaluate"]

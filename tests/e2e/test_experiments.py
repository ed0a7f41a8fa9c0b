"""The ExFM results end to end: `dvc repro experiments/dvc.yaml` on a copy of the repository with
the quick settings (experiment.quick as the overrides of every run, a short grid, two FM delays
and two refresh cadences, two OBD seeds) runs every experiment in order on real lakes, real
training and the real Open Bandit sample; the outputs have the structure the results page reads
and are consistent with each other; a second repro does nothing; the page is offline and renders
in headless Chromium."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from exfm import ids
from exfm.experiments import ORDER
from tests.conftest import SHARED
from tests.e2e.browser import Page, screenshot
from tests.e2e.dvc_project import commit_all, copy_project, dvc, ran

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

STAGES = list(ORDER)  # every experiment, then the results page
VERTICALS = ["feed", "search", "stories", "video"]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("results") / "exfm"
    copy_project(root)
    (root.parent / "shared").symlink_to(SHARED)  # ../shared beside the project, as in a checkout
    params = root / "params.yaml"
    data = yaml.safe_load(params.read_text())
    e = data["experiment"]
    e["overrides"] = e["quick"]
    e["grid"] = {
        "distill_weight": [1.0, 2.0],
        "label_scale": [1.0],
        "aux_hidden": [16],
        "sa_weight": [1.0],
    }
    # two tuning worlds: the default shape and a half-clicking one with 2 verticals
    e["tune_worlds"] = [
        {"base_ctr": None, "drift": 1.0, "verticals": 4, "fm_delay": None},
        {"base_ctr": 0.5, "drift": 3.0, "verticals": 2, "fm_delay": 1},
    ]
    e.update(tune_overrides=[], tune_days=4, grid_extend=1)
    # two robustness cells on one world of 6 days (they differ only in the FM delay)
    e["robustness"].update(
        base_ctr=[0.3],
        drift=[1.0],
        verticals=[3],
        fm_delay=[0, 2],
        center={"base_ctr": 0.3, "drift": 1.0, "verticals": 3, "fm_delay": 0},
        overrides=["world.days=6"],
    )
    # three FM histories of the small size: 0, 1 and 2 days before the VMs' 3 days (the repro
    # runs the full mode on the quick overrides, so the full mode's settings are the ones read)
    e["history"].update(sizes=["xs"], days_before=[0, 1, 2], vm_days=3, overrides=[])
    # the freshness gap at its two ends (its evaluation days are those the largest delay
    # leaves) and one cadence beside daily refreshes
    e.update(delays=[0, 4], cadences=[1, 3])
    e.update(obd_seeds=2, bootstrap=200)
    params.write_text(yaml.safe_dump(data, sort_keys=False))
    commit_all(root, "quick results")
    first = dvc(root, "repro", "experiments/dvc.yaml")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    order = [name.split(":")[1] for name in ran(first)]
    assert sorted(order) == sorted(STAGES)
    assert order[0] == "tune" and order[-1] == "results"
    for after in ("freshness", "scaling", "amortization"):
        assert order.index("ladder") < order.index(after)
    return root


def _load(project: Path, name: str) -> dict:
    return json.loads((project / "reports" / "experiments" / f"{name}.json").read_text())


def _inside(value: float, ci: list[float]) -> bool:
    return ci[0] - 1e-9 <= value <= ci[1] + 1e-9


def test_a_second_repro_does_nothing_and_the_main_pipeline_is_separate(project: Path) -> None:
    again = dvc(project, "repro", "experiments/dvc.yaml")
    assert again.returncode == 0 and ran(again) == []
    status = dvc(project, "status", "dvc.yaml")
    assert "experiments/dvc.yaml" not in status.stdout


def test_tune_chose_from_its_grid_on_other_worlds_by_the_worst_one(project: Path) -> None:
    tune = _load(project, "tune")
    params = yaml.safe_load((project / "params.yaml").read_text())
    seed = params["world"]["seed"]
    assert [w["seed"] for w in tune["worlds"]] == [seed + 1, seed + 2]
    assert [len(w["days"]) for w in tune["worlds"]] == [4, 4]
    # the half-clicking world shows its positive rate in its data
    assert tune["worlds"][0]["ctr"] < 0.05 < 0.25 < tune["worlds"][1]["ctr"]
    ah = [t for t in tune["tried"] if t["variant"] == "ah"]
    for t in tune["tried"]:
        assert set(t["gains_pct"]) == {"w0", "w1"}
        assert t["worst_gain_pct"] == min(t["gains_pct"].values())
    best = max(ah, key=lambda t: (t["worst_gain_pct"], t["mean_gain_pct"]))
    assert best["distill_weight"] == tune["chosen"]["distill_weight"]
    # a best value at an end of the grid is tried once past it (grid_extend 1)
    tried_w = sorted({t["distill_weight"] for t in ah})
    assert tried_w == tune["grid"]["distill_weight"]
    assert len(tried_w) == 3 and tune["extended"]["distill_weight"] == [
        w for w in tried_w if w not in (1.0, 2.0)
    ]
    assert tune["command"] == "exfm experiment tune"
    ladder = _load(project, "ladder")
    assert ladder["hyperparameters"] == tune["chosen"]  # frozen from then on
    assert _load(project, "obd")["hyperparameters"] == tune["chosen"]


def test_ladder_is_complete_and_consistent(project: Path) -> None:
    lad = _load(project, "ladder")
    s = lad["summary"]["verticals"]
    assert sorted(v for v in s if v != "all") == VERTICALS
    models = s["all"]
    assert set(models) == {"fm", "baseline", "kd", "ah", "ah2", "ah_sa", "oracle"}
    # the FM lies between the baseline VM and the oracle on the default world
    assert models["oracle"]["ne"] < models["fm"]["ne"] < models["baseline"]["ne"]
    for vertical in [*VERTICALS, "all"]:
        base = s[vertical]["baseline"]["ne"]
        fm_gain = s[vertical]["fm"]["ne_gain_pct"]
        for name in ("fm", "kd", "ah", "ah2", "ah_sa"):
            m = s[vertical][name]
            assert m["ne_gain_pct"] == pytest.approx((base - m["ne"]) / base * 100)
            assert _inside(m["ne"], m["ne_ci"]) and _inside(m["ne_gain_pct"], m["ne_gain_pct_ci"])
            assert 0.5 < m["auc"] < 1 and 0.5 < m["calibration"] < 2
            if name != "fm" and fm_gain > 0:
                assert m["transfer_ratio"] == pytest.approx(m["ne_gain_pct"] / fm_gain)
    rows = {s["all"][m]["rows"] for m in ("fm", "baseline", "kd", "ah", "ah2", "ah_sa")}
    assert len(rows) == 1  # every model on the same rows
    pairs = {(c["model"], c["reference"]) for c in lad["comparisons"]}
    assert {("ah", "kd"), ("ah_sa", "ah"), ("ah_sa", "ah2"), ("fm", "baseline")} <= pairs
    for c in lad["comparisons"]:
        assert c["verdict"] in ("holds", "not significant", "reversed")
    w = lad["distill_weight_total"]
    assert w["ah2"] == w["ah_sa"] > w["ah"] == w["kd"] > w["baseline"] == 0
    assert len(lad["ne_by_day"]["fm"]) == len(lad["summary"]["units"])


def test_freshness_covers_every_delay_on_the_same_days(project: Path) -> None:
    fresh = _load(project, "freshness")
    assert [r["delay"] for r in fresh["table"]] == [0, 4]
    for delay, entry in fresh["per_delay"].items():
        # day ds is scored by an FM trained through ds - 1 - delay at the latest
        for ds, version in entry["fm_versions"].items():
            assert version <= f"fm-{ids.ds_add(ds, -1 - int(delay))}"
        assert entry["vs_ah"]["units"] == fresh["eval_days"]
    # the cadence gap: the DAS scores with the FM of the newest refresh day (every k days from
    # the world's first day) before the day
    assert fresh["cadences"] == [c["cadence"] for c in fresh["cadence_table"]] == [1, 3]
    days = _load(project, "ladder")["days"]
    for k, entry in fresh["per_cadence"].items():
        refresh = days[:: int(k)]
        for ds, version in entry["fm_versions"].items():
            assert version == f"fm-{max(d for d in refresh if d < ds)}"
    assert fresh["per_cadence"]["1"] == fresh["per_delay"]["0"]  # every day = delay 0
    first, last = fresh["table"][0], fresh["table"][-1]
    assert last["fm_ne"] > first["fm_ne"]  # a staler FM predicts today worse
    for r in fresh["table"]:
        total = r["sa_vs_ah_pct"]
        # SA vs AH splits into the extra head's effect and SA's own (up to the NE ratios)
        assert total == pytest.approx(
            r["head_vs_ah_pct"] + r["sa_own_pct"] * (1 - r["head_vs_ah_pct"] / 100), abs=1e-6
        )


def test_scaling_spans_ten_times_the_flops(project: Path) -> None:
    scal = _load(project, "scaling")
    assert [r["size"] for r in scal["table"]] == ["xs", "s", "m"]
    assert scal["flops_span"] >= 10
    flops = [r["flops_per_example"] for r in scal["table"]]
    params = [r["params"] for r in scal["table"]]
    assert flops == sorted(flops) and params == sorted(params)
    baseline = {r["baseline_ne"] for r in scal["table"]}
    assert len(baseline) == 1  # one baseline, the ladder's
    lad = _load(project, "ladder")["summary"]["verticals"]["all"]
    m = next(r for r in scal["table"] if r["size"] == "m")
    assert m["fm_ne"] == pytest.approx(lad["fm"]["ne"])  # the default size is the ladder's FM


def test_history_sets_the_vm_gain_against_the_fm_gain_on_the_same_rows(project: Path) -> None:
    hist = _load(project, "history")
    table = hist["table"]
    assert [(r["size"], r["days_before"]) for r in table] == [("xs", 0), ("xs", 1), ("xs", 2)]
    assert [r["fm_days"] for r in table] == [1, 2, 3]
    rows = [r["fm_rows"] for r in table]
    assert rows == sorted(rows) and len(set(rows)) == 3  # a longer history trains on more rows
    assert len(hist["days"]) == 2 + 3 + 1  # the longest history, the VMs' days, the day before
    assert set(hist["vm_days"]) <= set(hist["days"][-3:])  # every model on the same last days
    for r in table:
        assert _inside(r["fm_gain_pct"], r["fm_gain_pct_ci"])
        assert _inside(r["vm_gain_pct"], r["vm_gain_pct_ci"])
        if r["fm_gain_pct"] > 0:
            assert r["transfer_ratio"] == pytest.approx(r["vm_gain_pct"] / r["fm_gain_pct"])
    fm, vm = [r["fm_gain_pct"] for r in table], [r["vm_gain_pct"] for r in table]
    assert hist["pearson"] == pytest.approx(float(np.corrcoef(fm, vm)[0, 1]))
    by_fm = [v for _, v in sorted(zip(fm, vm, strict=True))]
    assert hist["vm_gain_increases_with_fm_gain"] == (by_fm == sorted(by_fm))
    assert hist["command"] == "exfm experiment history"


def test_amortization_keeps_fm_inferences_flat_while_co_distillation_grows(project: Path) -> None:
    am = _load(project, "amortization")
    table = am["table"]
    assert [r["n_vms"] for r in table] == list(range(1, 9))
    assert len({r["fm_inferences_external"] for r in table}) == 1
    co = [r["fm_inferences_co_distillation"] for r in table]
    assert co == sorted(co) and co[3] == table[0]["fm_inferences_external"]  # 4 verticals
    assert co[-1] == 2 * co[3]  # 8 VMs: each vertical twice
    ratios = [r["compute_ratio"] for r in table]
    assert ratios == sorted(ratios)
    if am["compute_crossover_n"] is not None:
        assert ratios[am["compute_crossover_n"] - 1] >= 1 > ratios[am["compute_crossover_n"] - 2]


def test_obd_ladder_runs_on_the_real_sample_with_seeds(project: Path) -> None:
    obd = _load(project, "obd")
    s = obd["summary"]
    assert sorted(v for v in s["verticals"] if v != "all") == ["all_items", "men", "women"]
    assert all(u.startswith(("s0:", "s1:")) for u in s["units"])
    assert "oracle" not in s["verticals"]["all"]  # real data: no true CTR
    assert set(obd["per_seed"]) == {"0", "1"}
    for c in obd["comparisons"]:
        assert _inside(c["gain_pct"], c["gain_pct_ci"])


def test_robustness_runs_the_frozen_method_on_its_cells(project: Path) -> None:
    rob = _load(project, "robustness")
    tune = _load(project, "tune")
    assert rob["hyperparameters"] == tune["chosen"]
    cells = rob["cells"]
    assert [c["shape"]["fm_delay"] for c in cells] == [0, 2]
    assert len({c["world_seed"] for c in cells}) == 1  # one world, two FM delays
    # a delay leaves out the first days it cannot score
    assert cells[1]["vm_days"] == cells[0]["vm_days"][2:]
    for c in cells:
        assert 0.15 < c["ctr"] < 0.5  # base CTR 0.3
        for name, g in c["methods"].items():
            assert _inside(g["gain_pct"], g["gain_pct_ci"])
            assert g["verdict"] in ("holds", "not significant", "reversed")
            assert (g["verdict"] == "reversed") == (f"{c['label']}: {name}" in rob["reversed"])
            if c["fm"]["gain_pct"] > 0:
                assert g["transfer_ratio"] == pytest.approx(g["gain_pct"] / c["fm"]["gain_pct"])


def test_results_page_is_offline_and_renders(project: Path, tmp_path: Path) -> None:
    reports = project / "reports" / "experiments"
    text = (reports / "results.html").read_text()
    page = Page()
    page.feed(text)
    plots = {a.get("data-plot") for t, a in page.tags if t == "svg"}
    assert {
        "ladder_claims",
        "ladder_ne_by_day",
        "freshness_fm_ne",
        "freshness_sa_gain",
        "scaling_gain",
        "history_gain",
        "amortization_compute",
        "obd_claims",
        "robustness_cells",
    } <= plots
    for name in STAGES[:-1]:
        assert f'id="{name}"' in text and f"exfm experiment {name}" in text
    assert "Not run yet" not in text
    assert not re.search(r"https?:|<script|url\(|@import", text, re.I)
    md = (reports / "results.md").read_text()
    assert "#### Ablation ladder" in md and "|---|" in md
    summary = json.loads((reports / "results.json").read_text())
    assert summary["missing"] == [] and set(summary["claims"]) == {"ladder", "obd"}
    width, height, pixels = screenshot(reports / "results.html", tmp_path, 1280, 2400)
    assert (width, height) == (1280, 2400) and len(set(pixels)) > 50

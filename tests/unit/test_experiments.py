"""The experiments' machinery without running an experiment: pooled metrics and the paired
bootstrap on data whose answer is known, verdicts, transfer ratios, the ah2 control variant, arms,
the quick and full settings, the results page with nothing run, and the error naming an
experiment's missing or corrupt input (the CLI's exit codes: tests/cli/test_experiments_cli.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from exfm.config import Config, load_config
from exfm.data.schema import FeatureSpec
from exfm.data.world import generate
from exfm.experiments import EXPERIMENTS, ORDER, Context, records
from exfm.experiments.records import ExperimentError, HistoryResult, HistoryRow, TuneResult
from exfm.experiments.results import write_results
from exfm.experiments.runner import (
    Arm,
    Collected,
    Stats,
    add_metrics,
    cluster_weights,
    config_with,
    paired,
    summarize,
    verdict,
)
from exfm.experiments.suite import _ranks, correlation
from exfm.lake import IMPRESSIONS
from exfm.metrics import BinaryMetrics
from exfm.models.inputs import to_batch
from exfm.trainee import build_trainee
from tests.conftest import REPO

DAYS = [f"2026-01-{d:02d}" for d in range(5, 13)]
STATS = Stats(resamples=400, confidence=0.9)


def _data(noise: dict[str, float], seed: int = 0) -> Collected:
    """Models that predict the true CTR plus Gaussian noise of the given size (more: worse)."""
    rng = np.random.default_rng(seed)
    out: Collected = {}
    for vertical in ("a", "b"):
        for ds in DAYS:
            p = rng.uniform(0.01, 0.2, 3000)
            y = (rng.uniform(size=p.size) < p).astype(np.float64)
            z = np.log(p / (1 - p))
            for label, sigma in noise.items():
                add_metrics(out, label, vertical, ds, z + rng.normal(0, sigma, p.size), y, p)
    return out


def test_pooled_ne_equals_one_accumulator_over_every_row_and_the_intervals_hold_it() -> None:
    data = _data({"good": 0.1, "bad": 1.0})
    s = summarize(data, ["bad", "good"], STATS, baseline="bad")
    assert s.units == DAYS
    for vertical, verticals in (("a", ["a"]), ("all", ["a", "b"])):
        m = BinaryMetrics()
        for v in verticals:
            for ds in DAYS:
                m = m.merge(data["good"][v][ds])
        got = s.of("good", vertical)
        assert got.ne == pytest.approx(m.compute().ne)
        assert got.rows == m.rows
        lo, hi = got.ne_ci
        assert lo <= got.ne <= hi
        bad = s.of("bad", vertical).ne
        assert got.ne_gain_pct == pytest.approx((bad - got.ne) / bad * 100)
        assert got.ne_gain_pct_ci[0] > 0  # far better on every day
    assert s.of("oracle").ne < s.of("good").ne


def test_a_model_against_itself_gains_nothing_and_is_not_significant() -> None:
    data = _data({"m": 0.5})
    data["copy"] = data["m"]
    result = paired(data, "copy", "m", STATS)
    assert result.gain_pct == 0
    assert result.gain_pct_ci == [0.0, 0.0]
    assert result.verdict == "not significant"


def test_paired_gains_point_the_right_way_and_are_reproducible() -> None:
    data = _data({"good": 0.2, "bad": 0.8})
    better = paired(data, "good", "bad", STATS)
    worse = paired(data, "bad", "good", STATS)
    assert better.verdict == "holds" and worse.verdict == "reversed"
    assert set(better.per_vertical) == {"a", "b"}
    assert paired(data, "good", "bad", STATS) == better  # seeded resampling


def test_verdicts() -> None:
    assert verdict([0.1, 0.5]) == "holds"
    assert verdict([-0.5, -0.1]) == "reversed"
    assert verdict([-0.1, 0.3]) == "not significant"
    assert verdict(None) == "undetermined"


def test_transfer_ratio_is_gain_over_fm_gain_and_undefined_without_an_fm_gain() -> None:
    data = _data({"base": 1.0, "fm": 0.1, "vm": 0.6})
    s = summarize(data, ["base", "fm", "vm"], STATS, baseline="base", fm="fm").pooled
    assert s["vm"].transfer_ratio == pytest.approx(s["vm"].ne_gain_pct / s["fm"].ne_gain_pct)
    lo, hi = s["vm"].transfer_ratio_ci
    assert lo <= s["vm"].transfer_ratio <= hi
    # the order of the labels does not matter (the FM listed after the VM once gave no ratio)
    last = summarize(data, ["base", "vm", "fm"], STATS, baseline="base", fm="fm").pooled
    assert last["vm"].transfer_ratio == s["vm"].transfer_ratio
    assert last["vm"].transfer_ratio_ci == s["vm"].transfer_ratio_ci
    data = _data({"base": 0.3, "fm": 1.0, "vm": 0.2})  # the "FM" is worse than the baseline
    s = summarize(data, ["base", "fm", "vm"], STATS, baseline="base", fm="fm").pooled
    assert s["vm"].transfer_ratio is None and s["vm"].transfer_ratio_ci is None


def test_the_bootstrap_resamples_days_with_all_their_seeds() -> None:
    # Three seeds that are copies of one: they add no information, so the intervals must be
    # those of one seed (resampling (seed, day) pairs as independent made them ~sqrt(3) narrower).
    one = _data({"base": 1.0, "vm": 0.7})
    seeds: Collected = {}
    for label, by_vertical in one.items():
        for vertical, by_day in by_vertical.items():
            for seed in range(3):
                for ds, m in by_day.items():
                    seeds.setdefault(label, {}).setdefault(vertical, {})[f"s{seed}:{ds}"] = m
    single = summarize(one, ["base", "vm"], STATS, baseline="base").of("vm")
    pooled = summarize(seeds, ["base", "vm"], STATS, baseline="base").of("vm")
    assert pooled.ne_gain_pct == pytest.approx(single.ne_gain_pct)
    assert pooled.ne_gain_pct_ci == pytest.approx(single.ne_gain_pct_ci)
    assert pooled.ne_ci == pytest.approx(single.ne_ci)


def test_cluster_weights_count_a_day_once_for_all_its_units() -> None:
    units = [f"s{seed}:{ds}" for seed in range(2) for ds in DAYS[:3]] + ["s0:" + DAYS[5]]
    w = cluster_weights(units, np.random.default_rng(0), 500)
    assert w.shape == (500, len(units))
    by_day = {
        ds: [i for i, u in enumerate(units) if u.endswith(ds)] for ds in {u[-10:] for u in units}
    }
    for columns in by_day.values():
        assert (w[:, columns] == w[:, columns[:1]]).all()  # a day's units move together
    assert (sum(w[:, cols[0]] for cols in by_day.values()) == len(by_day)).all()
    with pytest.raises(ExperimentError, match="does not end with its day"):
        cluster_weights(["s0:day-one"], np.random.default_rng(0), 10)


def test_models_without_a_common_day_are_refused() -> None:
    data = _data({"m": 0.5})
    data["late"] = {v: {"2027-01-01": m["2026-01-05"]} for v, m in data["m"].items()}
    with pytest.raises(ExperimentError, match="no day on which every model"):
        summarize(data, ["m", "late"], STATS)


def test_ah2_trains_the_second_head_on_the_raw_fm_prediction(tiny_cfg: Config, lake) -> None:
    generate(tiny_cfg, lake, days=1)
    spec = FeatureSpec.from_config(tiny_cfg.features)
    table = lake.read(IMPRESSIONS, vertical=["feed"])
    p = table.column("true_ctr").to_numpy()
    fm = np.log(p / (1 - p)).astype(np.float32)
    import pyarrow as pa

    table = table.append_column("fm_logit", pa.array(fm))
    heads = {}
    for variant in ("ah", "ah2", "ah_sa"):
        trainee = build_trainee(tiny_cfg, spec, "vm", "feed", variant)
        assert (trainee.adapter is not None) == (variant == "ah_sa")
        batch = to_batch(table, trainee.layout, with_fm_logit=True).take(slice(0, 256))
        before = [t.clone() for t in trainee.model.sa_head.parameters()]
        trainee.step(batch)
        after = list(trainee.model.sa_head.parameters())
        heads[variant] = any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
    # only the variants with a second distillation term move the second head
    assert heads == {"ah": False, "ah2": True, "ah_sa": True}


def test_beta_is_redundant_with_w_under_adam_and_rowwise_adagrad(tiny_cfg: Config, lake) -> None:
    """Why tune leaves beta (vm.grad_scale) at 1: the backbone's gradient is the label term's
    plus w x beta times the auxiliary term's, and the auxiliary head's is w times its own;
    Adam and row-wise Adagrad do not see a gradient's scale, so (w 4, beta 1) and (w 1, beta 4)
    train the same VM, and only the product reaches it."""
    from exfm.data.schema import FeatureSpec

    generate(tiny_cfg, lake, days=1)
    spec = FeatureSpec.from_config(tiny_cfg.features)
    table = lake.read(IMPRESSIONS, vertical=["feed"])
    p = table.column("true_ctr").to_numpy()
    import pyarrow as pa

    fm = np.log(p / (1 - p)).astype(np.float32) + 0.5  # a biased teacher: w matters
    table = table.append_column("fm_logit", pa.array(fm))
    trained = {}
    for w, beta in ((4.0, 1.0), (1.0, 4.0), (1.0, 1.0)):
        cfg = config_with(tiny_cfg, vm={"distill_weight": w, "grad_scale": beta})
        trainee = build_trainee(cfg, spec, "vm", "feed", "ah", seed=0)
        batch = to_batch(table, trainee.layout, with_fm_logit=True)
        for i in range(8):
            trainee.step(batch.take(slice(i * 64, (i + 1) * 64)))
        trained[w, beta] = trainee.model.serving_module().state_dict()
    for name, tensor in trained[4.0, 1.0].items():
        torch.testing.assert_close(tensor, trained[1.0, 4.0][name], rtol=1e-4, atol=1e-6)
    assert any(
        not torch.allclose(t, trained[1.0, 1.0][n], rtol=1e-4, atol=1e-6)
        for n, t in trained[4.0, 1.0].items()
    )


def test_ah2_loss_is_ah_plus_the_weighted_second_head_term(tiny_cfg: Config, lake) -> None:
    from exfm import losses

    cfg = config_with(tiny_cfg, vm={"sa_weight": 0.7})
    generate(cfg, lake, days=1)
    spec = FeatureSpec.from_config(cfg.features)
    table = lake.read(IMPRESSIONS, vertical=["feed"])
    import pyarrow as pa

    rng = np.random.default_rng(1)
    table = table.append_column(
        "fm_logit", pa.array(rng.normal(-3, 1, table.num_rows).astype(np.float32))
    )
    trainee = build_trainee(cfg, spec, "vm", "feed", "ah2")
    batch = to_batch(table, trainee.layout, with_fm_logit=True).take(slice(0, 128))
    _, loss = trainee._vm_loss(batch, cfg.vm)
    out = trainee.model(batch.cat, batch.dense)
    expected = losses.ah_loss(
        out.serving,
        out.aux,
        batch.label,
        batch.fm_logit,
        cfg.vm.distill_weight,
        cfg.vm.label_scale,
        batch.fm_mask,
    ) + 0.7 * losses.sa_distill_loss(out.sa, batch.fm_logit, batch.fm_mask)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_arms_start_empty_and_share_inputs_by_hard_links(tiny_cfg: Config, tmp_path: Path) -> None:
    a = Arm.fresh("a", tiny_cfg, tmp_path)
    generate(a.cfg, a.lake, days=2)
    b = Arm.fresh("b", tiny_cfg, tmp_path)
    b.share_from(a, "impressions")
    assert b.days() == a.days() == ["2026-01-05", "2026-01-06"]
    src = next((a.root / "lake" / "impressions").rglob("*.parquet"))
    dst = b.root / "lake" / src.relative_to(a.root / "lake")
    assert os.stat(src).st_ino == os.stat(dst).st_ino
    (b.root / "leftover").write_text("x")
    again = Arm.fresh("b", tiny_cfg, tmp_path)
    assert not (again.root / "leftover").exists()
    with pytest.raises(ExperimentError, match="has no impressions"):
        again.days()
    with pytest.raises(ExperimentError, match="no registry/fm to share"):
        again.link_from(a, "registry/fm")


def test_quick_and_full_settings(tmp_path: Path) -> None:
    cfg = load_config(
        REPO / "params.yaml",
        [f"experiment.dir={tmp_path / 'w'}", f"experiment.reports_dir={tmp_path / 'r'}"],
    )
    full, quick = Context(cfg, False), Context(cfg, True)
    assert full.world_cfg.world == cfg.world  # no overrides: the default world
    assert quick.world_cfg.world.days == 8
    assert quick.world_cfg.world.impressions_per_day < cfg.world.impressions_per_day
    assert quick.reports == tmp_path / "r" / "quick" and full.reports == tmp_path / "r"
    assert quick.workspace != full.workspace
    assert quick.stats.resamples < full.stats.resamples


def test_a_record_names_its_world_with_its_seed_and_overrides(tmp_path: Path) -> None:
    sets = ["world.n_users=777", "world.shock_ctr_shift=-1.0", "world.seed=5"]
    cfg = load_config(REPO / "params.yaml", sets)
    full, quick = Context(cfg, False), Context(cfg, True)
    assert full.world_label(full.world_cfg) == (
        "world seed 5; world.n_users=777, world.shock_ctr_shift=-1.0"
    )
    label = quick.world_label(quick.world_cfg)  # quick's overrides, then what else differs
    assert label.startswith("world seed 5; world.days=8, world.impressions_per_day=30000")
    assert "fm.deep_layers=[256, 128]" in label and label.endswith("world.shock_ctr_shift=-1.0")
    assert "world.n_users=5000" in label and "777" not in label  # quick's override wins
    default = Context(load_config(REPO / "params.yaml"), False)
    seed = default.cfg.world.seed
    assert default.world_label(default.world_cfg) == f"world seed {seed}; the default world"


def test_the_results_page_lists_what_has_not_run_instead_of_inventing_it(tmp_path: Path) -> None:
    cfg = load_config(REPO / "params.yaml", [f"experiment.reports_dir={tmp_path}"])
    page = write_results(Context(cfg, False)).read_text()
    names = [name for name in ORDER if name != "results"]
    assert names == list(EXPERIMENTS)  # the page's order is the experiments' own
    for name in names:
        assert f"exfm experiment {name}" in page
    assert "<table" not in page
    assert json.loads((tmp_path / "results.json").read_text())["missing"] == names


def _tune_record() -> TuneResult:
    return TuneResult(
        experiment="tune",
        mode="quick",
        seconds=1.5,
        command="exfm experiment tune --quick",
        schema=records.SCHEMA,
        world="world seed 7; world.days=1",
        worlds=[
            records.TuneWorld("w0", "the world's base CTR", 7, ["2026-01-05"], [], 0.02, 0.97, 1.5)
        ],
        criterion="worst gain",
        order=["distill_weight"],
        start={"distill_weight": 1.0},
        grid={"distill_weight": [1.0, 2.0]},
        extended={},
        at_edge=["distill_weight"],
        tried=[records.Trial("ah", 1.0, 1.0, 16, 1.0, {"w0": 0.3}, 0.3, 0.3)],
        chosen={"distill_weight": 1.0, "label_scale": 1.0, "aux_hidden": 16, "sa_weight": 1.0},
    )


def test_a_record_comes_back_as_it_was_saved(tmp_path: Path) -> None:
    path = records.save(tmp_path / "tune.json", _tune_record())
    back = records.load(path, "ladder")
    assert back == _tune_record() and isinstance(back.tried[0], records.Trial)


def test_loading_a_record_names_the_file_the_field_and_the_experiment_to_run(
    tmp_path: Path,
) -> None:
    path = tmp_path / "tune.json"
    with pytest.raises(ExperimentError, match=r"run `exfm experiment tune` first"):
        records.load(path, "ladder")
    path.write_text("{not json")
    with pytest.raises(ExperimentError, match=r"tune.json is not valid JSON"):
        records.load(path, "ladder")
    data = records.to_json(_tune_record())
    path.write_text(json.dumps({**data, "schema": 0}))
    with pytest.raises(ExperimentError, match=r"tune.json has schema 0; this version reads"):
        records.load(path, "ladder")
    data["tried"][0]["worst_gain_pct"] = "low"
    path.write_text(json.dumps(data))
    with pytest.raises(
        ExperimentError, match=r"tune.json is not a tune record: tried.0.worst_gain_pct"
    ):
        records.load(path, "ladder")
    data["tried"][0]["worst_gain_pct"] = 0.3
    del data["chosen"]
    path.write_text(json.dumps(data))
    with pytest.raises(ExperimentError, match=r"chosen: Field required .*rerun `exfm experim"):
        records.load(path, "ladder")


def test_correlations_of_known_series() -> None:
    x = [0.1, 0.4, 0.2, 0.9, 0.5]
    assert correlation(x, [2 * v + 1 for v in x]) == pytest.approx(1.0)
    assert correlation(x, [-v for v in x]) == pytest.approx(-1.0)
    assert correlation(x, [3.0] * 5) is None  # a constant series has no correlation
    assert correlation([1.0, 2.0], [1.0, 2.0]) is None  # two points always line up
    with pytest.raises(ValueError, match="correlation of 2 and 3 values"):
        correlation([1.0, 2.0], [1.0, 2.0, 3.0])
    y = [0.3, 0.1, 0.1, 2.0, 0.8]
    assert _ranks(y) == [3.0, 1.5, 1.5, 5.0, 4.0]  # ties share their mean rank
    scipy_stats = pytest.importorskip("scipy.stats")
    assert correlation(x, y) == pytest.approx(scipy_stats.pearsonr(x, y)[0])
    assert correlation(_ranks(x), _ranks(y)) == pytest.approx(scipy_stats.spearmanr(x, y)[0])


def _history_row(size: str, before: int, fm_gain: float, vm_gain: float) -> HistoryRow:
    return HistoryRow(
        size,
        before,
        before + 1,
        1000 * (before + 1),
        0.9,
        fm_gain,
        [fm_gain - 1, fm_gain + 1],
        0.95,
        vm_gain,
        [vm_gain - 0.1, vm_gain + 0.1],
        vm_gain / fm_gain,
        None,
    )


def test_the_history_section_shows_vm_gain_against_fm_gain(tmp_path: Path) -> None:
    cfg = load_config(REPO / "params.yaml", [f"experiment.reports_dir={tmp_path}"])
    ctx = Context(cfg, False)
    table = [_history_row("xs", 0, 2.0, 0.4), _history_row("m", 0, 3.0, 0.3)]
    ctx.save(
        HistoryResult(
            experiment="history",
            mode="full",
            seconds=2.0,
            command="exfm experiment history",
            schema=records.SCHEMA,
            world="world seed 7; world.days=51",
            variant="ah_sa",
            days=DAYS,
            vm_days=DAYS[1:],
            days_before=[0],
            sizes={"xs": {"embedding_dim": 8}, "m": {}},
            baseline_ne=0.96,
            table=table,
            pearson=None,
            spearman=None,
            vm_gain_increases_with_fm_gain=False,
        )
    )
    write_results(ctx)
    md = (tmp_path / "results.md").read_text()
    assert "#### Teacher history: VM gain vs the FM's own gain" in md
    assert "| m | 0 | 1,000 | 0.9000 | 3.000 [2.000, 4.000] |" in md
    assert "no correlation (fewer than 3 FMs" in md and "does NOT grow" in md
    plot = (tmp_path / "plots" / "history_gain.svg").read_text()
    assert plot.index("xs 0d") < plot.index("m 0d")  # in the FMs' gains' order
    assert json.loads((tmp_path / "results.json").read_text())["history"][1]["size"] == "m"


def test_the_command_line_offers_every_experiment_in_order() -> None:
    from exfm.cli import build_parser

    # the parser takes the names from ORDER without loading the suite (and torch) for every command
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    name = next(a for a in sub.choices["experiment"]._actions if a.dest == "name")
    assert list(name.choices) == [*ORDER, "all"]

"""The streaming trainer on a tiny simulated world: progressive evaluation, resuming equals an
uninterrupted run, NaN stops the day, the publishing gate, the VM variants, rebuilding a model
from its snapshot alone."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import torch

from exfm import losses
from exfm.config import Config, load_config, replace
from exfm.data.schema import FeatureSpec
from exfm.data.world import generate
from exfm.errors import SchemaError, TrainingError
from exfm.inference import model_from_payload, predict
from exfm.lake import EVALS, IMPRESSIONS, Lake
from exfm.metrics import BinaryMetrics
from exfm.models.inputs import to_batch
from exfm.registry import Registry
from exfm.trainee import build_trainee
from exfm.training import DayResult, train_day
from tests.conftest import REPO, SMALL_WORLD

DAYS = ["2026-01-05", "2026-01-06", "2026-01-07"]


@pytest.fixture
def world(tiny_cfg: Config, lake: Lake) -> Lake:
    generate(tiny_cfg, lake)
    return lake


@pytest.fixture
def spec(tiny_cfg: Config) -> FeatureSpec:
    return FeatureSpec.from_config(tiny_cfg.features)


def _with_fm_logit(table: pa.Table) -> pa.Table:
    """A stand-in for the DAS column: a noisy teacher built from the simulator's truth."""
    p = table.column("true_ctr").to_numpy().astype(np.float64)
    rng = np.random.default_rng(0)
    logit = np.log(p / (1 - p)) + rng.normal(0, 0.3, len(p))
    return table.append_column("fm_logit", pa.array(logit.astype(np.float32)))


def _vm_table(lake: Lake, ds: str, vertical: str = "feed") -> pa.Table:
    return _with_fm_logit(lake.read(IMPRESSIONS, ds=[ds], vertical=[vertical]))


def test_first_day_starts_fresh_then_each_day_is_evaluated_before_training(
    tiny_cfg: Config, world: Lake, spec: FeatureSpec
) -> None:
    first = train_day(
        tiny_cfg,
        world,
        build_trainee(tiny_cfg, spec, "fm"),
        world.read(IMPRESSIONS, ds=[DAYS[0]]),
        DAYS[0],
    )
    assert first.eval is None and first.parent_ds is None
    assert first.train.rows == first.rows > 0
    table = world.read(IMPRESSIONS, ds=[DAYS[1]])
    second = train_day(tiny_cfg, world, build_trainee(tiny_cfg, spec, "fm"), table, DAYS[1])
    assert second.parent_ds == DAYS[0]
    assert second.eval is not None and second.eval.rows == table.num_rows
    assert set(second.eval.verticals) == set(spec.verticals)
    evals = world.read(EVALS, model="fm", ds=DAYS[1])
    assert evals.num_rows == table.num_rows
    assert set(evals.column("snapshot_ds").to_pylist()) == {DAYS[0]}
    assert set(evals.column("example_id").to_pylist()) == set(
        table.column("example_id").to_pylist()
    )
    with pytest.raises(Exception, match="no partitions"):
        world.read(EVALS, model="fm", ds=DAYS[0])


def _state(trainee) -> dict[str, torch.Tensor]:
    out = {f"model.{k}": v for k, v in trainee.model.state_dict().items()}
    for part, state in trainee.optimizer.state_dict().items():
        for idx, values in state["state"].items():
            for k, v in values.items():
                out[f"opt.{part}.{idx}.{k}"] = torch.as_tensor(v)
    if trainee.adapter is not None:
        out.update({f"adapter.{k}": v for k, v in trainee.adapter.state_dict().items()})
    return out


@pytest.mark.parametrize(("kind", "variant"), [("fm", None), ("vm", "ah_sa")])
def test_resuming_from_snapshots_equals_an_uninterrupted_run(
    tiny_cfg: Config, world: Lake, spec: FeatureSpec, tmp_path, kind: str, variant: str | None
) -> None:
    def table(ds: str) -> pa.Table:
        return world.read(IMPRESSIONS, ds=[ds]) if kind == "fm" else _vm_table(world, ds)

    continuous_lake = Lake(str(tmp_path / "continuous"))
    trainee = build_trainee(tiny_cfg, spec, kind, "feed" if kind == "vm" else None, variant)
    for ds in DAYS:  # one process, the trainee kept in memory
        train_day(tiny_cfg, continuous_lake, trainee, table(ds), ds)
    resumed_lake = Lake(str(tmp_path / "resumed"))
    for ds in DAYS:  # a new process a day: everything comes back from the snapshot
        fresh = build_trainee(tiny_cfg, spec, kind, "feed" if kind == "vm" else None, variant)
        train_day(tiny_cfg, resumed_lake, fresh, table(ds), ds)
    a, b = _state(trainee), _state(fresh)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_nan_loss_stops_the_day_naming_the_batch_and_saves_nothing(
    tiny_cfg: Config, world: Lake, spec: FeatureSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_bce, calls = losses.bce, {"n": 0}

    def flaky(logit: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        return real_bce(logit, target) * (float("nan") if calls["n"] == 3 else 1.0)

    monkeypatch.setattr("exfm.losses.bce", flaky)
    table = world.read(IMPRESSIONS, ds=[DAYS[0]])
    with pytest.raises(TrainingError, match=r"fm ds=2026-01-05: the loss is nan at batch 3 of"):
        train_day(tiny_cfg, world, build_trainee(tiny_cfg, spec, "fm"), table, DAYS[0])
    assert Registry(world).history("fm", None) == []


def test_a_worse_snapshot_is_kept_but_not_published(
    tiny_cfg: Config, world: Lake, spec: FeatureSpec
) -> None:
    lenient = replace(
        tiny_cfg,
        publish=replace(tiny_cfg.publish, max_ne=100.0, min_calibration=0.0, max_calibration=100.0),
        # day 1 keeps its optimizer state (exfm.stages replays from a checkpoint otherwise)
        registry=replace(tiny_cfg.registry, optimizer_every_days=1),
    )
    for ds in DAYS[:2]:
        train_day(
            lenient,
            world,
            build_trainee(lenient, spec, "vm", "feed", "baseline"),
            _vm_table(world, ds),
            ds,
        )
    # a learning rate far too high, and a strict gate
    wild = replace(
        lenient,
        vm=replace(lenient.vm, lr=0.5, embedding_lr=5.0),
        train=replace(lenient.train, batch_size=8),
        publish=replace(lenient.publish, max_ne_regression=0.001),
    )
    result = train_day(
        wild,
        world,
        build_trainee(wild, spec, "vm", "feed", "baseline"),
        _vm_table(world, DAYS[2]),
        DAYS[2],
    )
    assert (
        result.eval is not None and result.train.ne > result.eval.ne * 1.001
    )  # the incumbent (day 2) on day 3
    assert not result.published
    assert "worse than the published snapshot's" in result.reason
    registry = Registry(world)
    assert registry.latest_published("vm_baseline", "feed", as_of=DAYS[2]).ds == DAYS[1]
    assert registry.meta("vm_baseline", "feed", DAYS[2]).publish_reason == result.reason
    assert registry.latest("vm_baseline", "feed", before="2026-01-08").ds == DAYS[2]


@pytest.mark.parametrize("kind", ["fm", "vm"])
def test_a_retrained_day_is_compared_with_the_snapshot_published_before_it(
    tiny_cfg: Config, world: Lake, spec: FeatureSpec, kind: str
) -> None:
    """Retraining day 2 (a param changed, `dvc repro` again) still goes through the regression
    check against day 1's published snapshot, not "no earlier published snapshot"."""
    lenient = replace(
        tiny_cfg,
        publish=replace(tiny_cfg.publish, max_ne=100.0, min_calibration=0.0, max_calibration=100.0),
        # day 1 keeps its optimizer state (exfm.stages replays from a checkpoint otherwise)
        registry=replace(tiny_cfg.registry, optimizer_every_days=1),
    )
    args = ("fm",) if kind == "fm" else ("vm", "feed", "baseline")

    def day(cfg: Config, ds: str) -> DayResult:
        table = world.read(IMPRESSIONS, ds=[ds]) if kind == "fm" else _vm_table(world, ds)
        return train_day(cfg, world, build_trainee(cfg, spec, *args), table, ds)

    first = [day(lenient, ds) for ds in DAYS[:2]]
    assert first[0].published and "no earlier published snapshot" in first[0].reason
    assert "vs the published snapshot's" in first[1].reason
    name = "fm" if kind == "fm" else "vm_baseline"
    vertical = None if kind == "fm" else "feed"
    again = day(
        replace(lenient, train=replace(lenient.train, seed=lenient.train.seed + 1)), DAYS[1]
    )
    assert "no earlier published snapshot" not in again.reason, again.reason
    assert "the published snapshot's" in again.reason
    registry = Registry(world)
    assert registry.published_before(name, vertical, DAYS[1]).ds == DAYS[0]
    assert registry.meta(name, vertical, DAYS[1]).publish_reason == again.reason


def test_distilling_variants_need_the_fm_column(
    tiny_cfg: Config, world: Lake, spec: FeatureSpec
) -> None:
    table = world.read(IMPRESSIONS, ds=[DAYS[0]], vertical=["feed"])
    with pytest.raises(SchemaError, match=r"lacks columns \['fm_logit'\]"):
        train_day(
            tiny_cfg, world, build_trainee(tiny_cfg, spec, "vm", "feed", "ah"), table, DAYS[0]
        )


def test_every_variant_trains_and_only_distillers_read_the_fm(
    tiny_cfg: Config, world: Lake, spec: FeatureSpec, tmp_path
) -> None:
    table = _vm_table(world, DAYS[0])
    finals = {}
    for variant in ("baseline", "kd", "ah", "ah_sa"):
        trainee = build_trainee(tiny_cfg, spec, "vm", "feed", variant)
        result = train_day(tiny_cfg, world, trainee, table, DAYS[0])
        assert result.model == f"vm_{variant}" and result.train.ne is not None
        finals[variant] = trainee.model.serving_head.weight.detach().clone()
    # the baseline ignores the FM column: a different teacher leaves it unchanged
    other = table.set_column(
        table.column_names.index("fm_logit"),
        "fm_logit",
        pa.array(np.zeros(table.num_rows, np.float32)),
    )
    for variant in ("baseline", "kd"):
        trainee = build_trainee(tiny_cfg, spec, "vm", "feed", variant)
        train_day(tiny_cfg, Lake(str(tmp_path / variant)), trainee, other, DAYS[0])
        same = torch.equal(trainee.model.serving_head.weight, finals[variant])
        assert same is (variant == "baseline")


def test_saturated_distillation_targets_are_a_warning_with_their_share(
    tiny_cfg: Config, world: Lake, spec: FeatureSpec, caplog: pytest.LogCaptureFixture
) -> None:
    table = _vm_table(world, DAYS[0])
    confident = table.set_column(  # half the rows at p_F = 0.9985, past 0.999 once scaled x 2
        table.column_names.index("fm_logit"),
        "fm_logit",
        pa.array(np.where(np.arange(table.num_rows) % 2 == 0, 6.5, -3.0).astype(np.float32)),
    )
    registry = Registry(world)
    for alpha, variant, warns in ((1.0, "ah", False), (2.0, "ah", True), (2.0, "kd", False)):
        cfg = replace(tiny_cfg, vm=replace(tiny_cfg.vm, label_scale=alpha))
        trainee = build_trainee(cfg, spec, "vm", "feed", variant)
        caplog.clear()
        with caplog.at_level("WARNING", logger="exfm.training"):
            train_day(cfg, world, trainee, confident, DAYS[0])
        got = registry.meta(f"vm_{variant}", "feed", DAYS[0]).metrics["fm_targets"]
        assert got["rows"] == table.num_rows and got["outside"] == 0
        assert got["saturated_share"] == pytest.approx(0.5 if warns else 0.0, abs=1e-3)
        warned = [r.getMessage() for r in caplog.records if "FM targets" in r.getMessage()]
        assert bool(warned) is warns, warned
        if warns:
            assert "vm.saturated_share 0.01" in warned[0] and "vm.label_scale 2.0" in warned[0]
    baseline = build_trainee(tiny_cfg, spec, "vm", "feed", "baseline")
    train_day(tiny_cfg, world, baseline, confident, DAYS[0])
    assert "fm_targets" not in registry.meta("vm_baseline", "feed", DAYS[0]).metrics


def _pooled_eval_ne(lake: Lake, model: str) -> float:
    table = lake.read(EVALS, model=[model])
    m = BinaryMetrics()
    m.update(table.column("logit").to_numpy(), table.column("label").to_numpy())
    return m.compute().ne


def test_ah_serves_no_worse_than_the_baseline_where_half_the_rows_click(tmp_path) -> None:
    # min(alpha * p, 1) made every FM prediction above 1/alpha a target of 1, and with w = 4 AH
    # served worse than the baseline on data with a high positive rate (a real dataset with a
    # CTR of 55%: reversed by 4%). The odds form keeps the ranking of confident predictions.
    cfg = load_config(
        REPO / "params.yaml",
        [
            *SMALL_WORLD,
            "world.days=4",
            "world.impressions_per_day=20000",
            "world.verticals.feed.base_ctr=0.5",
            "world.verticals.feed.affinity_weight=3.0",  # a learnable world (oracle NE 0.52)
            "vm.distill_weight=4.0",
            "vm.label_scale=2.0",
            f"lake.root={tmp_path / 'lake'}",
            f"lake.catalog={tmp_path / 'c.duckdb'}",
        ],
    )
    lake = Lake.from_config(cfg.lake)
    days = [s.ds for s in generate(cfg, lake)]
    spec = FeatureSpec.from_config(cfg.features)
    for variant in ("baseline", "ah"):
        trainee = build_trainee(cfg, spec, "vm", "feed", variant)
        for ds in days:
            train_day(cfg, lake, trainee, _vm_table(lake, ds), ds)
    baseline, ah = _pooled_eval_ne(lake, "vm_baseline"), _pooled_eval_ne(lake, "vm_ah")
    ctr = pc.mean(lake.read(IMPRESSIONS, vertical=["feed"]).column("label")).as_py()
    assert 0.4 < ctr < 0.6
    assert ah <= baseline, (ah, baseline)  # measured: 0.2% better; min(2p, 1): 0.44% worse


def test_a_snapshot_rebuilds_its_model_alone(
    tiny_cfg: Config, world: Lake, spec: FeatureSpec
) -> None:
    trainee = build_trainee(tiny_cfg, spec, "fm")
    table = world.read(IMPRESSIONS, ds=[DAYS[0]])
    train_day(tiny_cfg, world, trainee, table, DAYS[0])
    payload, _ = Registry(world).load("fm", None, DAYS[0], spec.fingerprint())
    model, layout = model_from_payload(payload)
    data = to_batch(table, layout)
    trainee.model.eval()
    cpu = torch.device("cpu")
    rebuilt = predict(lambda b: model(b.cat, b.dense, b.vertical), data, 1000, cpu)
    original = predict(trainee.logits, data, 1000, cpu)
    np.testing.assert_array_equal(rebuilt, original)

"""The models: shapes, determinism, FM/VM cost ratios, the served module, gradient scaling, the
Student Adapter, dense inputs and id hashing."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch

from exfm import losses
from exfm.config import Config, load_config
from exfm.data.schema import FeatureSpec
from exfm.models.adapter import StudentAdapter
from exfm.models.fm import FoundationModel
from exfm.models.inputs import InputLayout, hash_rows, to_batch
from exfm.models.layers import DenseInput, count_parameters, flops_per_example, scale_grad
from exfm.models.vm import VerticalModel
from exfm.trainee import build_trainee
from tests.conftest import REPO

B = 32


@pytest.fixture(scope="module")
def cfg() -> Config:
    return load_config(REPO / "params.yaml")


@pytest.fixture(scope="module")
def full_spec(cfg: Config) -> FeatureSpec:
    return FeatureSpec.from_config(cfg.features)


def _inputs(layout: InputLayout, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    cat = torch.stack(
        [torch.randint(0, rows, (B,), generator=g) for _, rows in layout.categorical], dim=1
    )
    dense = torch.randn(B, len(layout.dense), generator=g)
    dense[0, 0] = float("nan")  # a missing value
    vertical = torch.randint(0, len(layout.verticals), (B,), generator=g)
    return cat, dense, vertical


def test_shapes(cfg: Config, full_spec: FeatureSpec) -> None:
    fl = InputLayout.for_fm(full_spec)
    cat, dense, vertical = _inputs(fl)
    fm = FoundationModel(fl, cfg.fm)
    assert fm(cat, dense, vertical).shape == (B,)
    vl = InputLayout.for_vm(full_spec, cfg.vm, "feed")
    vm = VerticalModel(vl, cfg.vm)
    out = vm(*_inputs(vl)[:2])
    assert [t.shape for t in out] == [(B,), (B,), (B,)]
    assert torch.isfinite(out.serving).all()
    assert StudentAdapter()(torch.randn(B)).shape == (B,)


def test_vm_reads_its_own_subset_minus_what_the_vertical_lacks(
    cfg: Config, full_spec: FeatureSpec
) -> None:
    feed = InputLayout.for_vm(full_spec, cfg.vm, "feed")
    assert feed.columns == [
        "user_id",
        "ad_id",
        "advertiser_id",
        "category_id",
        "position",
        "hour",
        "ad_ctr_hist",
    ]
    assert all(rows <= cfg.vm.max_hash_buckets for _, rows in feed.categorical)
    fm = InputLayout.for_fm(full_spec)
    assert set(fm.columns) == set(full_spec.names)
    assert dict(fm.categorical)["user_id"] == 262_144


def test_same_seed_same_model(cfg: Config, full_spec: FeatureSpec) -> None:
    a = build_trainee(cfg, full_spec, "vm", "feed", "ah_sa")
    b = build_trainee(cfg, full_spec, "vm", "feed", "ah_sa")
    c = build_trainee(cfg, full_spec, "vm", "search", "ah_sa")
    for (name, x), (_, y) in zip(
        a.model.state_dict().items(), b.model.state_dict().items(), strict=True
    ):
        assert torch.equal(x, y), name
    assert not torch.equal(a.model.serving_head.weight, c.model.serving_head.weight)


def test_default_fm_costs_20x_the_flops_and_10x_the_parameters_of_every_vm(
    cfg: Config, full_spec: FeatureSpec
) -> None:
    fl = InputLayout.for_fm(full_spec)
    fm = FoundationModel(fl, cfg.fm)
    fm_flops = flops_per_example(fm, *_inputs(fl))
    assert fm_flops > 0
    for vertical in full_spec.verticals:
        vl = InputLayout.for_vm(full_spec, cfg.vm, vertical)
        vm = VerticalModel(vl, cfg.vm)
        vm_flops = flops_per_example(vm, *_inputs(vl)[:2])  # all heads, not just the served one
        assert fm_flops >= 20 * vm_flops, (vertical, fm_flops, vm_flops)
        assert count_parameters(fm) >= 10 * count_parameters(vm), vertical


def test_flop_count_matches_the_layer_arithmetic(cfg: Config, full_spec: FeatureSpec) -> None:
    vl = InputLayout.for_vm(full_spec, cfg.vm, "feed")
    vm = VerticalModel(vl, cfg.vm).serving_module()
    width = cfg.vm.embedding_dim * len(vl.categorical) + 2 * len(vl.dense)
    h1, h2 = cfg.vm.hidden
    expected = 2 * (width * h1 + h1 * h2 + h2 * 1)
    assert flops_per_example(vm, *_inputs(vl)[:2]) == expected


def test_serving_module_has_no_training_heads_and_matches(
    cfg: Config, full_spec: FeatureSpec
) -> None:
    vl = InputLayout.for_vm(full_spec, cfg.vm, "search")
    vm = VerticalModel(vl, cfg.vm)
    vm.train()
    cat, dense, _ = _inputs(vl)
    vm(cat, dense)  # update the running dense statistics once, as training does
    vm.eval()
    served = vm.serving_module()
    names = [n for n, _ in served.named_parameters()]
    assert not any("aux" in n or "sa_head" in n for n in names)
    expected = count_parameters(vm.backbone) + count_parameters(vm.serving_head)
    assert count_parameters(served) == expected < count_parameters(vm)
    with torch.no_grad():
        assert torch.equal(served(cat, dense), vm(cat, dense).serving)


def test_serving_module_exports_with_identical_predictions(
    cfg: Config, full_spec: FeatureSpec
) -> None:
    vl = InputLayout.for_vm(full_spec, cfg.vm, "feed")
    served = VerticalModel(vl, cfg.vm).serving_module()
    cat, dense, _ = _inputs(vl)
    program = torch.export.export(served, (cat, dense))
    with torch.no_grad():
        torch.testing.assert_close(program.module()(cat, dense), served(cat, dense), rtol=0, atol=0)


def test_scale_grad_is_identity_forward_and_scales_backward() -> None:
    x = torch.randn(5, requires_grad=True)
    y = scale_grad(x, 0.25)
    assert torch.equal(y, x)
    y.sum().backward()
    assert torch.allclose(x.grad, torch.full((5,), 0.25))


def _backbone_grads(cfg: Config, spec: FeatureSpec, beta: float, which: str) -> torch.Tensor:
    vm_cfg = type(cfg.vm)(**{**cfg.vm.__dict__, "grad_scale": beta})
    vl = InputLayout.for_vm(spec, vm_cfg, "feed")
    torch.manual_seed(0)
    vm = VerticalModel(vl, vm_cfg)
    cat, dense, _ = _inputs(vl)
    out = vm(cat, dense)
    y = torch.zeros(B)
    y[::5] = 1
    loss = losses.bce(out.aux if which == "aux" else out.serving, y)
    loss.backward()
    return vm.backbone.mlp[0].weight.grad.clone()


def test_auxiliary_branch_gradient_into_the_backbone_is_scaled_by_beta(
    cfg: Config, full_spec: FeatureSpec
) -> None:
    g1 = _backbone_grads(cfg, full_spec, 1.0, "aux")
    g3 = _backbone_grads(cfg, full_spec, 0.3, "aux")
    torch.testing.assert_close(g3, 0.3 * g1)
    # the serving head's gradient does not depend on beta
    torch.testing.assert_close(
        _backbone_grads(cfg, full_spec, 0.3, "serving"),
        _backbone_grads(cfg, full_spec, 1.0, "serving"),
    )


def test_sa_target_carries_no_gradient_into_the_adapter(
    cfg: Config, full_spec: FeatureSpec
) -> None:
    trainee = build_trainee(cfg, full_spec, "vm", "feed", "ah_sa")
    vl = trainee.layout
    cat, dense, _ = _inputs(vl)
    fm_logit = torch.randn(B)
    y = (torch.rand(B) < 0.3).float()
    with torch.no_grad():
        target = trainee.adapter(fm_logit)
    out = trainee.model(cat, dense)
    loss = losses.ah_loss(out.serving, out.aux, y, fm_logit, 1.0, 1.0)
    loss = loss + losses.sa_distill_loss(out.sa, target)
    loss.backward()
    assert all(p.grad is None for p in trainee.adapter.parameters())
    assert trainee.model.sa_head[0].weight.grad is not None


def test_adapter_starts_as_the_identity() -> None:
    x = torch.randn(100)
    assert torch.equal(StudentAdapter(8)(x), x)


def test_dense_input_standardizes_tracks_statistics_and_marks_missing() -> None:
    layer = DenseInput(2)
    x = torch.tensor([[1.0, float("nan")], [3.0, 10.0], [5.0, 20.0]])
    layer.train()
    out = layer(x)
    assert out.shape == (3, 4)
    assert torch.allclose(layer.mean, torch.tensor([3.0, 15.0]))
    assert out[0, 1] == 0 and out[0, 3] == 1 and out[1, 3] == 0
    assert torch.isfinite(out).all()
    layer.eval()
    before = layer.mean.clone()
    layer(torch.tensor([[100.0, 100.0]]))
    assert torch.equal(layer.mean, before)


def test_hash_rows_is_stable_in_range_and_per_feature() -> None:
    ids = np.arange(-5, 10_000, dtype=np.int64)
    valid = np.ones(len(ids), bool)
    valid[3] = False
    a = hash_rows(ids, valid, 1024, "user_id")
    assert a[3] == 0
    assert a[valid].min() >= 1 and a.max() <= 1023
    assert np.array_equal(a, hash_rows(ids, valid, 1024, "user_id"))
    assert not np.array_equal(a, hash_rows(ids, valid, 1024, "ad_id"))
    counts = np.bincount(a[valid], minlength=1024)[1:]
    assert counts.max() < 3 * counts.mean()  # spread over the table
    # pinned values: a change of the hash would silently remap every trained embedding
    pinned = hash_rows(np.array([0, 1, 2**40]), np.ones(3, bool), 1000, "user_id")
    assert pinned.tolist() == [410, 446, 683]


def test_to_batch_converts_nulls_and_verticals(full_spec: FeatureSpec, cfg: Config) -> None:
    layout = InputLayout.for_vm(full_spec, cfg.vm, "feed")
    n = 3
    cols = {name: pa.array([1, None, 3], pa.int64()) for name, _ in layout.categorical}
    cols.update({name: pa.array([0.5, None, 2.0], pa.float32()) for name in layout.dense})
    cols.update(label=pa.array([0, 1, 0], pa.int8()), vertical=pa.array(["feed"] * n))
    batch = to_batch(pa.table(cols), layout)
    assert batch.cat[1].tolist() == [0] * len(layout.categorical)
    assert torch.isnan(batch.dense[1]).all() and not torch.isnan(batch.dense[0]).any()
    assert batch.label.tolist() == [0.0, 1.0, 0.0]
    assert batch.vertical.tolist() == [0, 0, 0]

"""exfm/losses.py against values computed by hand with `math`, plus gradient flow (which tensors a
loss must not send gradient into), numerical stability and shape checks."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from exfm.losses import (
    ah_loss,
    bce,
    kd_loss,
    label_scale,
    label_scale_logit,
    sa_adapter_loss,
    sa_distill_loss,
)

LOG2 = math.log(2.0)


def _t(*values: float, grad: bool = False) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32, requires_grad=grad)


def _softplus(z: float) -> float:
    return math.log(1.0 + math.exp(z))


def test_bce_hard_target() -> None:
    # z=0, y=1: log(1 + e^0) - 1*0 = log 2.
    assert bce(_t(0.0), _t(1.0)).item() == pytest.approx(LOG2, rel=1e-6)
    # z=0, y=0 is also log 2; z=1, y=0: log(1 + e) = 1.3132617.
    assert bce(_t(0.0, 1.0), _t(0.0, 0.0)).item() == pytest.approx((LOG2 + 1.3132617) / 2, rel=1e-6)


def test_bce_soft_target() -> None:
    # z=2, t=0.25: log(1 + e^2) - 0.25*2 = 2.1269280 - 0.5 = 1.6269280.
    assert bce(_t(2.0), _t(0.25)).item() == pytest.approx(1.6269280, rel=1e-6)
    assert bce(_t(2.0), _t(0.25)).item() == pytest.approx(_softplus(2.0) - 0.5, rel=1e-6)


def test_bce_is_finite_at_extreme_logits() -> None:
    # z=100, y=0: log(1 + e^100) ~ 100; z=-100, y=1: log(1 + e^-100) + 100 ~ 100; right answers: ~0.
    loss = bce(_t(100.0, -100.0, 100.0, -100.0), _t(0.0, 1.0, 1.0, 0.0))
    assert math.isfinite(loss.item())
    assert loss.item() == pytest.approx((100.0 + 100.0 + 0.0 + 0.0) / 4, rel=1e-6)


def test_extreme_logits_give_finite_gradients() -> None:
    s = _t(100.0, -100.0, grad=True)
    d = _t(-100.0, 100.0, grad=True)
    ah_loss(s, d, _t(0.0, 1.0), _t(100.0, -100.0), w=1.0, alpha=3.0).backward()
    assert torch.isfinite(s.grad).all() and torch.isfinite(d.grad).all()


def test_mismatched_shapes_raise_naming_them() -> None:
    with pytest.raises(ValueError, match=r"logit \(3,\).*target \(2,\)"):
        bce(torch.zeros(3), torch.zeros(2))
    with pytest.raises(ValueError, match=r"fm_logit \(4,\)"):
        kd_loss(torch.zeros(3), torch.zeros(3), torch.zeros(4), w=1.0)
    with pytest.raises(ValueError, match=r"d \(3, 1\)"):
        ah_loss(torch.zeros(3), torch.zeros(3, 1), torch.zeros(3), torch.zeros(3), 1.0, 1.0)
    with pytest.raises(ValueError, match=r"sa_logit \(2,\)"):
        sa_distill_loss(torch.zeros(3), torch.zeros(2))


def test_label_scale_scales_the_odds() -> None:
    # alpha=2: odds 1/9 -> 2/9 (0.1 -> 0.2/1.1), 3/7 -> 6/7 (0.3 -> 0.6/1.3), 0.6 -> 1.2/1.6 = 0.75.
    out = label_scale(_t(0.1, 0.3, 0.6), alpha=2.0)
    assert out.tolist() == pytest.approx([0.2 / 1.1, 0.6 / 1.3, 0.75], rel=1e-6)
    p = _t(0.0, 0.05, 1.0)
    assert torch.equal(label_scale(p, alpha=1.0), p)
    assert label_scale(_t(0.0, 1.0), alpha=7.0).tolist() == [0.0, 1.0]


def test_label_scale_does_not_saturate_where_min_would() -> None:
    # min(2p, 1) gave every p >= 0.5 the target 1, tying their ranking: the odds form keeps it.
    out = label_scale(_t(0.5, 0.6, 0.9, 0.99), alpha=2.0)
    assert (out < 1).all() and (out.diff() > 0).all()


probabilities = st.floats(0.0, 1.0, allow_nan=False)
alphas = st.floats(1e-3, 1e3, allow_nan=False)


@given(p=probabilities, q=probabilities, alpha=alphas)
def test_label_scale_is_increasing_and_inside_the_unit_interval(
    p: float, q: float, alpha: float
) -> None:
    lo, hi = sorted((p, q))
    out = label_scale(torch.tensor([lo, hi], dtype=torch.float64), alpha).tolist()
    assert 0.0 <= out[0] <= out[1] <= 1.0
    if lo >= 1e-6 and hi <= 1 - 1e-6 and hi - lo >= 1e-6:  # strictly, where float64 resolves it
        assert 0.0 < out[0] < out[1] < 1.0


@given(p=st.floats(0.0, 1e-3), alpha=st.floats(0.1, 10.0))
def test_label_scale_is_alpha_p_for_small_p(p: float, alpha: float) -> None:
    # alpha p / (1 + (alpha - 1) p): the relative distance to alpha p is |alpha - 1| p / (1 + ...).
    out = label_scale(torch.tensor([p], dtype=torch.float64), alpha).item()
    assert out == pytest.approx(alpha * p, rel=abs(alpha - 1) * p * 1.01 + 1e-12, abs=1e-300)


@given(p=probabilities)
def test_label_scale_is_the_identity_at_alpha_1(p: float) -> None:
    t = torch.tensor([p], dtype=torch.float64)
    assert torch.equal(label_scale(t, 1.0), t)


@given(z=st.floats(-30.0, 30.0), alpha=alphas)
def test_label_scale_from_the_logit_is_the_same_target(z: float, alpha: float) -> None:
    t = torch.tensor([z], dtype=torch.float64)
    expected = label_scale(torch.sigmoid(t), alpha).item()
    assert label_scale_logit(t, alpha).item() == pytest.approx(expected, rel=1e-9, abs=1e-300)


@pytest.mark.parametrize("alpha", [0.0, -1.0, math.inf, math.nan])
def test_label_scale_rejects_nonpositive_alpha(alpha: float) -> None:
    with pytest.raises(ValueError, match="alpha"):
        label_scale(_t(0.5), alpha=alpha)
    with pytest.raises(ValueError, match="alpha"):
        label_scale_logit(_t(0.5), alpha=alpha)


def test_kd_loss_value() -> None:
    # s=[0, 1], y=[1, 0], fm_logit=[0, log 3] -> p_F=[0.5, 0.75], w=0.5.
    # h(s, y)   = (log 2 + log(1+e)) / 2
    # h(s, p_F) = ((log 2 - 0.5*0) + (log(1+e) - 0.75*1)) / 2
    label_part = (LOG2 + _softplus(1.0)) / 2
    fm_part = (LOG2 + _softplus(1.0) - 0.75) / 2
    loss = kd_loss(_t(0.0, 1.0), _t(1.0, 0.0), _t(0.0, math.log(3.0)), w=0.5)
    assert loss.item() == pytest.approx(label_part + 0.5 * fm_part, rel=1e-6)
    # = 1.0032044 + 0.5 * 0.6282044
    assert loss.item() == pytest.approx(1.3173067, rel=1e-6)


def test_kd_loss_sends_no_gradient_to_fm() -> None:
    s = _t(0.3, -0.2, grad=True)
    fm_logit = _t(1.0, -1.0, grad=True)
    kd_loss(s, _t(1.0, 0.0), fm_logit, w=2.0).backward()
    assert fm_logit.grad is None
    # d/ds of mean BCE is (sigmoid(s) - t) / B; summed over both targets with weight w.
    sig = [1 / (1 + math.exp(-0.3)), 1 / (1 + math.exp(0.2))]
    p_fm = [1 / (1 + math.exp(-1.0)), 1 / (1 + math.exp(1.0))]
    expected = [(sig[i] - y) / 2 + 2.0 * (sig[i] - p_fm[i]) / 2 for i, y in enumerate([1.0, 0.0])]
    assert s.grad.tolist() == pytest.approx(expected, rel=1e-5)


def test_ah_loss_value() -> None:
    # s=[0, 1], d=[2, -1], y=[1, 0], p_F=[0.1, 0.5], alpha=4: the odds 1/9 and 1 become 4/9 and 4,
    # LS=[4/13, 4/5], w=2.
    # h(s, y)  = (log 2 + log(1+e)) / 2
    # h(d, LS) = ((log(1+e^2) - 4/13*2) + (log(1+e^-1) + 4/5)) / 2
    label_part = (LOG2 + _softplus(1.0)) / 2
    aux_part = ((_softplus(2.0) - 8 / 13) + (_softplus(-1.0) + 0.8)) / 2
    fm_logit = _t(math.log(0.1 / 0.9), 0.0)
    loss = ah_loss(_t(0.0, 1.0), _t(2.0, -1.0), _t(1.0, 0.0), fm_logit, w=2.0, alpha=4.0)
    assert loss.item() == pytest.approx(label_part + 2.0 * aux_part, rel=1e-6)


def test_ah_loss_keeps_heads_apart() -> None:
    # The serving head sees labels only and the auxiliary head the FM only (EXFM.md).
    s = _t(0.5, grad=True)
    d = _t(-0.5, grad=True)
    fm_logit = _t(2.0, grad=True)
    ah_loss(s, d, _t(1.0), fm_logit, w=3.0, alpha=1.0).backward()
    sig = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731
    assert s.grad.item() == pytest.approx(sig(0.5) - 1.0, rel=1e-5)
    assert d.grad.item() == pytest.approx(3.0 * (sig(-0.5) - sig(2.0)), rel=1e-5)
    assert fm_logit.grad is None


def test_sa_adapter_loss_value_and_gradient() -> None:
    # sa_logit=[log 3, 0], y=[1, 1]: (log(4/3) + log 2) / 2.
    sa_logit = _t(math.log(3.0), 0.0, grad=True)
    loss = sa_adapter_loss(sa_logit, _t(1.0, 1.0))
    assert loss.item() == pytest.approx((math.log(4 / 3) + LOG2) / 2, rel=1e-6)
    loss.backward()
    assert sa_logit.grad.tolist() == pytest.approx([(0.75 - 1) / 2, (0.5 - 1) / 2], rel=1e-5)


def test_sa_distill_loss_value_and_stop_gradient() -> None:
    # d2=[0], sa_logit=[log 3] -> target 0.75: log 2 - 0.75*0 = log 2; d/dd2 = 0.5 - 0.75 = -0.25.
    d2 = _t(0.0, grad=True)
    sa_logit = _t(math.log(3.0), grad=True)
    loss = sa_distill_loss(d2, sa_logit)
    assert loss.item() == pytest.approx(LOG2, rel=1e-6)
    loss.backward()
    assert sa_logit.grad is None
    assert d2.grad.item() == pytest.approx(-0.25, rel=1e-5)


def test_losses_are_scalars() -> None:
    b = torch.zeros(5)
    for loss in (
        bce(b, b),
        kd_loss(b, b, b, 1.0),
        ah_loss(b, b, b, b, 1.0, 2.0),
        sa_adapter_loss(b, b),
        sa_distill_loss(b, b),
    ):
        assert loss.shape == ()


def test_masked_terms_average_over_the_masked_rows_only() -> None:
    # rows: logit 0 -> h = log 2 for any target of 0.5; row 2 (logit 2, target 0) is masked out
    logit = torch.tensor([0.0, 0.0, 2.0])
    target = torch.tensor([1.0, 0.0, 0.0])
    mask = torch.tensor([True, True, False])
    assert bce(logit, target, mask).item() == pytest.approx(math.log(2))
    # no row with a prediction: the term vanishes instead of dividing by zero
    assert bce(logit, target, torch.zeros(3, dtype=torch.bool)).item() == 0.0
    # the label term of kd/ah keeps every row; the FM term only the masked ones
    y = torch.tensor([1.0, 0.0, 0.0])
    fm = torch.tensor([0.0, 0.0, 50.0])  # row 2's FM says "click": ignored under the mask
    s = torch.tensor([0.0, 0.0, 2.0])
    label_term = (math.log(2) + math.log(2) + math.log(1 + math.exp(2))) / 3
    assert kd_loss(s, y, fm, 1.0, mask).item() == pytest.approx(label_term + math.log(2))
    d = torch.zeros(3)
    assert ah_loss(s, d, y, fm, 0.5, 1.0, mask).item() == pytest.approx(
        label_term + 0.5 * math.log(2)
    )

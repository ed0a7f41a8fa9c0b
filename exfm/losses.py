"""The ExFM training losses (EXFM.md "Losses"), as small pure functions on torch tensors.

This module owns the arithmetic of every loss a vertical model (VM) or its Student Adapter (SA) is
trained with; models return logits (STYLE.md 3) and the training loop combines these functions.
Nothing here holds state, reads files or steps an optimizer.

Notation (EXFM.md): `y` the label; `fm_logit` the foundation model's logit as stored by the DAS
(p_F = sigmoid(fm_logit)); `s` the VM serving-head logit; `d` the auxiliary-head logit; `d2` the
second auxiliary head (the SA's distillation target head); `sa_logit` the Student Adapter's output
logit. Every batch tensor is shape (B,) float32, and every loss is a scalar: the mean over B.

`mask` (B,) bool, where given, marks the rows that have an FM prediction (the DAS join keeps rows
without one): terms that need the FM average over the masked rows only (0 when there are none),
while label terms always use every row.

Targets that come from another model (p_F, the adapter's prediction) are detached here, so a loss
never sends gradient into the model that produced its target.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def _check_same_shape(**tensors: Tensor) -> None:
    """Raise ValueError unless all tensors share one shape; the message names every shape."""
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    if len(set(shapes.values())) > 1:
        described = ", ".join(f"{name} {shape}" for name, shape in shapes.items())
        raise ValueError(f"loss inputs must have the same shape, got {described}")


def bce(logit: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """h(logit, target): binary cross-entropy on a logit, mean over the batch (or over the rows
    of `mask`).

    logit: (B,) float, any real value. target: (B,) float, a hard (0/1) or soft label in [0, 1].
    mask: optional (B,) bool. Returns a scalar. Computed as softplus(z) - t*z by torch, so logits
    of +-100 stay finite.
    """
    _check_same_shape(logit=logit, target=target)
    if mask is None:
        return F.binary_cross_entropy_with_logits(logit, target)
    _check_same_shape(logit=logit, mask=mask)
    each = F.binary_cross_entropy_with_logits(logit, target, reduction="none")
    weight = mask.to(each.dtype)
    return (each * weight).sum() / weight.sum().clamp(min=1.0)


def label_scale(p: Tensor, alpha: float) -> Tensor:
    """LS(p): p with its odds multiplied by alpha, elementwise (EXFM.md; ours: the paper's form is
    not public): LS(p) = alpha p / (1 - p + alpha p), i.e. logit(LS(p)) = logit(p) + log(alpha).

    p: (B,) probabilities in [0, 1]. Returns (B,). alpha > 0; alpha = 1 is the identity. Ads labels
    are long-tailed, so p_F sits near 0, where LS(p) ~ alpha * p scales the auxiliary head's
    target (and gradient) up; unlike min(alpha * p, 1), it is strictly increasing and stays inside
    (0, 1) for every p inside it, so it never saturates or ties the ranking of confident
    predictions on data with many positives. 0 and 1 map to themselves.
    """
    _check_alpha(alpha)
    return alpha * p / (1.0 - p + alpha * p)


def label_scale_logit(fm_logit: Tensor, alpha: float) -> Tensor:
    """LS(sigmoid(fm_logit)) computed from the logit, sigmoid(fm_logit + log(alpha)): the same
    target, exact for any logit (no 1 - p rounding where p_F is close to 1)."""
    _check_alpha(alpha)
    return torch.sigmoid(fm_logit + math.log(alpha))


def _check_alpha(alpha: float) -> None:
    if not (alpha > 0 and math.isfinite(alpha)):
        raise ValueError(f"label_scale alpha must be a finite number > 0, got {alpha}")


def kd_loss(s: Tensor, y: Tensor, fm_logit: Tensor, w: float, mask: Tensor | None = None) -> Tensor:
    """Vanilla knowledge distillation: L_kd = h(s, y) + w * h(s, sigmoid(fm_logit)).

    s, y, fm_logit: (B,). Returns a scalar. One head fits both targets (the baseline AH improves
    on). The FM target is detached: the FM is external and must receive no gradient.
    """
    _check_same_shape(s=s, y=y, fm_logit=fm_logit)
    p_fm = torch.sigmoid(fm_logit.detach())
    return bce(s, y) + w * bce(s, p_fm, mask)


def ah_loss(
    s: Tensor,
    d: Tensor,
    y: Tensor,
    fm_logit: Tensor,
    w: float,
    alpha: float,
    mask: Tensor | None = None,
) -> Tensor:
    """Auxiliary Head: L_ah = h(s, y) + w * h(d, LS(sigmoid(fm_logit), alpha)).

    s, d, y, fm_logit: (B,). Returns a scalar. The serving head s sees labels only and the
    auxiliary head d sees the (label-scaled, detached) FM prediction only, which is what keeps the
    FM's cross-vertical bias out of the served prediction.

    The gradient scaling beta is not applied here: it multiplies the gradient the auxiliary branch
    sends into the shared backbone, so it lives structurally in the VM model, on the auxiliary
    branch's input (identity forward, beta * grad backward). This loss is the same for any beta.
    """
    _check_same_shape(s=s, d=d, y=y, fm_logit=fm_logit)
    target = label_scale_logit(fm_logit.detach(), alpha)
    return bce(s, y) + w * bce(d, target, mask)


def sa_adapter_loss(sa_logit: Tensor, y: Tensor, mask: Tensor | None = None) -> Tensor:
    """Student Adapter training loss: L_sta = h(SA(p_F), y).

    sa_logit, y: (B,). Returns a scalar. The adapter's input is the FM logit, which the caller
    detaches, so this loss trains the adapter only (Algorithm 1, first step of each batch).
    """
    return bce(sa_logit, y, mask)


def sa_distill_loss(d2: Tensor, sa_logit: Tensor, mask: Tensor | None = None) -> Tensor:
    """Student Adapter distillation: L_sa = h(d', SG(sigmoid(SA(p_F)))).

    d2: (B,) the VM's second auxiliary head. sa_logit: (B,) the adapter's output, recomputed after
    its own step. Returns a scalar. The adapter's prediction is a fixed target under stop-gradient,
    so the VM step sends no gradient into the adapter (it is trained by `sa_adapter_loss` alone).
    """
    _check_same_shape(d2=d2, sa_logit=sa_logit)
    return bce(d2, torch.sigmoid(sa_logit.detach()), mask)

"""Layers shared by the foundation model and the vertical models; they return tensors, not losses.

Shapes: B batch, C categorical features, D dense features, E embedding size, H hidden width.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


class CategoricalEmbeddings(nn.Module):
    """One table per categorical feature (row 0 = missing); (B, C) rows -> (B, C * E).
    Tables give sparse gradients, so that an optimizer touches only the rows a batch used."""

    def __init__(self, rows: Sequence[int], dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.tables = nn.ModuleList(nn.Embedding(r, dim, sparse=True) for r in rows)
        for table in self.tables:
            nn.init.normal_(table.weight, std=0.01)

    @property
    def out_dim(self) -> int:
        return self.dim * len(self.tables)

    def forward(self, cat: torch.Tensor) -> torch.Tensor:
        if not len(self.tables):
            return cat.new_zeros((cat.shape[0], 0), dtype=torch.float32)
        return torch.cat([t(cat[:, j]) for j, t in enumerate(self.tables)], dim=1)


class DenseInput(nn.Module):
    """(B, D) raw dense values, NaN = missing -> (B, 2D): standardized values (0 where missing,
    clipped to +-10) and missing indicators. Mean and variance are running statistics updated in
    training mode and stored with the model, like BatchNorm's; the running count is capped so that
    they keep following a drifting stream."""

    def __init__(self, n: int, max_count: float = 1e6) -> None:
        super().__init__()
        self.n = n
        self.max_count = max_count
        self.register_buffer("mean", torch.zeros(n))
        self.register_buffer("var", torch.ones(n))
        self.register_buffer("count", torch.zeros(n))

    @property
    def out_dim(self) -> int:
        return 2 * self.n

    @torch.no_grad()
    def _update(self, x: torch.Tensor, missing: torch.Tensor) -> None:
        present = (~missing).to(x.dtype)
        k = present.sum(0)
        if not bool((k > 0).any()):
            return
        vals = torch.where(missing, torch.zeros_like(x), x)
        batch_mean = vals.sum(0) / k.clamp(min=1)
        batch_var = ((vals - batch_mean) ** 2 * present).sum(0) / k.clamp(min=1)
        total = (self.count + k).clamp(max=self.max_count)
        w = torch.where(k > 0, k / (self.count + k).clamp(min=1), torch.zeros_like(k))
        delta = batch_mean - self.mean
        self.mean += w * delta
        self.var = (1 - w) * self.var + w * batch_var + w * (1 - w) * delta**2
        self.count.copy_(total)

    def forward(self, dense: torch.Tensor) -> torch.Tensor:
        missing = torch.isnan(dense)
        if self.training:
            self._update(dense, missing)
        z = (dense - self.mean) / torch.sqrt(self.var + 1e-6)
        z = torch.where(missing, torch.zeros_like(z), z.clamp(-10.0, 10.0))
        return torch.cat([z, missing.to(z.dtype)], dim=1)


class MLP(nn.Sequential):
    """Linear + ReLU layers of the given widths; (B, in_dim) -> (B, widths[-1])."""

    def __init__(self, in_dim: int, widths: Sequence[int]) -> None:
        layers: list[nn.Module] = []
        for width in widths:
            layers += [nn.Linear(in_dim, width), nn.ReLU()]
            in_dim = width
        super().__init__(*layers)
        self.out_dim = in_dim


class CrossNet(nn.Module):
    """DCNv2 cross layers: x_{l+1} = x_0 * (W_l x_l + b_l) + x_l, with W_l full rank or the
    low-rank product U_l V_l. (B, K) -> (B, K)."""

    def __init__(self, dim: int, layers: int, rank: int = 0) -> None:
        super().__init__()
        self.out_dim = dim

        def project() -> nn.Module:
            if rank and rank < dim:
                return nn.Sequential(nn.Linear(dim, rank, bias=False), nn.Linear(rank, dim))
            return nn.Linear(dim, dim)

        self.layers = nn.ModuleList(project() for _ in range(layers))

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        for layer in self.layers:
            x = x0 * layer(x) + x
        return x


class _ScaleGrad(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor, beta: float
    ) -> torch.Tensor:
        ctx.beta = beta  # type: ignore[attr-defined]
        return x.view_as(x)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> tuple:
        return grad * ctx.beta, None  # type: ignore[attr-defined]


def scale_grad(x: torch.Tensor, beta: float) -> torch.Tensor:
    """Identity in the forward pass; multiplies the gradient flowing back into x by beta."""
    if beta == 1.0:
        return x
    return _ScaleGrad.apply(x, beta)


class VerticalHeads(nn.Module):
    """One linear head per vertical: (B, H) features and (B,) vertical index -> (B,) logits."""

    def __init__(self, in_dim: int, verticals: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(verticals, in_dim))
        self.bias = nn.Parameter(torch.zeros(verticals))
        nn.init.normal_(self.weight, std=in_dim**-0.5)

    def forward(self, h: torch.Tensor, vertical: torch.Tensor) -> torch.Tensor:
        # Every head on every row, then a gather: unlike indexing the weights by row, whose
        # backward accumulates into shared rows in a thread-dependent order, this is bitwise
        # reproducible (and V is small).
        every = torch.nn.functional.linear(h, self.weight, self.bias)
        return every.gather(1, vertical.unsqueeze(1)).squeeze(1)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# A training step costs about 3x a forward pass's FLOPs (forward, and a backward twice as costly):
# what the accounting of co-distillation and of training compute assumes.
TRAINING_PASSES = 3.0


def flops_per_example(module: nn.Module, *inputs: torch.Tensor) -> float:
    """Floating-point operations of one forward pass per example, counted by torch's
    FlopCounterMode (matrix products; element-wise work is not counted) on the given batch."""
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            module(*inputs)
    finally:
        module.train(was_training)
    return counter.get_total_flops() / inputs[0].shape[0]

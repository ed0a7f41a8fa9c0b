"""Optimizers of the streaming trainer.

Embedding tables get `RowWiseAdagrad` (one accumulator per row, as torchrec's rowwise Adagrad): it
takes sparse gradients, so a step touches only the rows a batch used, and its state is one float
per row, so snapshots stay close to the size of the weights. Dense parameters get Adam.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from exfm.models.layers import CategoricalEmbeddings


class RowWiseAdagrad(torch.optim.Optimizer):
    """Adagrad with a per-row accumulator of the mean squared gradient, for 2-D tables whose
    gradients are sparse (or dense)."""

    def __init__(self, params: Iterable[nn.Parameter], lr: float = 0.05, eps: float = 1e-8) -> None:
        super().__init__(params, {"lr": lr, "eps": eps})

    @torch.no_grad()
    def step(self, closure: None = None) -> None:  # type: ignore[override]
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if grad.is_sparse:
                    grad = grad.coalesce()
                    rows, values = grad.indices()[0], grad.values()
                else:
                    rows = torch.arange(p.shape[0], device=p.device)
                    values = grad
                state = self.state[p]
                if "sum" not in state:
                    state["sum"] = torch.zeros(p.shape[0], dtype=p.dtype, device=p.device)
                state["sum"].index_add_(0, rows, values.pow(2).mean(dim=1))
                scale = state["sum"][rows].sqrt().add_(group["eps"])
                p.index_add_(0, rows, values / scale.unsqueeze(1), alpha=-group["lr"])


def split_parameters(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(embedding-table parameters, all other parameters) of a model."""
    tables = {
        id(p)
        for m in model.modules()
        if isinstance(m, CategoricalEmbeddings)
        for p in m.parameters()
    }
    sparse = [p for p in model.parameters() if id(p) in tables]
    dense = [p for p in model.parameters() if id(p) not in tables]
    return sparse, dense


class ModelOptimizer:
    """Row-wise Adagrad on a model's embedding tables and Adam on the rest, stepped together."""

    def __init__(self, model: nn.Module, lr: float, embedding_lr: float) -> None:
        sparse, dense = split_parameters(model)
        self.parts: dict[str, torch.optim.Optimizer] = {}
        if sparse:
            self.parts["embeddings"] = RowWiseAdagrad(sparse, lr=embedding_lr)
        if dense:
            self.parts["dense"] = torch.optim.Adam(dense, lr=lr)

    def zero_grad(self) -> None:
        for opt in self.parts.values():
            opt.zero_grad(set_to_none=True)

    def step(self) -> None:
        for opt in self.parts.values():
            opt.step()

    def state_dict(self) -> dict[str, dict]:
        return {name: opt.state_dict() for name, opt in self.parts.items()}

    def load_state_dict(self, state: dict[str, dict]) -> None:
        if set(state) != set(self.parts):
            raise ValueError(
                f"optimizer state has parts {sorted(state)}, expected {sorted(self.parts)}"
            )
        for name, opt in self.parts.items():
            opt.load_state_dict(state[name])

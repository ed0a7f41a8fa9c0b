"""The vertical model (VM): small, one per vertical, on its own feature subset.

A shared backbone (embeddings + standardized dense inputs + MLP) feeds
- the serving head s: trained on labels only (the only head that is served);
- the auxiliary head d (AH): trained on the FM's stored prediction;
- a second auxiliary head d2: trained on the Student Adapter's output (SA target).
The auxiliary heads read the backbone through `scale_grad(h, beta)`: identical forward, but the
gradient they send back into the backbone is multiplied by beta (EXFM.md's gradient scaling).

Input: cat (B, C) rows, dense (B, D) NaN = missing. Output: VMOutput of three (B,) logits.
`serving_module()` returns just backbone + serving head, exportable with torch.export.
"""

from __future__ import annotations

import copy
from typing import NamedTuple

import torch
from torch import nn

from exfm.config_schema import VMConfig
from exfm.models.inputs import InputLayout
from exfm.models.layers import MLP, CategoricalEmbeddings, DenseInput, scale_grad


class VMOutput(NamedTuple):
    serving: torch.Tensor  # (B,) s
    aux: torch.Tensor  # (B,) d, the FM-distillation head
    sa: torch.Tensor  # (B,) d2, the Student-Adapter-distillation head


class Backbone(nn.Module):
    """(B, C) rows and (B, D) dense -> (B, H) shared representation."""

    def __init__(self, layout: InputLayout, cfg: VMConfig) -> None:
        super().__init__()
        self.embeddings = CategoricalEmbeddings(
            [r for _, r in layout.categorical], cfg.embedding_dim
        )
        self.dense = DenseInput(len(layout.dense))
        self.mlp = MLP(self.embeddings.out_dim + self.dense.out_dim, cfg.hidden)
        self.out_dim = self.mlp.out_dim

    def forward(self, cat: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        return self.mlp(torch.cat([self.embeddings(cat), self.dense(dense)], dim=1))


def _head(in_dim: int, hidden: int) -> nn.Module:
    if hidden == 0:
        return nn.Linear(in_dim, 1)
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, 1))


class ServingVM(nn.Module):
    """What is served: backbone + serving head, (B, C), (B, D) -> (B,) logits."""

    def __init__(self, backbone: Backbone, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, cat: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(cat, dense)).squeeze(1)


class VerticalModel(nn.Module):
    def __init__(self, layout: InputLayout, cfg: VMConfig) -> None:
        super().__init__()
        self.layout = layout
        self.grad_scale = cfg.grad_scale
        self.backbone = Backbone(layout, cfg)
        self.serving_head = nn.Linear(self.backbone.out_dim, 1)
        self.aux_head = _head(self.backbone.out_dim, cfg.aux_hidden)
        self.sa_head = _head(self.backbone.out_dim, cfg.aux_hidden)

    @torch.no_grad()
    def init_output_bias(self, prior_logit: torch.Tensor) -> None:
        """Start every head at the log-odds of the vertical's CTR (a (1,) tensor) instead of 0."""
        for head in (self.serving_head, self.aux_head, self.sa_head):
            last = head if isinstance(head, nn.Linear) else head[-1]
            last.bias.fill_(float(prior_logit.reshape(-1)[0]))

    def forward(self, cat: torch.Tensor, dense: torch.Tensor) -> VMOutput:
        h = self.backbone(cat, dense)
        h_aux = scale_grad(h, self.grad_scale)
        return VMOutput(
            self.serving_head(h).squeeze(1),
            self.aux_head(h_aux).squeeze(1),
            self.sa_head(h_aux).squeeze(1),
        )

    def serving_module(self) -> ServingVM:
        """A copy of the served part only (no AH/SA heads), in eval mode."""
        return ServingVM(copy.deepcopy(self.backbone), copy.deepcopy(self.serving_head)).eval()

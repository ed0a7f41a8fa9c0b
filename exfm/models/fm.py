"""The foundation model (FM): a DCNv2-style cross network beside a deep tower over every feature,
conditioned on the vertical (a vertical embedding in the input, one output head per vertical).

Input (see exfm/models/inputs.py): cat (B, C) rows, dense (B, D) NaN = missing, vertical (B,).
Output: (B,) logits. Scaled by the `fm` config section (embedding size, cross layers and rank,
deep widths); with the defaults it costs >= 20x the VM's FLOPs per example and has >= 10x its
parameters (tests/unit/test_models.py, benchmarks/bench_train.py).
"""

from __future__ import annotations

import torch
from torch import nn

from exfm.config_schema import FMConfig
from exfm.models.inputs import InputLayout
from exfm.models.layers import MLP, CategoricalEmbeddings, CrossNet, DenseInput, VerticalHeads


class FoundationModel(nn.Module):
    def __init__(self, layout: InputLayout, cfg: FMConfig) -> None:
        super().__init__()
        self.layout = layout
        self.embeddings = CategoricalEmbeddings(
            [rows for _, rows in layout.categorical], cfg.embedding_dim
        )
        self.dense = DenseInput(len(layout.dense))
        self.vertical_embedding = nn.Embedding(len(layout.verticals), cfg.vertical_dim)
        width = self.embeddings.out_dim + self.dense.out_dim + cfg.vertical_dim
        self.cross = CrossNet(width, cfg.cross_layers, cfg.cross_rank)
        self.deep = MLP(width, cfg.deep_layers)
        self.heads = VerticalHeads(self.cross.out_dim + self.deep.out_dim, len(layout.verticals))

    @torch.no_grad()
    def init_output_bias(self, prior_logit: torch.Tensor) -> None:
        """Start each vertical's head at the log-odds of its CTR (V,), instead of 0 (a CTR of
        50%), so that a new model does not spend its first days learning the base rate."""
        self.heads.bias.copy_(prior_logit)

    def forward(
        self, cat: torch.Tensor, dense: torch.Tensor, vertical: torch.Tensor
    ) -> torch.Tensor:
        x0 = torch.cat(
            [self.embeddings(cat), self.dense(dense), self.vertical_embedding(vertical)], dim=1
        )
        return self.heads(torch.cat([self.cross(x0), self.deep(x0)], dim=1), vertical)

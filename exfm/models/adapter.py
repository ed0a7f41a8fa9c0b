"""The Student Adapter (SA): a tiny MLP whose only input is the FM's logit, trained on the VM's
fresh labels so that it re-calibrates a stale FM towards today's distribution (EXFM.md).

(B,) FM logits -> (B,) adapted logits. It is residual, with a zero-initialized output layer, so it
starts as the identity: an untrained adapter passes the FM's prediction through unchanged.
"""

from __future__ import annotations

import torch
from torch import nn


class StudentAdapter(nn.Module):
    def __init__(self, hidden: int = 16) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(1, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        nn.init.zeros_(self.mlp[2].weight)
        nn.init.zeros_(self.mlp[2].bias)

    def forward(self, fm_logit: torch.Tensor) -> torch.Tensor:
        return fm_logit + self.mlp(fm_logit.unsqueeze(1)).squeeze(1)

"""A process's place in a distributed run (torchrun: exfm/distributed.py launches it), as one
small object the trainer calls wherever ranks differ; in one process every call does nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import torch


@dataclass(frozen=True)
class Dist:
    """This process's place in a run: its rank and the number of processes. The trainer calls
    its methods at every point where ranks differ; in one process (`Dist()`, the default) each
    of them does nothing, so the training loop reads the same either way."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        """Rank 0: the process that evaluates, gates and writes."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def wrap(self, model: torch.nn.Module, device: torch.device) -> torch.nn.Module | None:
        """The model wrapped in DistributedDataParallel (None in one process)."""
        if not self.distributed:
            return None
        import torch
        from torch.nn.parallel import DistributedDataParallel

        ids = [torch.cuda.current_device()] if device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def shard(self, order: torch.Tensor) -> torch.Tensor:
        """This rank's slice of the day's permutation: slices of equal length, wrapping around,
        so that every rank takes the same number of steps."""
        if not self.distributed:
            return order
        per_rank = -(-len(order) // self.world)
        return order.repeat(2)[self.rank * per_rank : (self.rank + 1) * per_rank]

    def gather(self, pre_update: np.ndarray, order: torch.Tensor, device: torch.device) -> None:
        """Fill `pre_update` with every rank's predictions (NCCL gathers GPU tensors, gloo CPU
        ones); in one process it already holds them all."""
        if not self.distributed:
            return
        import torch

        mine = torch.from_numpy(pre_update[order.numpy()]).to(device)
        gathered = [torch.empty_like(mine) for _ in range(self.world)]
        orders = [torch.empty_like(order.to(device)) for _ in range(self.world)]
        torch.distributed.all_gather(gathered, mine)
        torch.distributed.all_gather(orders, order.to(device))
        for idx, values in zip(orders, gathered, strict=True):
            pre_update[idx.cpu().numpy()] = values.cpu().numpy()

    def barrier(self) -> None:
        if self.distributed:
            import torch

            torch.distributed.barrier()

"""Predicting with a model outside training: a snapshot rebuilt from its file alone
(`model_from_payload`), batched logits without gradients (`predict`), the device to run on. The
DAS scores with these, and the trainer evaluates with them; nothing here trains or imports the
trainer.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from exfm.config import Config, build_section
from exfm.config_schema import FMConfig, VMConfig
from exfm.errors import TrainingError
from exfm.models.fm import FoundationModel
from exfm.models.inputs import Batch, InputLayout
from exfm.models.vm import VerticalModel
from exfm.variants import FM

__all__ = ["FM", "device_of", "eval_mode", "model_from_payload", "predict"]


@torch.no_grad()
def predict(
    fn: Callable[[Batch], torch.Tensor], data: Batch, batch_size: int, device: torch.device
) -> np.ndarray:
    """Logits of every row of `data`, in order, computed in batches without gradients."""
    out = [
        fn(data.take(slice(i, i + batch_size)).to(device)).float().cpu()
        for i in range(0, len(data), batch_size)
    ]
    return torch.cat(out).numpy() if out else np.zeros(0, np.float32)


@contextlib.contextmanager
def eval_mode(*modules: torch.nn.Module | None) -> Iterator[None]:
    """Modules in eval mode for the block, then back to the mode each was in."""
    active = [m for m in modules if m is not None]
    modes = [m.training for m in active]
    for m in active:
        m.eval()
    try:
        yield
    finally:
        for m, mode in zip(active, modes, strict=True):
            m.train(mode)


def device_of(cfg: Config) -> torch.device:
    wanted = cfg.train.device
    if wanted == "auto":
        wanted = "cuda" if torch.cuda.is_available() else "cpu"
    if wanted == "cuda" and not torch.cuda.is_available():
        raise TrainingError("train.device is cuda but no CUDA device is available")
    return torch.device(wanted)


def use_threads(cfg: Config) -> int:
    """Set this process's torch CPU threads from train.threads (0: one per CPU the process may
    use) and return the number. torch's own default, every core, oversubscribes as soon as two
    torch processes share a machine (Airflow's tasks, DVC stages beside tests): 2.8-11x slower
    FM training on 2 cores."""
    n = cfg.train.threads or len(os.sched_getaffinity(0))
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def model_from_payload(payload: dict[str, Any]) -> tuple[torch.nn.Module, InputLayout]:
    """Rebuild a model from its snapshot file alone (config, layout and weights), in eval mode."""
    layout = InputLayout.from_dict(json.loads(payload["layout"]))
    model_cfg = json.loads(payload["model_config"])
    if payload["kind"] == "fm":
        model: torch.nn.Module = FoundationModel(layout, build_section(FMConfig, model_cfg, "fm"))
    else:
        model = VerticalModel(layout, build_section(VMConfig, model_cfg, "vm"))
    model.load_state_dict(payload["model"])
    return model.eval(), layout

"""What the streaming trainer trains: a `Trainee` (the FM, or one VM variant of one vertical) with
its model, optimizers and training step, built fresh (`build_trainee`, seeded) and continued
from a snapshot (`Trainee.load`). The daily loop is exfm/training.py; a model rebuilt from its
snapshot alone, for predicting, is exfm/inference.py.

The VM step implements the variants of EXFM.md: baseline (labels only), kd (vanilla KD), ah
(auxiliary head), ah2 (AH plus the second auxiliary head fitted to the raw FM prediction with
weight sa_weight: the Student Adapter's control, with the same heads and the same total
distillation weight), ah_sa (Algorithm 1: a Student Adapter step on L_sta, then a VM step on
L_ah + L_sa with the adapter's re-computed output under stop-gradient). Rows without an FM
prediction (`Batch.fm_mask`) keep their label terms and skip the distillation terms.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import torch

from exfm import losses, variants
from exfm.config import Config
from exfm.config_schema import FMConfig, VMConfig
from exfm.data.schema import FeatureSpec
from exfm.errors import TrainingError
from exfm.models.adapter import StudentAdapter
from exfm.models.fm import FoundationModel
from exfm.models.inputs import Batch, InputLayout
from exfm.models.vm import VerticalModel
from exfm.optim import ModelOptimizer
from exfm.variants import FM


def vm_model_name(name: str) -> str:
    """The registry name of a variant's VMs; TrainingError for a name no variant has."""
    try:
        return variants.vm_model_name(name)
    except ValueError as e:
        raise TrainingError(str(e)) from e


def seed_of(*parts: object) -> int:
    """A 63-bit seed that depends on every part (stable across runs and machines)."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


@dataclass
class Trainee:
    """What differs between the FM and a VM variant: the model, its optimizers and its step."""

    name: str  # registry model name: "fm" or "vm_<variant>"
    vertical: str | None
    kind: str  # "fm" or "vm"
    layout: InputLayout
    model_cfg: FMConfig | VMConfig
    model: torch.nn.Module
    optimizer: ModelOptimizer
    adapter: StudentAdapter | None = None
    adapter_optimizer: torch.optim.Optimizer | None = None
    variant: str = ""
    trained_through: str | None = None  # the last day this in-memory trainee trained on
    snapshot_sha256: str | None = None  # the snapshot that memory equals (None: none, or dirty)
    flops: float | None = None  # forward FLOPs per served example (exfm/training.py, once)
    ddp: torch.nn.Module | None = None  # the model wrapped for distributed training, if any

    @property
    def net(self) -> torch.nn.Module:
        """What a training step calls: the distributed wrapper when there is one."""
        return self.ddp if self.ddp is not None else self.model

    @property
    def needs_fm(self) -> bool:
        return self.kind == "vm" and variants.variant(self.variant).needs_fm

    @property
    def label(self) -> str:
        return f"{self.name}/{self.vertical}" if self.vertical else self.name

    def payload(self, spec_fingerprint: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "format": 1,
            "kind": self.kind,
            "variant": self.variant,
            "vertical": self.vertical or "",
            "spec_fingerprint": spec_fingerprint,
            "layout": json.dumps(self.layout.to_dict()),
            "model_config": json.dumps(self.model_cfg.model_dump()),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
        }
        if self.adapter is not None and self.adapter_optimizer is not None:
            out["adapter"] = self.adapter.state_dict()
            out["adapter_optimizer"] = self.adapter_optimizer.state_dict()
        return out

    def load(self, payload: dict[str, Any]) -> None:
        if InputLayout.from_dict(json.loads(payload["layout"])) != self.layout:
            raise TrainingError(
                f"the parent snapshot of {self.label} reads other features "
                "(vm.features or the feature spec changed)"
            )
        self.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        if self.adapter is not None and self.adapter_optimizer is not None:
            self.adapter.load_state_dict(payload["adapter"])
            self.adapter_optimizer.load_state_dict(payload["adapter_optimizer"])

    def logits(self, batch: Batch) -> torch.Tensor:
        """Served predictions (the FM's logit, or the VM's serving head)."""
        if self.kind == "fm":
            return self.model(batch.cat, batch.dense, batch.vertical)
        return self.model(batch.cat, batch.dense).serving

    def fm_targets(self, fm_logit: torch.Tensor) -> torch.Tensor:
        """The soft targets the variant's FM term fits: p_F (kd), LS(p_F) (the AH variants)."""
        assert isinstance(self.model_cfg, VMConfig) and self.needs_fm
        if self.variant == "kd":
            return torch.sigmoid(fm_logit)
        return losses.label_scale_logit(fm_logit, self.model_cfg.label_scale)

    def step(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step; returns (loss, predictions made before the update)."""
        if self.kind == "fm":
            logit = self.net(batch.cat, batch.dense, batch.vertical)
            loss = losses.bce(logit, batch.label)
        else:
            assert isinstance(self.model_cfg, VMConfig)
            logit, loss = self._vm_loss(batch, self.model_cfg)
        if not torch.isfinite(loss):
            return loss, logit.detach()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return loss.detach(), logit.detach()

    def _vm_loss(self, batch: Batch, cfg: VMConfig) -> tuple[torch.Tensor, torch.Tensor]:
        y, fm, mask = batch.label, batch.fm_logit, batch.fm_mask
        sa_target = None
        if self.variant == "ah_sa":  # Algorithm 1: the adapter steps first, on fresh labels
            assert self.adapter is not None and self.adapter_optimizer is not None
            assert fm is not None
            l_sta = losses.sa_adapter_loss(self.adapter(fm), y, mask)
            self.adapter_optimizer.zero_grad()
            l_sta.backward()
            self.adapter_optimizer.step()
            with torch.no_grad():
                sa_target = self.adapter(fm)
        out = self.net(batch.cat, batch.dense)
        if self.variant == "baseline":
            loss = losses.bce(out.serving, y)
        elif self.variant == "kd":
            loss = losses.kd_loss(out.serving, y, fm, cfg.distill_weight, mask)
        else:
            loss = losses.ah_loss(
                out.serving, out.aux, y, fm, cfg.distill_weight, cfg.label_scale, mask
            )
            if sa_target is not None:
                loss = loss + cfg.sa_weight * losses.sa_distill_loss(out.sa, sa_target, mask)
            elif self.variant == "ah2":  # the control: the same second head on the raw FM logit
                assert fm is not None
                loss = loss + cfg.sa_weight * losses.sa_distill_loss(out.sa, fm, mask)
        return out.serving, loss


def build_trainee(
    cfg: Config,
    spec: FeatureSpec,
    kind: str,
    vertical: str | None = None,
    variant: str | None = None,
    seed: int | None = None,
) -> Trainee:
    """A freshly initialized trainee (weights seeded from train.seed, the model and vertical)."""
    seed = seed_of(cfg.train.seed, kind, vertical, variant) if seed is None else seed
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if kind == "fm":
            layout = InputLayout.for_fm(spec)
            model: torch.nn.Module = FoundationModel(layout, cfg.fm)
            return Trainee(
                FM,
                None,
                "fm",
                layout,
                cfg.fm,
                model,
                ModelOptimizer(model, cfg.fm.lr, cfg.fm.embedding_lr),
            )
        assert vertical is not None
        vm_cfg = cfg.vm.for_vertical(vertical)
        variant = variant or vm_cfg.variant
        layout = InputLayout.for_vm(spec, vm_cfg, vertical)
        model = VerticalModel(layout, vm_cfg)
        name = vm_model_name(variant)  # refuses an unknown variant before building anything
        with_adapter = variants.variant(variant).adapter
        adapter = StudentAdapter(vm_cfg.adapter_hidden) if with_adapter else None
        adapter_opt = (
            torch.optim.Adam(adapter.parameters(), lr=vm_cfg.adapter_lr)
            if adapter is not None
            else None
        )
        return Trainee(
            name,
            vertical,
            "vm",
            layout,
            vm_cfg,
            model,
            ModelOptimizer(model, vm_cfg.lr, vm_cfg.embedding_lr),
            adapter,
            adapter_opt,
            variant,
        )

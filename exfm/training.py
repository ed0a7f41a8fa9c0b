"""The streaming trainer: one daily loop for the foundation model and the vertical models.

For a model (and vertical) and a day ds:
1. load the latest snapshot trained before ds (the parent), or initialize a new model;
2. progressive evaluation: the parent predicts ds's rows before it ever trains on them; the
   predictions go to the `evals` dataset (`evals/model=/vertical=/ds=`) and their metrics to the
   snapshot's meta;
3. one pass of training over ds, shuffled within the day (seeded by the day), recording each
   batch's predictions before its update (progressive validation of the new snapshot);
4. the gate (exfm/registry.py): the new snapshot's progressive NE on ds against the previous
   published snapshot's NE on ds; then the snapshot is saved, published or not, with the reason.
A NaN or infinite loss stops the day with an error naming the batch; nothing is saved.

The VM trainer takes the FM's predictions as the input column `fm_logit` (from the DAS store); it
never calls the FM. Variants (vm.variant): baseline (labels only), kd, ah, ah_sa (Algorithm 1 of
EXFM.md: a Student Adapter step on L_sta, then a VM step on L_ah + L_sa with the adapter's
re-computed output under stop-gradient).

Data path: the day's Arrow table becomes tensors once (exfm/models/inputs.py); batches are index
slices. Everything random is seeded from train.seed and the model, vertical and day, so a day
trained from a snapshot equals the same day of an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from exfm.config import Config
from exfm.data.schema import FeatureSpec
from exfm.errors import TrainingError
from exfm.inference import device_of, eval_mode, model_from_payload, predict, use_threads
from exfm.lake import EVALS, Lake
from exfm.lineage import impressions_name, inputs_metadata
from exfm.metrics import BinaryMetrics, Metrics
from exfm.models.inputs import Batch, batches, to_batch
from exfm.models.layers import flops_per_example
from exfm.progress import progress
from exfm.ranks import Dist
from exfm.registry import Registry, SnapshotMeta, base_of, is_checkpoint_day, publish_decision
from exfm.trainee import Trainee, seed_of

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DayMetrics:
    """A model's metrics on a day's rows: all of them, and each vertical's. Stored in the
    snapshot's meta.json as the overall metrics with a "verticals" mapping (`to_dict`)."""

    overall: Metrics
    verticals: dict[str, Metrics] = dataclasses.field(default_factory=dict)

    @property
    def ne(self) -> float | None:
        return self.overall.ne

    @property
    def rows(self) -> int:
        return self.overall.rows

    def to_dict(self) -> dict[str, Any]:
        verticals = {v: m.to_dict() for v, m in self.verticals.items()}
        return {**self.overall.to_dict(), "verticals": verticals}


@dataclass(frozen=True)
class DayResult:
    """What one model-day produced (small: for logs, stage return values and XCom)."""

    model: str
    vertical: str | None
    ds: str
    rows: int
    parent_ds: str | None
    eval: DayMetrics | None
    train: DayMetrics
    published: bool
    reason: str
    seconds: float
    sha256: str = ""  # the snapshot's content id
    inputs: dict[str, str] = dataclasses.field(default_factory=dict)  # what it was made from

    def summary(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "vertical": self.vertical,
            "ds": self.ds,
            "rows": self.rows,
            "parent_ds": self.parent_ds,
            "eval_ne": self.eval.ne if self.eval else None,
            "train_ne": self.train.ne,
            "published": self.published,
            "reason": self.reason,
            "rows_per_s": round(self.rows / max(self.seconds, 1e-9)),
            "seconds": round(self.seconds, 3),
            "sha256": self.sha256,
            "inputs": dict(self.inputs),
        }


def _metrics(logits: np.ndarray, table: pa.Table, mask: np.ndarray | None = None) -> Metrics:
    m = BinaryMetrics()
    labels = table.column("label").to_numpy()
    true_ctr = (
        table.column("true_ctr").to_numpy(zero_copy_only=False)
        if "true_ctr" in table.column_names
        else None
    )
    if mask is not None:
        logits, labels = logits[mask], labels[mask]
        true_ctr = None if true_ctr is None else true_ctr[mask]
    m.update(logits, labels, true_ctr)
    return m.compute()


def _by_vertical(logits: np.ndarray, table: pa.Table) -> DayMetrics:
    """Overall metrics, and each vertical's."""
    verticals = table.column("vertical")
    return DayMetrics(
        _metrics(logits, table),
        {
            v: _metrics(logits, table, pc.equal(verticals, v).to_numpy(zero_copy_only=False))
            for v in sorted(pc.unique(verticals).to_pylist())
        },
    )


def train_day(
    cfg: Config,
    lake: Lake,
    trainee: Trainee,
    table: pa.Table,
    ds: str,
    dist: Dist | None = None,
    inputs: Mapping[str, str] | None = None,
) -> DayResult | None:
    """Run steps 1-4 of the module docstring for one model (and vertical) on day ds. `inputs`
    names the content ids `table` was read from (exfm/lineage.py); the snapshot records them
    with its parent's, and the progressive evaluations record the parent and the impressions.
    With `dist` (see exfm/distributed.py), every process trains on its shard of the day and
    rank 0 alone evaluates, gates and writes; the other ranks return None."""
    started = time.perf_counter()
    dist = dist or Dist()
    registry = Registry(lake)
    device = device_of(cfg)
    use_threads(cfg)
    if table.num_rows == 0:
        raise TrainingError(f"{trainee.label} ds={ds}: no rows to train on")
    data = to_batch(table, trainee.layout, with_fm_logit=trainee.needs_fm)
    targets = _check_targets(trainee, data, ds) if dist.main else None
    parent = _load(cfg, registry, trainee, data, ds, device)
    base = _base(cfg, trainee, parent, ds) if dist.main else None
    # from here on, memory is no snapshot until this day's is saved
    trainee.snapshot_sha256, trainee.trained_through = None, None
    trainee.ddp = dist.wrap(trainee.model, device)
    eval_metrics = (
        _evaluate(cfg, lake, trainee, parent, data, table, ds, device, inputs or {})
        if dist.main
        else None
    )
    train_logits = _train_pass(cfg, trainee, data, ds, device, dist)
    trainee.ddp = None
    if not dist.main:
        dist.barrier()  # rank 0 is evaluating, gating and writing
        trainee.trained_through = ds
        return None
    train_metrics = _by_vertical(train_logits, table)
    published, reason = _gate(
        cfg, registry, trainee, parent, eval_metrics, train_metrics, data, table, ds
    )
    metrics = {
        "eval": eval_metrics.to_dict() if eval_metrics else None,
        "train": train_metrics.to_dict(),
        "rows": table.num_rows,
        **({"fm_targets": targets} if targets is not None else {}),
    }
    meta = _save(
        cfg,
        registry,
        trainee,
        parent,
        data,
        ds,
        dist,
        inputs or {},
        published,
        reason,
        metrics,
        base,
    )
    trainee.trained_through = ds
    trainee.snapshot_sha256 = meta.sha256
    dist.barrier()
    log.info(
        "%s ds=%s: %d rows, eval NE %s, train NE %s, %s (%s)",
        trainee.label,
        ds,
        table.num_rows,
        _fmt(eval_metrics),
        _fmt(train_metrics),
        "published" if published else "NOT published",
        reason,
    )
    return DayResult(
        trainee.name,
        trainee.vertical,
        ds,
        table.num_rows,
        parent.ds if parent else None,
        eval_metrics,
        train_metrics,
        published,
        reason,
        time.perf_counter() - started,
        meta.sha256,
        meta.inputs,
    )


SATURATED = 0.999  # an FM target at least this close to 1 no longer ranks the rows it covers


def _check_targets(trainee: Trainee, data: Batch, ds: str) -> dict[str, Any] | None:
    """The soft targets the day's FM term fits (`Trainee.fm_targets`, rows with an FM prediction):
    how many, how many fall outside (0, 1) in float32, and the share saturated (>= SATURATED).
    Either beyond vm.saturated_share (any outside) is a warning: label scaling or a degenerate FM
    has flattened what the auxiliary head distils. None for trainees without an FM term."""
    if not trainee.needs_fm or data.fm_logit is None:
        return None
    fm = data.fm_logit if data.fm_mask is None else data.fm_logit[data.fm_mask]
    with torch.no_grad():
        t = trainee.fm_targets(fm)
    rows = int(t.numel())
    outside = int(((t <= 0) | (t >= 1) | ~torch.isfinite(t)).sum())
    share = float((t >= SATURATED).double().mean()) if rows else 0.0
    limit = trainee.model_cfg.saturated_share  # type: ignore[union-attr]
    if outside or share > limit:
        log.warning(
            "%s ds=%s: %d of %d FM targets are outside (0, 1) and %.1f%% are >= %s "
            "(vm.saturated_share %s; variant %s, vm.label_scale %s): the FM term distils "
            "little ranking there",
            trainee.label,
            ds,
            outside,
            rows,
            100 * share,
            SATURATED,
            limit,
            trainee.variant,
            trainee.model_cfg.label_scale,  # type: ignore[union-attr]
        )
    return {"rows": rows, "outside": outside, "saturated_share": round(share, 6)}


def _load(
    cfg: Config,
    registry: Registry,
    trainee: Trainee,
    data: Batch,
    ds: str,
    device: torch.device,
) -> SnapshotMeta | None:
    """Step 1: continue from the newest snapshot before ds (unless the trainee in memory already
    is that one: a range's previous day, the same sha256), or start a new model with its output
    bias at the day's CTR; on `device`."""
    parent = registry.latest(trainee.name, trainee.vertical, before=ds)
    if parent is not None and not _in_memory(trainee, parent):
        fingerprint = FeatureSpec.from_config(cfg.features).fingerprint()
        payload, _ = registry.load(
            trainee.name, trainee.vertical, parent.ds, fingerprint, optimizer=True
        )
        trainee.load(payload)
    elif parent is None:
        if trainee.trained_through is not None:
            raise TrainingError(
                f"{trainee.label} ds={ds}: the model in memory trained through "
                f"{trainee.trained_through}, but ds has no earlier snapshot to continue from; "
                "train the days of a range in order, or ds in a process of its own"
            )
        trainee.model.init_output_bias(_prior_logits(data, len(trainee.layout.verticals)))
    for module in (trainee.model, trainee.adapter):
        if module is not None:
            module.to(device)
    return parent


def _base(
    cfg: Config, trainee: Trainee, parent: SnapshotMeta | None, ds: str
) -> tuple[SnapshotMeta, dict[str, Any]] | None:
    """The parent's weights as training starts from them (a CPU copy), for the registry to store
    the day's weights as a delta over them; None where it would store them whole anyway."""
    policy = cfg.registry
    if parent is None or not policy.deltas or is_checkpoint_day(ds, policy.optimizer_every_days):
        return None
    return parent, base_of(trainee.payload(parent.spec_fingerprint))


def _in_memory(trainee: Trainee, parent: SnapshotMeta) -> bool:
    """Whether the trainee in memory is the parent snapshot, so that loading it is a no-op.
    Ranks other than 0 save nothing: they know the day they trained through, and rank 0's
    snapshot of it is what they hold (the same shards, the same all-reduced steps)."""
    if trainee.snapshot_sha256 is not None:
        return trainee.snapshot_sha256 == parent.sha256
    return trainee.trained_through == parent.ds


def _evaluate(
    cfg: Config,
    lake: Lake,
    trainee: Trainee,
    parent: SnapshotMeta | None,
    data: Batch,
    table: pa.Table,
    ds: str,
    device: torch.device,
    inputs: Mapping[str, str],
) -> dict[str, Any] | None:
    """Step 2: the parent predicts ds before training on it (stored in `evals`). Without a
    parent there is nothing to evaluate, and an evaluation of ds that another history left is
    not this model's: it is removed."""
    if parent is None:
        for vertical in pc.unique(table.column("vertical")).to_pylist():
            values = {"model": trainee.name, "vertical": vertical, "ds": ds}
            if lake.has_partition(EVALS, values):
                lake.delete_partition(EVALS, values)
        return None
    with eval_mode(trainee.model):
        logits = predict(trainee.logits, data, cfg.train.eval_batch_size, device)
    _write_evals(lake, trainee.name, parent, ds, table, logits, inputs)
    return _by_vertical(logits, table)


def _gate(
    cfg: Config,
    registry: Registry,
    trainee: Trainee,
    parent: SnapshotMeta | None,
    eval_metrics: DayMetrics | None,
    train_metrics: DayMetrics,
    data: Batch,
    table: pa.Table,
    ds: str,
) -> tuple[bool, str]:
    """Step 4a: may the new snapshot be published (exfm/registry.py's decision against the
    previous published snapshot's NE on the same rows)?"""
    incumbent = _incumbent_metrics(cfg, registry, trainee, parent, eval_metrics, data, table, ds)
    return publish_decision(train_metrics.overall, incumbent, cfg.publish)


def _save(
    cfg: Config,
    registry: Registry,
    trainee: Trainee,
    parent: SnapshotMeta | None,
    data: Batch,
    ds: str,
    dist: Dist,
    inputs: Mapping[str, str],
    published: bool,
    reason: str,
    metrics: dict[str, Any],
    base: tuple[SnapshotMeta, dict[str, Any]] | None = None,
) -> SnapshotMeta:
    """Step 4b: the snapshot and its meta (config, metrics, lineage, the publish decision);
    `base` (`_base`): the parent's weights, for a delta over them."""
    trainee.model.to("cpu")
    if trainee.adapter is not None:
        trainee.adapter.to("cpu")
    fingerprint = FeatureSpec.from_config(cfg.features).fingerprint()
    meta = SnapshotMeta(
        model=trainee.name,
        vertical=trainee.vertical,
        ds=ds,
        kind=trainee.kind,
        spec_fingerprint=fingerprint,
        parent_ds=parent.ds if parent else None,
        config={
            "model": trainee.model_cfg.model_dump(),
            "train": cfg.train.model_dump(),
            "variant": trainee.variant,
            "processes": dist.world,
        },
        metrics={**metrics, "flops_per_example": _flops(trainee, data)},
        published=published,
        publish_reason=reason,
        inputs={**inputs, **({parent.name: parent.sha256} if parent else {})},
    )
    return registry.save(meta, trainee.payload(fingerprint), cfg.registry, base)


def _flops(trainee: Trainee, data: Batch) -> float:
    """Forward FLOPs per example of what is served (the FM's forward, the VM's serving module):
    counted once per trainee, since they depend on the architecture alone."""
    if trainee.flops is None:
        sample = data.take(slice(0, 64))
        if trainee.kind == "fm":
            trainee.flops = flops_per_example(
                trainee.model, sample.cat, sample.dense, sample.vertical
            )
        else:
            trainee.flops = flops_per_example(
                trainee.model.serving_module(), sample.cat, sample.dense
            )
    return trainee.flops


def _prior_logits(data: Batch, verticals: int) -> torch.Tensor:
    """(V,) log-odds of each vertical's CTR in `data` (smoothed; the global CTR where absent)."""
    count = torch.bincount(data.vertical, minlength=verticals).double()
    clicks = torch.bincount(data.vertical, weights=data.label.double(), minlength=verticals)
    overall = (clicks.sum() + 1) / (count.sum() + 2)
    ctr = (clicks + 10 * overall) / (count + 10)
    return torch.logit(ctr).float()


def _fmt(metrics: DayMetrics | None) -> str:
    ne = metrics.ne if metrics else None
    return "-" if ne is None else f"{ne:.5f}"


def _train_pass(
    cfg: Config,
    trainee: Trainee,
    data: Batch,
    ds: str,
    device: torch.device,
    dist: Dist,
) -> np.ndarray:
    """Step 3, one shuffled pass; returns each row's prediction made before the step that used
    it. Distributed: every rank draws the same permutation and trains on its slice of it
    (`Dist.shard`); the predictions are gathered on every rank (`Dist.gather`)."""
    n = len(data)
    generator = torch.Generator().manual_seed(
        seed_of(cfg.train.seed, trainee.name, trainee.vertical, ds)
    )
    order = dist.shard(torch.randperm(n, generator=generator))
    pre_update = np.empty(n, np.float32)
    trainee.model.train()
    steps = batches(len(order), cfg.train.batch_size, order)
    label = f"train {trainee.label} {ds}" + (f" rank {dist.rank}" if dist.distributed else "")
    with progress(
        total=len(order), desc=label, unit="rows", unit_scale=True, disable=None, leave=False
    ) as bar:
        for i, index in enumerate(steps):
            loss, logit = trainee.step(data.take(index).to(device))
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"{trainee.label} ds={ds}: the loss is {loss.item()} at batch {i + 1} of "
                    f"{len(steps)}; stopping, nothing was saved or published"
                )
            pre_update[index.numpy()] = logit.cpu().numpy()
            bar.update(len(index))
    dist.gather(pre_update, order, device)
    return pre_update


def _incumbent_metrics(
    cfg: Config,
    registry: Registry,
    trainee: Trainee,
    parent: SnapshotMeta | None,
    eval_metrics: DayMetrics | None,
    data: Batch,
    table: pa.Table,
    ds: str,
) -> Metrics | None:
    """The metrics on ds of the newest snapshot published before ds (None when there is none);
    a retrain of ds is compared with it too."""
    incumbent = registry.published_before(trainee.name, trainee.vertical, ds)
    if incumbent is None:
        return None
    if parent is not None and incumbent.ds == parent.ds:
        return eval_metrics.overall if eval_metrics else None
    payload, _ = registry.load(
        trainee.name,
        trainee.vertical,
        incumbent.ds,
        FeatureSpec.from_config(cfg.features).fingerprint(),
    )
    model, _ = model_from_payload(payload)
    device = device_of(cfg)
    model.to(device)
    if trainee.kind == "fm":
        logits = predict(
            lambda b: model(b.cat, b.dense, b.vertical), data, cfg.train.eval_batch_size, device
        )
    else:
        logits = predict(
            lambda b: model(b.cat, b.dense).serving, data, cfg.train.eval_batch_size, device
        )
    return _metrics(logits, table)


def _write_evals(
    lake: Lake,
    model: str,
    parent: SnapshotMeta,
    ds: str,
    table: pa.Table,
    logits: np.ndarray,
    inputs: Mapping[str, str],
) -> None:
    """The progressive predictions of the parent snapshot on ds, one partition per vertical,
    each naming the snapshot and the impressions it scored. Re-evaluating the same snapshot on
    the same rows keeps the partition (and its content id) as it was."""
    cols = {
        "example_id": table.column("example_id"),
        "label": table.column("label"),
        "logit": pa.array(logits, pa.float32()),
        "snapshot_ds": pa.repeat(pa.scalar(parent.ds), table.num_rows),
    }
    if "true_ctr" in table.column_names:
        cols["true_ctr"] = table.column("true_ctr")
    out = pa.table(cols)
    verticals = table.column("vertical")
    for vertical in sorted(pc.unique(verticals).to_pylist()):
        part = out.filter(pc.equal(verticals, vertical))
        scored = {parent.name: parent.sha256}
        rows = impressions_name(ds, vertical)
        if rows in inputs:
            scored[rows] = inputs[rows]
        lake.write_partition(
            EVALS,
            {"model": model, "vertical": vertical, "ds": ds},
            part,
            metadata=inputs_metadata(scored),
            keep_if_same=True,
        )

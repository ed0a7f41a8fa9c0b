"""The machinery the experiments share: arms (one lake each), the streaming loop over days for the
FM, the DAS and the VMs, the collection of progressive evaluations, and the paired bootstrap.
Every step goes through `exfm.stages` (the gate, the lineage checks), as the pipeline does: an
arm's days are checked when they land, and its checks travel with its impressions when another
arm links them.

An *arm* is one configuration of the platform with its own lake under the experiment's workspace.
Inputs that arms share (the day's impressions, an FM's snapshots) are hard-linked from the arm that
produced them, never copied or rewritten: the lake only ever replaces files (write to a staging
name, then rename), so a linked file is never modified behind another arm's back.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from exfm import ids, stages
from exfm.config import Config, apply_overrides, config_from_dict
from exfm.data.schema import FeatureSpec
from exfm.errors import IdentifierError
from exfm.experiments.records import (
    Comparison,
    ExperimentError,
    FMFacts,
    ModelStats,
    Summary,
)
from exfm.lake import IMPRESSIONS, Lake
from exfm.metrics import BinaryMetrics, entropy
from exfm.registry import Registry
from exfm.trainee import build_trainee
from exfm.variants import FM, POOLED

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------ arms


def config_with(
    cfg: Config, overrides: Sequence[str] = (), **sections: Mapping[str, Any]
) -> Config:
    """`cfg` with `section.key=value` overrides and whole-section updates, checked again."""
    raw = apply_overrides(cfg.to_dict(), overrides)
    for name, values in sections.items():
        raw[name] = {**raw.get(name, {}), **values}
    return config_from_dict(raw)


@dataclass
class Arm:
    """One configuration with its own lake at `root/lake`."""

    name: str
    cfg: Config
    root: Path
    seconds: dict[str, float] = field(default_factory=dict)

    @classmethod
    def fresh(cls, name: str, cfg: Config, workspace: Path) -> Arm:
        """An empty arm: whatever an earlier run left in its folder is removed."""
        root = workspace / name
        if root.exists():
            shutil.rmtree(root)
        root.mkdir(parents=True)
        return cls.open(name, cfg, workspace)

    @classmethod
    def open(cls, name: str, cfg: Config, workspace: Path) -> Arm:
        root = workspace / name
        lake = {"root": str(root / "lake"), "catalog": str(root / "catalog.duckdb")}
        arm_cfg = config_with(cfg, lake=lake, checks={"report_dir": ""})
        return cls(name, arm_cfg, root)

    @property
    def lake(self) -> Lake:
        return Lake.from_config(self.cfg.lake)

    def days(self) -> list[str]:
        found = sorted({p["ds"] for p in self.lake.partitions(IMPRESSIONS)})
        if not found:
            raise ExperimentError(f"arm {self.name} has no impressions in {self.root / 'lake'}")
        return found

    def link_from(self, other: Arm, rel: str) -> None:
        """Hard-link `rel` (a folder of the other arm's lake) into this arm's lake."""
        src, dst = other.root / "lake" / rel, self.root / "lake" / rel
        if not src.exists():
            raise ExperimentError(f"arm {other.name} has no {rel} to share (looked in {src})")
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(src, dst, copy_function=_link)

    def share_from(self, other: Arm, *rels: str) -> None:
        """`link_from` each of `rels` (the arm's data: "impressions", "checks" (the gate's
        verdicts on them, same content), "registry/fm" (its FM's snapshots))."""
        for rel in rels:
            self.link_from(other, rel)

    def timed(self, what: str, seconds: float) -> None:
        self.seconds[what] = self.seconds.get(what, 0.0) + seconds


def _link(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another filesystem: copy
        shutil.copy2(src, dst)


# ------------------------------------------------------------------------------ streaming steps


def land_world(arm: Arm) -> list[str]:
    """Simulate the arm's world into its lake and check every day (the gate every training and
    scoring stage passes)."""
    return _land(arm, stages.land_world)


def land_ingest(arm: Arm) -> list[str]:
    """Ingest the arm's sources into its lake and check every day."""
    return _land(arm, stages.ingest)


def _land(arm: Arm, stage: Callable[[Config], Any]) -> list[str]:
    started = time.perf_counter()
    stage(arm.cfg)
    arm.timed("land", time.perf_counter() - started)
    days = arm.days()
    check(arm, days)
    return days


def check(arm: Arm, days: Sequence[str]) -> None:
    started = time.perf_counter()
    with stages.Warm() as warm:  # the drift pages once, at the end
        for ds in days:
            stages.check(arm.cfg, ds, warm)
    arm.timed("checks", time.perf_counter() - started)


def train_fm(arm: Arm, days: Sequence[str]) -> list[dict[str, Any]]:
    """The FM over `days` in order (exfm.stages.train_fm; snapshots in the arm's registry)."""
    out = []
    warm = stages.Warm()
    for ds in days:
        result = stages.train_fm(arm.cfg, ds, warm=warm)
        assert result is not None
        arm.timed("fm_train", result["seconds"])
        out.append(result)
    log.info(
        "%s: fm trained on %d days, %d rows, in %.1f s",
        arm.name,
        len(out),
        sum(r["rows"] for r in out),
        sum(r["seconds"] for r in out),
    )
    return out


def backfill(
    arm: Arm,
    days: Sequence[str],
    delay: int,
    choose: Callable[[str, list[str]], str | None] | None = None,
) -> dict[str, str]:
    """Score each day with the FM that was live for it at `delay`, or with the one `choose`
    picks (ds, the days of the published FM snapshots -> the FM's day, or None); returns ds ->
    fm_version for the days that had one (the first days of a delay have none and are left
    out)."""
    from exfm.das import NoLiveFM, fm_version

    cfg = arm.cfg.model_copy(
        update={"das": arm.cfg.das.model_copy(update={"fm_delay_days": delay})}
    )
    published = {m.ds: m for m in Registry(arm.lake).history(FM, None) if m.published}
    versions = {}
    with stages.Warm() as warm:
        for ds in days:
            started = time.perf_counter()
            version = None
            if choose is not None:
                day = choose(ds, sorted(published))
                if day is None:
                    continue
                version = fm_version(published[day])
            try:
                result = stages.backfill_das(cfg, ds, fm_version=version, warm=warm)
            except NoLiveFM:
                continue
            arm.timed("das", time.perf_counter() - started)
            versions[ds] = result["fm_version"]
    if days and not versions:
        reasons = [f"{m.ds}: {m.publish_reason}" for m in Registry(arm.lake).history(FM, None)]
        raise ExperimentError(
            f"arm {arm.name}: no published FM could score any of {days[0]}..{days[-1]} at "
            f"delay {delay}; FM snapshots: {reasons or 'none'}"
        )
    log.info("%s: the DAS scored %d days at FM delay %d", arm.name, len(versions), delay)
    return versions


def train_vm(
    arm: Arm,
    vertical: str,
    variant: str,
    days: Sequence[str],
    versions: Mapping[str, str] | None = None,
    name: str | None = None,
    cfg: Config | None = None,
) -> list[dict[str, Any]]:
    """One VM over `days` in order, distilled from the FM version `versions[ds]` of each day.
    `name` stores it under another model name (grid points of one variant side by side)."""
    # `cfg` may carry other hyperparameters (a grid point); the lake is always the arm's
    cfg = (cfg or arm.cfg).model_copy(update={"lake": arm.cfg.lake, "checks": arm.cfg.checks})
    if not days:
        raise ExperimentError(f"arm {arm.name}: no days to train {variant}/{vertical} on")
    needs_fm = variant != "baseline"
    out = []
    warm = stages.Warm()
    for ds in days:
        version = None
        if needs_fm:
            if versions is None or ds not in versions:
                raise ExperimentError(f"no FM predictions for {ds} in arm {arm.name}")
            version = versions[ds]
        result = stages.train_vm(cfg, ds, vertical, variant, version, model=name, warm=warm)
        arm.timed(f"vm:{result['model']}", result["seconds"])
        out.append(result)
    log.info(
        "%s: %s/%s trained on %d days, %d rows, in %.1f s",
        arm.name,
        out[0]["model"],
        vertical,
        len(out),
        sum(r["rows"] for r in out),
        sum(r["seconds"] for r in out),
    )
    return out


def fm_facts(arm: Arm) -> FMFacts:
    """Size and cost of the arm's FM: parameters and forward FLOPs per example (measured)."""
    registry = Registry(arm.lake)
    history = registry.history(FM, None)
    if not history:
        raise ExperimentError(f"arm {arm.name} has no FM snapshot")
    last = history[-1]
    spec = FeatureSpec.from_config(arm.cfg.features)
    trainee = build_trainee(arm.cfg, spec, "fm")
    return FMFacts(
        params=sum(p.numel() for p in trainee.model.parameters()),
        flops_per_example=float(last.metrics.get("flops_per_example") or 0.0),
        config=arm.cfg.fm.model_dump(),
    )


def vm_flops(arm: Arm, model: str, vertical: str) -> float:
    """Forward FLOPs per example of a VM's serving module (measured when it was trained)."""
    history = Registry(arm.lake).history(model, vertical)
    if not history:
        raise ExperimentError(f"arm {arm.name} has no {model}/{vertical} snapshot")
    return float(history[-1].metrics.get("flops_per_example") or 0.0)


# ----------------------------------------------------------------------------------- collection

# model label -> vertical -> unit (a day, or (seed, day)) -> metrics of that model on those rows
Collected = dict[str, dict[str, dict[str, BinaryMetrics]]]


def collect(
    arm: Arm,
    models: Mapping[str, str],
    days: Iterable[str] | None = None,
    into: Collected | None = None,
    unit_prefix: str = "",
) -> Collected:
    """Progressive evaluations of the arm's `models` (label -> registry model name) per vertical
    and day, read from the `evals` dataset (each checked against the lake's content, as
    `exfm evaluate` does). `unit_prefix` tells apart arms pooled together (the seeds of a
    ladder)."""
    from exfm.evaluation import read_evals
    from exfm.lake import EVALS

    wanted = set(days) if days is not None else None
    out: Collected = into if into is not None else {}
    lake = arm.lake
    for label, model in models.items():
        parts = lake.partitions(EVALS, model=[model])
        if not parts:
            raise ExperimentError(f"arm {arm.name} has no progressive evaluations of {model}")
        for p in parts:
            if wanted is not None and p["ds"] not in wanted:
                continue
            part = read_evals(lake, p)
            if part.problem is not None:
                raise ExperimentError(f"arm {arm.name}: {part.problem}")
            table = part.table
            m = BinaryMetrics()
            true_ctr = (
                table.column("true_ctr").to_numpy() if "true_ctr" in table.column_names else None
            )
            m.update(table.column("logit").to_numpy(), table.column("label").to_numpy(), true_ctr)
            out.setdefault(label, {}).setdefault(p["vertical"], {})[unit_prefix + p["ds"]] = m
    return out


def add_metrics(
    out: Collected,
    label: str,
    vertical: str,
    unit: str,
    logits: np.ndarray,
    labels: np.ndarray,
    true_ctr: np.ndarray | None = None,
) -> None:
    m = BinaryMetrics()
    m.update(logits, labels, true_ctr)
    out.setdefault(label, {}).setdefault(vertical, {})[unit] = m


def common_units(data: Collected, labels: Sequence[str], vertical: str) -> list[str]:
    sets = [set(data.get(label, {}).get(vertical, {})) for label in labels]
    return sorted(set.intersection(*sets)) if sets else []


# ------------------------------------------------------------------------------------ summaries


@dataclass(frozen=True)
class Stats:
    """Bootstrap settings: resamples, confidence level, seed."""

    resamples: int
    confidence: float
    seed: int = 0


def summarize(
    data: Collected,
    labels: Sequence[str],
    stats: Stats,
    baseline: str | None = None,
    fm: str | None = None,
    verticals: Sequence[str] | None = None,
) -> Summary:
    """Per vertical and over every vertical (POOLED): each model's pooled NE, AUC, calibration and
    rows on the units (days) that every model has, with the oracle's NE where the data has a true
    CTR; relative NE gains over `baseline` and transfer ratios against `fm`; confidence intervals
    of NE, gain and transfer ratio from a paired bootstrap (every model of a resample is scored on
    the same units) that resamples days, each with all its units (`cluster_weights`)."""
    verticals = list(verticals or sorted({v for label in labels for v in data.get(label, {})}))
    rng = np.random.default_rng(stats.seed)
    per_vertical = {v: common_units(data, labels, v) for v in verticals}
    units = sorted(set.intersection(*[set(u) for u in per_vertical.values()]))
    if not units:
        raise ExperimentError(f"no day on which every model of {list(labels)} was evaluated")
    weights = cluster_weights(units, rng, stats.resamples)
    out = Summary(units=units, verticals={})
    for vertical in [*verticals, POOLED]:
        chosen = verticals if vertical == POOLED else [vertical]
        models: dict[str, ModelStats] = {}
        sums: dict[str, np.ndarray] = {}
        for label in labels:
            pooled = BinaryMetrics()
            per_unit = np.zeros((len(units), 3))
            for i, unit in enumerate(units):
                for v in chosen:
                    m = data[label][v][unit]
                    pooled = pooled.merge(m)
                    per_unit[i] += (m.rows, m.positives, m.logloss_sum)
            c = pooled.compute()
            sums[label] = _boot_ne(per_unit, weights)
            models[label] = ModelStats(
                rows=c.rows,
                ne=c.ne,
                ctr=c.ctr,
                auc=c.auc,
                calibration=c.calibration,
                ne_ci=_ci(sums[label], stats.confidence),
            )
            if c.oracle_ne is not None:
                models.setdefault("oracle", ModelStats(rows=c.rows, ne=c.oracle_ne))
        if baseline is not None:
            b = sums[baseline]
            gains = {label: (b - sums[label]) / b * 100 for label in labels}
            for label in labels:
                m = models[label]
                ne, ne_b = m.ne, models[baseline].ne
                m.ne_gain_pct = (ne_b - ne) / ne_b * 100 if ne and ne_b else None
                m.ne_gain_pct_ci = _ci(gains[label], stats.confidence)
            for label in labels:
                if fm is not None and label not in (fm, baseline):
                    # defined only where the FM has a gain to transfer
                    m, fm_gain = models[label], gains[fm]
                    ok = fm_gain > 1e-9
                    ratio = np.where(ok, gains[label] / np.where(ok, fm_gain, 1.0), np.nan)
                    g_fm = models[fm].ne_gain_pct
                    has_gain = bool(g_fm and g_fm > 0 and m.ne_gain_pct is not None)
                    m.transfer_ratio = m.ne_gain_pct / g_fm if has_gain else None
                    m.transfer_ratio_ci = _ci(ratio, stats.confidence) if has_gain else None
        out.verticals[vertical] = models
    return out


def day_of(unit: str) -> str:
    """The day of a unit: a unit is a day, or a prefix (an arm, a seed) and a day."""
    return unit[-10:]


def cluster_weights(units: Sequence[str], rng: np.random.Generator, resamples: int) -> np.ndarray:
    """(R, U) bootstrap counts of each unit that resample the units' days, every unit of a day
    together (the seeds of one day share its rows and its world: they are not independent
    draws). With one unit a day this is the plain bootstrap over units."""
    for unit in units:
        try:
            ids.ds(day_of(unit))
        except IdentifierError:
            raise ExperimentError(f"unit {unit!r} does not end with its day (YYYY-MM-DD)") from None
    days = sorted({day_of(u) for u in units})
    at = {d: i for i, d in enumerate(days)}
    counts = rng.multinomial(len(days), np.full(len(days), 1 / len(days)), resamples)
    return counts[:, [at[day_of(u)] for u in units]]


def _boot_ne(per_unit: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(R,) NE of each resample from per-unit (rows, positives, logloss sum) and (R, U) counts."""
    rows, pos, loss = (weights @ per_unit[:, k] for k in range(3))
    ctr = pos / np.maximum(rows, 1)
    ent = np.array([entropy(float(p)) if 0 < p < 1 else np.nan for p in ctr])
    return loss / np.maximum(rows, 1) / ent


def _ci(samples: np.ndarray, confidence: float) -> list[float] | None:
    finite = samples[np.isfinite(samples)]
    if len(finite) < 2:
        return None
    tail = (1 - confidence) / 2 * 100
    lo, hi = np.percentile(finite, [tail, 100 - tail])
    return [float(lo), float(hi)]


def per_day(data: Collected, labels: Sequence[str], units: Sequence[str]) -> dict[str, list]:
    """NE of each model on each unit, pooled over verticals (for the NE-by-day plots)."""
    out: dict[str, list] = {}
    for label in labels:
        series = []
        for unit in units:
            pooled = BinaryMetrics()
            for by_unit in data[label].values():
                if unit in by_unit:
                    pooled = pooled.merge(by_unit[unit])
            series.append(pooled.compute().ne)
        out[label] = series
    return out


# -------------------------------------------------------------------------------------- outputs


def verdict(ci: Sequence[float] | None) -> str:
    """What a gain's confidence interval says: better, worse, or not distinguishable."""
    if ci is None:
        return "undetermined"
    if ci[0] > 0:
        return "holds"
    if ci[1] < 0:
        return "reversed"
    return "not significant"


def paired(data: Collected, model: str, reference: str, stats: Stats) -> Comparison:
    """Relative NE gain of `model` over `reference` pooled over every vertical, with its paired
    bootstrap interval and verdict."""
    s = summarize(data, [reference, model], stats, baseline=reference)
    m = s.of(model)
    return Comparison(
        model=model,
        reference=reference,
        gain_pct=m.ne_gain_pct,
        gain_pct_ci=m.ne_gain_pct_ci,
        verdict=verdict(m.ne_gain_pct_ci),
        per_vertical={v: s.of(model, v).ne_gain_pct for v in s.verticals if v != POOLED},
    )

"""The experiments of the ExFM results, in the order they depend on each other:

    tune -> ladder -> freshness, scaling, amortization;  tune -> history, obd, robustness;
    all of them -> results

Each writes `<reports>/<name>.json` (reports = experiment.reports_dir, or its `quick/` folder with
--quick) and keeps its lakes under `<experiment.dir>/<full|quick>/`. Every figure is measured in
the run that writes it; nothing is carried over from elsewhere.

- tune: the distillation hyperparameters (w, alpha, the auxiliary heads' width, then the SA
  weight), chosen one axis at a time from the neutral point (TUNE_START) on a family of tuning
  worlds (experiment.tune_worlds: other positive rates, drift and churn, numbers of verticals,
  FM delays; seeds world.seed + tune_world_seed_offset + i, none of them a world another
  experiment reports) by the worst world's relative NE gain over that world's baseline VM; a
  weight or scale whose best value is at an end of its grid is extended past it
  (experiment.grid_extend). Then frozen for every other experiment and dataset.
- ladder: baseline VM, vanilla KD, AH, AH with the second head on the raw FM prediction (ah2, the
  adapter's control), AH + SA, the FM itself and the oracle (true_ctr), on the default world.
- freshness: the DAS scores with FM delays experiment.delays, and with the FM refreshed every k
  days of experiment.cadences (delay 0); FM NE, and AH, ah2 and AH + SA VMs trained from the same
  first day (the first day the largest delay can score) on the same days.
- scaling: FMs of experiment.fm_sizes (the default size is the ladder's own); the FM's NE and the
  VM's (vm.variant) gain over the ladder's baseline VM on the same rows, vs FLOPs per example.
- history: FMs that start experiment.history.days_before days before the VMs (two sizes), each
  teaching a VM on the same last days of one world: the VM's gain against the FM's own gain
  (does the VM gain grow with the FM's quality?).
- amortization: N = 1..experiment.max_vms VMs fed by one FM through the DAS, against
  co-distillation, from the ladder's measured row counts, FLOPs and seconds.
- robustness: the frozen method on a grid of world shapes (experiment.robustness: base CTR, drift,
  verticals, FM delay; one axis at a time around a center, or every combination): per cell the
  gain of KD, AH and AH + SA over the baseline VM with intervals; reversed cells are listed.
- obd: the ladder on the Open Bandit sample (experiment.obd_params, campaigns as verticals) over
  experiment.obd_seeds training seeds, with the tuned hyperparameters.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from exfm.config import Config, load_config
from exfm.config_schema import WorldConfig, WorldShapeConfig
from exfm.experiments import records, worlds
from exfm.experiments.records import (
    SCHEMA,
    AmortizationResult,
    AmortizationRow,
    CellGain,
    Comparison,
    DelayRun,
    ExperimentError,
    FreshnessResult,
    FreshnessRow,
    HistoryResult,
    HistoryRow,
    LadderFM,
    LadderResult,
    ModelStats,
    ObdResult,
    RobustnessCell,
    RobustnessResult,
    RunCost,
    ScalingResult,
    ScalingRow,
    SeedStats,
    SizeRun,
    Trial,
    TuneResult,
    TuneWorld,
)
from exfm.experiments.runner import (
    Arm,
    Collected,
    Stats,
    add_metrics,
    backfill,
    collect,
    config_with,
    fm_facts,
    land_ingest,
    land_world,
    paired,
    per_day,
    summarize,
    train_fm,
    train_vm,
    verdict,
    vm_flops,
)
from exfm.models.layers import TRAINING_PASSES
from exfm.progress import progress
from exfm.variants import NAMES, vm_model_name

log = logging.getLogger(__name__)

LADDER = NAMES
FRESHNESS = ("ah", "ah2", "ah_sa")
TUNED_KEYS = ("distill_weight", "label_scale", "aux_hidden", "sa_weight")
# the axes tune extends past an end of their grid: weights and scales (aux_hidden is a width)
SCALE_AXES = ("distill_weight", "label_scale", "sa_weight")


@dataclasses.dataclass(frozen=True)
class Context:
    """What every experiment reads: the base config, the mode, and where things go."""

    cfg: Config  # the params file as loaded (with --set), before the mode's overrides
    quick: bool

    @property
    def mode(self) -> str:
        return "quick" if self.quick else "full"

    @property
    def workspace(self) -> Path:
        return Path(self.cfg.experiment.dir) / self.mode

    @property
    def reports(self) -> Path:
        base = Path(self.cfg.experiment.reports_dir)
        return base / "quick" if self.quick else base

    @property
    def world_cfg(self) -> Config:
        """The default world and models, with the quick mode's overrides."""
        e = self.cfg.experiment
        return config_with(self.cfg, e.quick if self.quick else e.overrides)

    @property
    def stats(self) -> Stats:
        e = self.cfg.experiment
        return Stats(e.quick_bootstrap if self.quick else e.bootstrap, e.confidence)

    def out(self, name: str) -> Path:
        return self.reports / f"{name}.json"

    def tuned_cfg(self, cfg: Config, needed_by: str) -> Config:
        """`cfg` with the hyperparameters chosen by `tune` (frozen from then on)."""
        chosen = self.load("tune", needed_by).chosen
        return config_with(cfg, vm={k: chosen[k] for k in TUNED_KEYS})

    def load(self, name: str, needed_by: str) -> Any:
        """The typed record another experiment wrote (exfm/experiments/records.py)."""
        return records.load(self.out(name), needed_by)

    def save(self, record: records.Record) -> Path:
        return records.save(self.out(record.experiment), record)

    def header(self, name: str, started: float, world: str) -> dict[str, Any]:
        """The Record fields every experiment's record starts with (`world`: `world_label`)."""
        return {
            "experiment": name,
            "mode": self.mode,
            "seconds": round(time.perf_counter() - started, 1),
            "command": f"exfm experiment {name}{' --quick' if self.quick else ''}",
            "schema": SCHEMA,
            "world": world,
        }

    def family_label(self, worlds: str, overrides: Sequence[str]) -> str:
        """The data of an experiment over several world shapes: the worlds, then the overrides of
        this mode and of the experiment."""
        e = self.cfg.experiment
        settings = [*(e.quick if self.quick else e.overrides), *overrides]
        return worlds + (f"; {', '.join(settings)}" if settings else "")

    def world_label(self, cfg: Config) -> str:
        """The simulated world `cfg` describes, for a table's title: its seed, the overrides of
        this mode, and the world settings that differ from the default world (from --set or a
        params file) that no override names."""
        e = self.cfg.experiment
        named = list(e.quick if self.quick else e.overrides)
        default, own = WorldConfig().model_dump(), cfg.world.model_dump()
        keys = {o.split("=", 1)[0].strip() for o in named}
        changed = [
            f"world.{k}={'(changed)' if isinstance(own[k], dict | list) else own[k]}"
            for k in sorted(own)
            if k != "seed" and own[k] != default[k] and f"world.{k}" not in keys
        ]
        settings = named + changed
        return f"world seed {cfg.world.seed}" + (
            f"; {', '.join(settings)}" if settings else "; the default world"
        )


def _progress(total: int, desc: str) -> tqdm:
    return progress(total=total, desc=desc, unit="runs", disable=None)


# ------------------------------------------------------------------------------------------ tune


# the point the one-axis-at-a-time search starts from: the method with every knob neutral and the
# library's auxiliary head (not params.yaml's vm values, which are set to what tune chose: tune
# does not depend on them); beta (vm.grad_scale) stays 1: only w x beta reaches the VM
TUNE_START: dict[str, Any] = {
    "distill_weight": 1.0,
    "label_scale": 1.0,
    "aux_hidden": 16,
    "sa_weight": 1.0,
}
TUNE_CRITERION = (
    "the worst tuning world's relative NE gain over its baseline VM (pooled over the world's "
    "verticals and days; higher is better); ties: the mean over the worlds"
)


@dataclasses.dataclass
class _TuneWorld:
    arm: Arm
    record: TuneWorld
    versions: dict[str, str]
    data: Collected


def _tune_world(ctx: Context, i: int, shape: WorldShapeConfig) -> _TuneWorld:
    """Tuning world i: landed, checked, its FM trained and its days scored; the baseline VM."""
    e = ctx.cfg.experiment
    base = ctx.world_cfg
    size = () if ctx.quick else e.tune_overrides
    days = min(e.tune_days, base.world.days)
    cfg = worlds.shaped(
        config_with(base, size, world={"days": days}),
        shape,
        seed=base.world.seed + e.tune_world_seed_offset + i,
    )
    arm = Arm.fresh(f"tune_w{i}", cfg, ctx.workspace)
    all_days = land_world(arm)
    train_fm(arm, all_days)
    versions = backfill(arm, all_days[1:], cfg.das.fm_delay_days)
    vm_days = sorted(versions)
    for vertical in cfg.features.verticals:
        train_vm(arm, vertical, "baseline", vm_days, versions)
    data = collect(arm, {"baseline": "vm_baseline", "fm": "fm"}, vm_days)
    s = summarize(data, ["baseline", "fm"], ctx.stats, baseline="baseline")
    record = TuneWorld(
        name=f"w{i}",
        shape=worlds.label(shape),
        seed=cfg.world.seed,
        days=all_days,
        vm_days=vm_days,
        ctr=s.of("baseline").ctr,
        baseline_ne=s.of("baseline").ne,
        fm_gain_pct=s.of("fm").ne_gain_pct,
    )
    return _TuneWorld(arm, record, versions, data)


def extend_axis(values: Sequence[float], best: float) -> float | None:
    """The value past the end of `values` (increasing) that `best` sits at, on the grid's own
    ratio there (4 after 1, 2; 0.25 before 0.5, 1); None when `best` is inside or there is one
    value."""
    if len(values) < 2:
        return None
    if best == values[-1]:
        return values[-1] * values[-1] / values[-2]
    if best == values[0]:
        return values[0] * values[0] / values[1]
    return None


def tune(ctx: Context) -> Path:
    started = time.perf_counter()
    e = ctx.cfg.experiment
    shapes = list(e.tune_worlds)[: e.quick_tune_worlds if ctx.quick else None]
    family = [_tune_world(ctx, i, shape) for i, shape in enumerate(shapes)]
    grid = {
        k: list(getattr(e.grid, k))[: e.quick_grid_values if ctx.quick else None]
        for k in TUNED_KEYS
    }
    extend = 0 if ctx.quick else e.grid_extend
    current = dict(TUNE_START)
    tried: dict[tuple, Trial] = {}
    bar = _progress(sum(len(v) for v in grid.values()), "tune")

    def score(variant: str, values: dict[str, Any]) -> Trial:
        key = (variant, *[values[k] for k in TUNED_KEYS])
        if key in tried:
            return tried[key]
        name = f"vm_{variant}_t{len(tried)}"
        gains: dict[str, float | None] = {}
        for w in family:
            point_cfg = config_with(w.arm.cfg, vm=values)
            for vertical in w.arm.cfg.features.verticals:
                train_vm(w.arm, vertical, variant, w.record.vm_days, w.versions, name, point_cfg)
            collect(w.arm, {name: name}, w.record.vm_days, w.data)
            s = summarize(w.data, ["baseline", name], ctx.stats, baseline="baseline")
            gains[w.record.name] = s.of(name).ne_gain_pct
        known = [g for g in gains.values() if g is not None]
        full = len(known) == len(gains)
        tried[key] = Trial(
            variant=variant,
            **values,
            gains_pct=gains,
            worst_gain_pct=min(known) if full else None,
            mean_gain_pct=sum(known) / len(known) if full else None,
        )
        return tried[key]

    def rank(t: Trial) -> tuple[float, float]:
        return (t.worst_gain_pct, t.mean_gain_pct)  # type: ignore[return-value]

    extended: dict[str, list[Any]] = {}
    for axis in TUNED_KEYS:
        variant = "ah_sa" if axis == "sa_weight" else "ah"
        values = list(grid[axis])
        scored = {}
        for value in values:
            scored[value] = score(variant, {**current, axis: value})
            bar.update()
        for _ in range(extend + 1):
            valid = {v: t for v, t in scored.items() if t.worst_gain_pct is not None}
            if not valid:
                raise ExperimentError(
                    f"tune: no value of {axis} gave a gain on every tuning world (no clicks?)"
                )
            best = max(valid, key=lambda v: rank(valid[v]))
            nxt = extend_axis(values, best) if axis in SCALE_AXES else None
            if nxt is None or len(extended.get(axis, [])) >= extend:
                break
            extended.setdefault(axis, []).append(nxt)
            values = sorted([*values, nxt])
            bar.total += 1
            scored[nxt] = score(variant, {**current, axis: nxt})
            bar.update()
        grid[axis] = values
        current[axis] = best
    bar.close()
    at_edge = [k for k in SCALE_AXES if extend_axis(grid[k], current[k]) is not None]
    for axis in at_edge:
        log.warning(
            "tune: %s = %g is at an end of the values tried %s: widen experiment.grid.%s",
            axis,
            current[axis],
            grid[axis],
            axis,
        )
    label = ctx.family_label(
        f"{len(family)} tuning worlds (seeds {', '.join(str(w.record.seed) for w in family)}, "
        f"{len(family[0].record.days)} days each)",
        () if ctx.quick else e.tune_overrides,
    )
    return ctx.save(
        TuneResult(
            **ctx.header("tune", started, label),
            worlds=[w.record for w in family],
            criterion=TUNE_CRITERION,
            order=list(TUNED_KEYS),
            start=dict(TUNE_START),
            grid=grid,
            extended=extended,
            at_edge=at_edge,
            tried=list(tried.values()),
            chosen=current,
        )
    )


# ---------------------------------------------------------------------------------------- ladder


def ladder(ctx: Context) -> Path:
    started = time.perf_counter()
    cfg = ctx.tuned_cfg(ctx.world_cfg, "ladder")
    arm = Arm.fresh("world", cfg, ctx.workspace)
    days = land_world(arm)
    fm_days = train_fm(arm, days)
    versions = backfill(arm, days[1:], cfg.das.fm_delay_days)
    vm_days = sorted(versions)
    verticals = list(cfg.features.verticals)
    runs: dict[str, dict[str, list]] = {}
    bar = _progress(len(LADDER) * len(verticals), "ladder VMs")
    for variant in LADDER:
        for vertical in verticals:
            runs.setdefault(variant, {})[vertical] = train_vm(
                arm, vertical, variant, vm_days, versions
            )
            bar.update()
    bar.close()
    labels = {"fm": "fm", **{v: vm_model_name(v) for v in LADDER}}
    data = collect(arm, labels, days=vm_days)
    summary = summarize(data, list(labels), ctx.stats, baseline="baseline", fm="fm")
    facts = fm_facts(arm)
    return ctx.save(
        LadderResult(
            **ctx.header("ladder", started, ctx.world_label(cfg)),
            comparisons=_comparisons(data, ctx),
            days=days,
            vm_days=vm_days,
            hyperparameters={k: getattr(cfg.vm, k) for k in TUNED_KEYS},
            distill_weight_total=_total_weights(cfg),
            summary=summary,
            ne_by_day=per_day(data, list(labels), summary.units),
            fm=LadderFM(**vars(facts), rows=sum(r["rows"] for r in fm_days)),
            vm_flops_per_example=vm_flops(arm, "vm_baseline", verticals[0]),
            costs=_costs(runs),
            timings_s={k: round(v, 2) for k, v in arm.seconds.items()},
        )
    )


COMPARISONS = (
    ("fm", "baseline"),
    ("kd", "baseline"),
    ("ah", "baseline"),
    ("ah_sa", "baseline"),
    ("ah", "kd"),
    ("ah2", "ah"),
    ("ah_sa", "ah"),
    ("ah_sa", "ah2"),
)


def _comparisons(data: Collected, ctx: Context) -> list[Comparison]:
    """The ladder's claims as paired gains: each rung against the one below it."""
    return [paired(data, m, r, ctx.stats) for m, r in COMPARISONS]


def _total_weights(cfg: Config) -> dict[str, float]:
    """Total weight of the distillation terms of each variant (reported, not equalized: ah2 and
    ah_sa carry the same total, ah and kd the first head's only)."""
    w, sa = cfg.vm.distill_weight, cfg.vm.sa_weight
    return {"baseline": 0.0, "kd": w, "ah": w, "ah2": w + sa, "ah_sa": w + sa}


def _costs(runs: dict[str, dict[str, list]]) -> dict[str, dict[str, RunCost]]:
    """Measured rows and seconds of each VM (variant -> vertical), for the amortization."""
    return {
        variant: {
            vertical: RunCost(
                rows=sum(r["rows"] for r in results),
                seconds=round(sum(r["seconds"] for r in results), 3),
            )
            for vertical, results in by_vertical.items()
        }
        for variant, by_vertical in runs.items()
    }


# ------------------------------------------------------------------------------------- freshness


def freshness(ctx: Context) -> Path:
    started = time.perf_counter()
    cfg = ctx.tuned_cfg(ctx.world_cfg, "freshness")
    world = Arm.open("world", cfg, ctx.workspace)
    days = world.days()
    delays = sorted(set(ctx.cfg.experiment.delays))
    first = max(delays) + 1  # the first day every delay can score
    if first + 1 >= len(days):
        raise ExperimentError(
            f"the freshness gap needs more than {first + 1} days for delays {delays}; "
            f"the world has {len(days)}"
        )
    vm_days = days[first:]
    verticals = list(cfg.features.verticals)
    data: Collected = {}
    arms = len(delays) + len(ctx.cfg.experiment.cadences)
    bar = _progress(arms * (1 + len(FRESHNESS) * len(verticals)), "freshness")
    versions_of: dict[int, dict[str, str]] = {}
    for delay in delays:
        arm = Arm.fresh(f"fresh_d{delay}", cfg, ctx.workspace)
        arm.share_from(world, "impressions", "checks", "registry/fm")
        versions = backfill(arm, vm_days, delay)
        missing = sorted(set(vm_days) - set(versions))
        if missing:
            raise ExperimentError(f"delay {delay}: no live FM for {missing}")
        bar.update()
        _fm_scores(arm, versions, f"fm_d{delay}", data)
        for variant in FRESHNESS:
            for vertical in verticals:
                train_vm(arm, vertical, variant, vm_days, versions)
                bar.update()
        collect(arm, {f"{v}_d{delay}": vm_model_name(v) for v in FRESHNESS}, vm_days[1:], data)
        versions_of[delay] = versions
    # the refresh cadence: the FM trains every day, the DAS scores with the one refreshed every
    # k days (delay 0); cadence 1 is the delay-0 run above
    cadences = sorted(set(ctx.cfg.experiment.cadences))
    for k in cadences:
        if k == 1 and 0 in delays:
            continue
        arm = Arm.fresh(f"fresh_c{k}", cfg, ctx.workspace)
        arm.share_from(world, "impressions", "checks", "registry/fm")
        versions = backfill(arm, vm_days, 0, choose=refreshed_every(days, k))
        _fm_scores(arm, versions, f"fm_c{k}", data)
        for variant in FRESHNESS:
            for vertical in verticals:
                train_vm(arm, vertical, variant, vm_days, versions)
        collect(arm, {f"{v}_c{k}": vm_model_name(v) for v in FRESHNESS}, vm_days[1:], data)
        versions_of[-k] = versions
    bar.close()
    per_delay: dict[str, DelayRun] = {}
    for delay in delays:
        labels = [f"fm_d{delay}", *[f"{v}_d{delay}" for v in FRESHNESS]]
        per_delay[str(delay)] = DelayRun(
            fm_versions=versions_of[delay],
            vs_ah=summarize(data, labels, ctx.stats, baseline=f"ah_d{delay}"),
            vs_ah2=summarize(data, labels, ctx.stats, baseline=f"ah2_d{delay}"),
        )
    per_cadence: dict[str, DelayRun] = {}
    for k in cadences:
        tag = "d0" if k == 1 and 0 in delays else f"c{k}"
        labels = [f"fm_{tag}", *[f"{v}_{tag}" for v in FRESHNESS]]
        per_cadence[str(k)] = DelayRun(
            fm_versions=versions_of[0 if tag == "d0" else -k],
            vs_ah=summarize(data, labels, ctx.stats, baseline=f"ah_{tag}"),
            vs_ah2=summarize(data, labels, ctx.stats, baseline=f"ah2_{tag}"),
        )
    return ctx.save(
        FreshnessResult(
            **ctx.header("freshness", started, ctx.world_label(cfg)),
            delays=delays,
            vm_days=vm_days,
            eval_days=vm_days[1:],
            distill_weight_total=_total_weights(cfg),
            per_delay=per_delay,
            table=[
                _freshness_row(delay, 1, per_delay[str(delay)], f"d{delay}") for delay in delays
            ],
            cadences=cadences,
            per_cadence=per_cadence,
            cadence_table=[
                _freshness_row(
                    0, k, per_cadence[str(k)], "d0" if k == 1 and 0 in delays else f"c{k}"
                )
                for k in cadences
            ],
        )
    )


def refreshed_every(days: Sequence[str], k: int) -> Callable[[str, list[str]], str | None]:
    """The FM version the DAS scores day ds with when the FM is refreshed every k days (on
    days[0], days[k], ...): the newest published one of a refresh day before ds."""
    refresh = set(days[::k])

    def choose(ds: str, published: list[str]) -> str | None:
        return max((d for d in published if d in refresh and d < ds), default=None)

    return choose


def _fm_scores(arm: Arm, versions: dict[str, str], label: str, data: Collected) -> None:
    """The stale FM's NE on each day: its stored predictions against the day's labels."""
    from exfm.das import training_rows

    for ds, version in versions.items():
        for vertical in arm.cfg.features.verticals:
            table, _ = training_rows(arm.cfg, arm.lake, ds, vertical, version)
            true_ctr = (
                table.column("true_ctr").to_numpy() if "true_ctr" in table.column_names else None
            )
            add_metrics(
                data,
                label,
                vertical,
                ds,
                table.column("fm_logit").to_numpy(),
                table.column("label").to_numpy(),
                true_ctr,
            )


def _freshness_row(delay: int, cadence: int, run: DelayRun, tag: str) -> FreshnessRow:
    fm, ah = run.vs_ah.of(f"fm_{tag}"), run.vs_ah.of(f"ah_{tag}")
    ah2, sa = run.vs_ah.of(f"ah2_{tag}"), run.vs_ah.of(f"ah_sa_{tag}")
    sa_own = run.vs_ah2.of(f"ah_sa_{tag}")
    return FreshnessRow(
        delay=delay,
        cadence=cadence,
        fm_ne=fm.ne,
        fm_ne_ci=fm.ne_ci,
        ah_ne=ah.ne,
        ah2_ne=ah2.ne,
        ah_sa_ne=sa.ne,
        sa_vs_ah_pct=sa.ne_gain_pct,
        sa_vs_ah_pct_ci=sa.ne_gain_pct_ci,
        head_vs_ah_pct=ah2.ne_gain_pct,
        head_vs_ah_pct_ci=ah2.ne_gain_pct_ci,
        sa_own_pct=sa_own.ne_gain_pct,
        sa_own_pct_ci=sa_own.ne_gain_pct_ci,
    )


# --------------------------------------------------------------------------------------- scaling


def scaling(ctx: Context) -> Path:
    started = time.perf_counter()
    cfg = ctx.tuned_cfg(ctx.world_cfg, "scaling")
    world = Arm.open("world", cfg, ctx.workspace)
    vm_days = ctx.load("ladder", "scaling").vm_days
    days = world.days()
    variant = cfg.vm.variant
    verticals = list(cfg.features.verticals)
    data: Collected = {}
    collect(world, {"baseline": "vm_baseline"}, vm_days, data)
    facts: dict[str, tuple[Any, str]] = {}
    bar = _progress(len(cfg.experiment.fm_sizes) * (2 + len(verticals)), "scaling")
    for size, over in cfg.experiment.fm_sizes.items():
        changes = over.model_dump(exclude_none=True)
        size_cfg = config_with(cfg, fm=changes)
        if size_cfg.fm == cfg.fm:  # the ladder's FM: reuse its arm
            arm = world
            bar.update(2 + len(verticals))
        else:
            arm = Arm.fresh(f"fm_{size}", size_cfg, ctx.workspace)
            arm.share_from(world, "impressions", "checks")
            train_fm(arm, days)
            bar.update()
            versions = backfill(arm, days[1:], cfg.das.fm_delay_days)
            bar.update()
            for vertical in verticals:
                train_vm(arm, vertical, variant, vm_days, versions)
                bar.update()
        collect(arm, {f"fm_{size}": "fm", f"vm_{size}": vm_model_name(variant)}, vm_days, data)
        facts[size] = (fm_facts(arm), arm.name)
    bar.close()
    sizes: dict[str, SizeRun] = {}
    table = []
    for size, (fm, arm_name) in facts.items():
        labels = ["baseline", f"fm_{size}", f"vm_{size}"]
        s = summarize(data, labels, ctx.stats, baseline="baseline", fm=f"fm_{size}")
        sizes[size] = SizeRun(fm=fm, arm=arm_name, summary=s)
        fm_stats, vm_stats = s.of(f"fm_{size}"), s.of(f"vm_{size}")
        table.append(
            ScalingRow(
                size=size,
                params=fm.params,
                flops_per_example=fm.flops_per_example,
                fm_ne=fm_stats.ne,
                fm_gain_pct=fm_stats.ne_gain_pct,
                fm_gain_pct_ci=fm_stats.ne_gain_pct_ci,
                vm_ne=vm_stats.ne,
                vm_gain_pct=vm_stats.ne_gain_pct,
                vm_gain_pct_ci=vm_stats.ne_gain_pct_ci,
                transfer_ratio=vm_stats.transfer_ratio,
                baseline_ne=s.of("baseline").ne,
            )
        )
    table.sort(key=lambda r: r.flops_per_example)
    flops = [r.flops_per_example for r in table]
    return ctx.save(
        ScalingResult(
            **ctx.header("scaling", started, ctx.world_label(cfg)),
            variant=variant,
            vm_days=vm_days,
            flops_span=max(flops) / max(min(flops), 1e-9),
            sizes=sizes,
            table=table,
            vm_gain_increases_with_size=all(
                (b.vm_gain_pct or 0) >= (a.vm_gain_pct or 0) for a, b in itertools.pairwise(table)
            ),
        )
    )


# --------------------------------------------------------------------------------------- history


def history(ctx: Context) -> Path:
    """The teacher scaling with data: FMs of experiment.history.sizes that start
    experiment.history.days_before days before the VMs' first day (delay 0: the FM that starts 0
    days before trained on the day before it, as the ladder's), each teaching one VM
    (vm.variant) per vertical on the same last days of one world; the VM's gain over the
    baseline VM against the FM's own gain, on the same rows."""
    started = time.perf_counter()
    e = ctx.cfg.experiment
    h = e.history
    before = list(h.quick_days_before if ctx.quick else h.days_before)
    n_vm = h.quick_vm_days if ctx.quick else h.vm_days
    first = max(before) + 1  # the VMs' first day (index)
    world_cfg = config_with(
        ctx.world_cfg, () if ctx.quick else h.overrides, world={"days": first + n_vm}
    )
    cfg = ctx.tuned_cfg(world_cfg, "history")
    variant = cfg.vm.variant
    if variant == "baseline":
        raise ExperimentError("history: vm.variant is baseline, which has no FM to learn from")
    verticals = list(cfg.features.verticals)
    runs = [(size, b) for size in h.sizes for b in before]
    bar = _progress(1 + len(verticals) + len(runs) * (2 + len(verticals)), "history")
    data_arm = Arm.fresh("hist_data", cfg, ctx.workspace)
    days = land_world(data_arm)
    bar.update()
    vm_days = days[first:]
    for vertical in verticals:
        train_vm(data_arm, vertical, "baseline", vm_days)
        bar.update()
    data = collect(data_arm, {"baseline": "vm_baseline"}, vm_days)
    fm_rows: dict[str, int] = {}
    for size, b in runs:
        tag = f"{size}_h{b}"
        size_cfg = config_with(cfg, fm=e.fm_sizes[size].model_dump(exclude_none=True))
        arm = Arm.fresh(f"hist_{tag}", size_cfg, ctx.workspace)
        arm.share_from(data_arm, "impressions", "checks")
        fm_rows[tag] = sum(r["rows"] for r in train_fm(arm, days[first - 1 - b :]))
        bar.update()
        versions = backfill(arm, vm_days, 0)
        bar.update()
        unscored = [d for d in vm_days if d not in versions]
        if unscored:
            log.warning(
                "history: FM %s (%d days before) has no published snapshot to score %s; its VM "
                "starts on %s and every model is compared on the days all of them have",
                size,
                b,
                unscored,
                min(versions),
            )
        for vertical in verticals:
            train_vm(arm, vertical, variant, sorted(versions), versions)
            bar.update()
        collect(arm, {f"fm_{tag}": "fm", f"vm_{tag}": vm_model_name(variant)}, vm_days, data)
    bar.close()
    table = []
    for size, b in runs:
        tag = f"{size}_h{b}"
        s = summarize(
            data, ["baseline", f"fm_{tag}", f"vm_{tag}"], ctx.stats, "baseline", f"fm_{tag}"
        )
        fm, vm = s.of(f"fm_{tag}"), s.of(f"vm_{tag}")
        table.append(
            HistoryRow(
                size=size,
                days_before=b,
                fm_days=b + 1,
                fm_rows=fm_rows[tag],
                fm_ne=fm.ne,
                fm_gain_pct=fm.ne_gain_pct,
                fm_gain_pct_ci=fm.ne_gain_pct_ci,
                vm_ne=vm.ne,
                vm_gain_pct=vm.ne_gain_pct,
                vm_gain_pct_ci=vm.ne_gain_pct_ci,
                transfer_ratio=vm.transfer_ratio,
                transfer_ratio_ci=vm.transfer_ratio_ci,
            )
        )
    labels = ["baseline", *[f"{m}_{s}_h{b}" for s, b in runs for m in ("fm", "vm")]]
    every = summarize(data, labels, ctx.stats, baseline="baseline")
    pairs = [
        (r.fm_gain_pct, r.vm_gain_pct)
        for r in table
        if r.fm_gain_pct is not None and r.vm_gain_pct is not None
    ]
    by_fm = [vm for _, vm in sorted(pairs)]
    return ctx.save(
        HistoryResult(
            **ctx.header("history", started, ctx.world_label(cfg)),
            variant=variant,
            days=days,
            vm_days=[d for d in vm_days if d in set(every.units)],
            days_before=before,
            sizes={size: e.fm_sizes[size].model_dump(exclude_none=True) for size in h.sizes},
            baseline_ne=every.of("baseline").ne,
            table=table,
            pearson=correlation([f for f, _ in pairs], [v for _, v in pairs]),
            spearman=correlation(_ranks([f for f, _ in pairs]), _ranks([v for _, v in pairs])),
            vm_gain_increases_with_fm_gain=len(pairs) == len(table)
            and all(b >= a for a, b in itertools.pairwise(by_fm)),
        )
    )


def correlation(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Pearson's r of two equally long series; None below 3 points or where one is constant."""
    if len(x) != len(y):
        raise ValueError(f"correlation of {len(x)} and {len(y)} values")
    if len(x) < 3:
        return None
    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    dx, dy = xs - xs.mean(), ys - ys.mean()
    norm = float(np.sqrt((dx * dx).sum() * (dy * dy).sum()))
    return float((dx * dy).sum() / norm) if norm > 0 else None


def _ranks(values: Sequence[float]) -> list[float]:
    """Ranks from 1, ties sharing their mean rank (Pearson's r of ranks: Spearman's rho)."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


# ---------------------------------------------------------------------------------- amortization


def amortization(ctx: Context) -> Path:
    """N VMs on one FM: the DAS scores each example once whatever N is; co-distillation runs the
    teacher forward and backward on every training row of every VM. Costs are the ladder's
    measured rows, FLOPs per example (FlopCounterMode) and seconds."""
    started = time.perf_counter()
    lad: LadderResult = ctx.load("ladder", "amortization")
    verticals = list(ctx.cfg.features.verticals)
    vms = [(v, vert) for v in ("ah_sa", "ah", "ah2", "kd") for vert in verticals]
    vms = vms[: ctx.cfg.experiment.max_vms]
    if len(vms) < ctx.cfg.experiment.max_vms:
        raise ExperimentError(
            f"the ladder trained {len(vms)} distilled VMs; experiment.max_vms is "
            f"{ctx.cfg.experiment.max_vms}"
        )
    timings = lad.timings_s
    fm_flops = lad.fm.flops_per_example
    vm_flops = lad.vm_flops_per_example
    # the same period for both: the days the VMs train on (every example of them is scored once)
    period_rows = sum(lad.costs["baseline"][vert].rows for vert in verticals)
    fm_train_s_per_row = timings["fm_train"] / lad.fm.rows
    das_s = timings["das"]
    rows = []
    for n in range(1, len(vms) + 1):
        chosen = vms[:n]
        vm_rows = sum(lad.costs[v][vert].rows for v, vert in chosen)
        vm_s = sum(lad.costs[v][vert].seconds for v, vert in chosen)
        vm_train_flops = TRAINING_PASSES * vm_flops * vm_rows
        external_flops = (
            TRAINING_PASSES * fm_flops * period_rows + fm_flops * period_rows + vm_train_flops
        )
        co_flops = TRAINING_PASSES * fm_flops * vm_rows + vm_train_flops
        external_s = fm_train_s_per_row * period_rows + das_s + vm_s
        co_s = fm_train_s_per_row * vm_rows + vm_s
        rows.append(
            AmortizationRow(
                n_vms=n,
                vms=[f"{vert}/{v}" for v, vert in chosen],
                vm_training_rows=vm_rows,
                fm_inferences_external=period_rows,
                fm_inferences_co_distillation=vm_rows,
                inference_amortization=vm_rows / period_rows,
                tflops_external=external_flops / 1e12,
                tflops_co_distillation=co_flops / 1e12,
                compute_ratio=co_flops / external_flops,
                seconds_external=external_s,
                seconds_co_distillation=co_s,
                seconds_ratio=co_s / external_s,
            )
        )
    crossover = next((r.n_vms for r in rows if r.compute_ratio >= 1), None)
    result = AmortizationResult(
        **ctx.header("amortization", started, lad.world),
        assumptions={
            "training_flops": "3 x forward FLOPs per example (forward + backward)",
            "period": "the days the VMs train on, for both sides",
            "external": "the FM trains once on every vertical's rows, the DAS scores every "
            "example once, each VM trains on its rows",
            "co_distillation": "each VM trains jointly with the FM on its own rows: the FM's "
            "forward and backward on every row of every VM",
        },
        fm_flops_per_example=fm_flops,
        vm_flops_per_example=vm_flops,
        period_rows=period_rows,
        das_seconds=das_s,
        fm_train_seconds=timings["fm_train"],
        table=rows,
        compute_crossover_n=crossover,
    )
    return ctx.save(result)


# ------------------------------------------------------------------------------------------- obd


def obd(ctx: Context) -> Path:
    started = time.perf_counter()
    e = ctx.cfg.experiment
    params = Path(e.obd_params)
    base = config_with(load_config(params), e.obd_overrides)
    base = ctx.tuned_cfg(base, "obd")
    seeds = e.quick_obd_seeds if ctx.quick else e.obd_seeds
    data_arm = Arm.fresh("obd_data", base, ctx.workspace)
    days = land_ingest(data_arm)
    verticals = list(base.features.verticals)
    data: Collected = {}
    labels = {"fm": "fm", **{v: vm_model_name(v) for v in LADDER}}
    bar = _progress(seeds * (2 + len(LADDER) * len(verticals)), "obd")
    vm_days: list[str] = []
    for seed in range(seeds):
        arm = Arm.fresh(f"obd_s{seed}", config_with(base, train={"seed": seed}), ctx.workspace)
        arm.share_from(data_arm, "impressions", "checks")
        train_fm(arm, days)
        bar.update()
        versions = backfill(arm, days[1:], base.das.fm_delay_days)
        vm_days = sorted(versions)
        bar.update()
        for variant in LADDER:
            for vertical in verticals:
                train_vm(arm, vertical, variant, vm_days, versions)
                bar.update()
        collect(arm, labels, vm_days, data, unit_prefix=f"s{seed}:")
    bar.close()
    summary = summarize(data, list(labels), ctx.stats, baseline="baseline", fm="fm")
    per_seed = {}
    for seed in range(seeds):
        one = {
            lab: {
                v: {u: m for u, m in by.items() if u.startswith(f"s{seed}:")} for v, by in d.items()
            }
            for lab, d in data.items()
        }
        s = summarize(one, list(labels), ctx.stats, baseline="baseline", fm="fm")
        per_seed[str(seed)] = {
            lab: SeedStats(ne=s.of(lab).ne, ne_gain_pct=s.of(lab).ne_gain_pct) for lab in labels
        }
    return ctx.save(
        ObdResult(
            **ctx.header(
                "obd",
                started,
                f"the Open Bandit sample ({params})"
                + (f"; {', '.join(e.obd_overrides)}" if e.obd_overrides else ""),
            ),
            comparisons=_comparisons(data, ctx),
            params=str(params),
            seeds=seeds,
            days=days,
            vm_days=vm_days,
            rows=summary.of("fm").rows,
            hyperparameters={k: getattr(base.vm, k) for k in TUNED_KEYS},
            units="(seed, day) pairs: the bootstrap resamples days, each with all its seeds",
            summary=summary,
            per_seed=per_seed,
        )
    )


# ------------------------------------------------------------------------------------ robustness

ROBUST = ("kd", "ah", "ah_sa")
MIN_TRANSFER = 0.5  # AH's transfer ratio the issue of record asks for wherever the FM gains


def robustness(ctx: Context) -> Path:
    """The frozen method (tune's values) on a grid of world shapes: in each cell the gain of KD,
    AH and AH + SA over the baseline VM, with intervals and verdicts, and their transfer ratios.
    Cells that differ only in the FM delay share one world and its FM."""
    started = time.perf_counter()
    r = ctx.cfg.experiment.robustness
    shapes = worlds.cells(r)[: r.quick_cells if ctx.quick else None]
    base = config_with(ctx.world_cfg, () if ctx.quick else r.overrides)
    keys = list(dict.fromkeys(worlds.world_key(s) for s in shapes))
    world_arms: dict[tuple, Arm] = {}
    labels = {v: vm_model_name(v) for v in ("baseline", *ROBUST)}
    verticals_total = sum(s.verticals for s in shapes)
    bar = _progress(len(shapes) + verticals_total * len(labels), "robustness")
    out: list[RobustnessCell] = []
    hyper: dict[str, float] = {}
    for i, shape in enumerate(shapes):
        key = worlds.world_key(shape)
        seed = base.world.seed + r.seed_offset + keys.index(key)
        cfg = ctx.tuned_cfg(worlds.shaped(base, shape, seed), "robustness")
        hyper = {k: getattr(cfg.vm, k) for k in TUNED_KEYS}
        if key not in world_arms:
            arm = world_arms[key] = Arm.fresh(f"robust_w{keys.index(key)}", cfg, ctx.workspace)
            train_fm(arm, land_world(arm))
        world = world_arms[key]
        arm = Arm.fresh(f"robust_c{i}", cfg, ctx.workspace)
        arm.share_from(world, "impressions", "checks", "registry/fm")
        days = world.days()
        versions = backfill(arm, days[1:], cfg.das.fm_delay_days)
        vm_days = sorted(versions)
        bar.update()
        for variant in labels:
            for vertical in cfg.features.verticals:
                train_vm(arm, vertical, variant, vm_days, versions)
                bar.update()
        data = collect(world, {"fm": "fm"}, vm_days)
        collect(arm, labels, vm_days, data)
        s = summarize(data, [*labels, "fm"], ctx.stats, baseline="baseline", fm="fm")
        out.append(
            RobustnessCell(
                shape=shape.model_dump(),
                label=worlds.label(shape),
                world_seed=seed,
                vm_days=vm_days,
                ctr=s.of("baseline").ctr,
                baseline_ne=s.of("baseline").ne,
                fm=_cell_gain(s.of("fm")),
                methods={v: _cell_gain(s.of(v)) for v in ROBUST},
            )
        )
    bar.close()
    reversed_ = [
        f"{c.label}: {v}" for c in out for v, g in c.methods.items() if g.verdict == "reversed"
    ]
    low = [
        c.label
        for c in out
        if (c.fm.gain_pct or 0) > 0
        and (
            c.methods["ah"].transfer_ratio is None or c.methods["ah"].transfer_ratio < MIN_TRANSFER
        )
    ]
    label = ctx.family_label(
        f"{len(keys)} worlds of the grid (seeds {base.world.seed + r.seed_offset}.."
        f"{base.world.seed + r.seed_offset + len(keys) - 1}, {base.world.days} days each)",
        () if ctx.quick else r.overrides,
    )
    return ctx.save(
        RobustnessResult(
            **ctx.header("robustness", started, label),
            design=r.design,
            axes={a: list(getattr(r, a)) for a in worlds.AXES},
            center=r.center.model_dump(),
            hyperparameters=hyper,
            cells=out,
            reversed=reversed_,
            low_transfer=low,
        )
    )


def _cell_gain(m: ModelStats) -> CellGain:
    return CellGain(
        gain_pct=m.ne_gain_pct,
        gain_pct_ci=m.ne_gain_pct_ci,
        verdict=verdict(m.ne_gain_pct_ci),
        transfer_ratio=m.transfer_ratio,
        transfer_ratio_ci=m.transfer_ratio_ci,
    )


EXPERIMENTS: dict[str, Callable[[Context], Path]] = {
    "tune": tune,
    "ladder": ladder,
    "freshness": freshness,
    "scaling": scaling,
    "history": history,
    "amortization": amortization,
    "obd": obd,
    "robustness": robustness,
}

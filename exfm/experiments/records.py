"""The records the experiments write and the results page reads: one dataclass per experiment
and per table row, the only schema of `<reports>/<name>.json`.

Every record starts with its header (experiment, mode, seconds, command, schema). They become
JSON only in `save` and come back only through `load`, which checks the schema version and every
field's type (pydantic's TypeAdapter over these dataclasses) and names the file and the field
that is wrong. A CI is `[low, high]` of a paired bootstrap (exfm/experiments/runner.py), None
where it is undefined; gains are relative NE gains in percent (EXFM.md).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydantic

from exfm import files
from exfm.errors import ExfmError
from exfm.variants import POOLED

SCHEMA = 4
CI = list[float] | None
Value = float | int  # a tuned hyperparameter: a weight or scale, or a width (aux_hidden)


class ExperimentError(ExfmError):
    """An experiment cannot run or its inputs are missing or malformed."""


# ------------------------------------------------------------------------------------ summaries


@dataclass
class ModelStats:
    """One model's pooled figures on the units every compared model has (rows, NE with its CI,
    AUC, calibration), and against the baseline and the FM when the summary has them."""

    rows: int
    ne: float | None
    ctr: float | None = None
    auc: float | None = None
    calibration: float | None = None
    ne_ci: CI = None
    ne_gain_pct: float | None = None
    ne_gain_pct_ci: CI = None
    transfer_ratio: float | None = None
    transfer_ratio_ci: CI = None


@dataclass
class Summary:
    """Per vertical and pooled (POOLED): model label -> its figures. `units`: the days (or
    (seed, day) pairs) every model was scored on; the bootstrap resamples their days."""

    units: list[str]
    verticals: dict[str, dict[str, ModelStats]]

    @property
    def pooled(self) -> dict[str, ModelStats]:
        return self.verticals[POOLED]

    def of(self, label: str, vertical: str = POOLED) -> ModelStats:
        return self.verticals[vertical][label]


@dataclass
class Comparison:
    """A claim of the method: `model`'s NE gain over `reference`, pooled over verticals, with its
    interval and what the interval says (holds / not significant / reversed / undetermined)."""

    model: str
    reference: str
    gain_pct: float | None
    gain_pct_ci: CI
    verdict: str
    per_vertical: dict[str, float | None] = field(default_factory=dict)


@dataclass
class FMFacts:
    """An FM's measured size: parameters, forward FLOPs per example, its config."""

    params: int
    flops_per_example: float
    config: dict[str, Any]


@dataclass
class RunCost:
    """Rows trained and seconds taken by one VM over the experiment's days."""

    rows: int
    seconds: float


# -------------------------------------------------------------------------------------- records


@dataclass
class Record:
    """What every experiment's JSON starts with."""

    experiment: str
    mode: str
    seconds: float
    command: str
    schema: int
    world: str  # the data its runs used: the world's seed and overrides, or the dataset


@dataclass
class Trial:
    """One point of the tuning grid: its relative NE gain (%) over the baseline VM on each tuning
    world (pooled over that world's verticals), the worst of them (the criterion) and their
    mean (the tie-break)."""

    variant: str
    distill_weight: float
    label_scale: float
    aux_hidden: int
    sa_weight: float
    gains_pct: dict[str, float | None]
    worst_gain_pct: float | None
    mean_gain_pct: float | None


@dataclass
class TuneWorld:
    """One world of the tuning family: its shape, seed, days, the CTR its data shows, the
    baseline VM's NE and the FM's gain over it."""

    name: str
    shape: str
    seed: int
    days: list[str]
    vm_days: list[str]
    ctr: float | None
    baseline_ne: float | None
    fm_gain_pct: float | None


@dataclass
class TuneResult(Record):
    worlds: list[TuneWorld]
    criterion: str
    order: list[str]
    start: dict[str, Value]  # the point the search starts from
    grid: dict[str, list[Value]]  # the values tried on each axis, extensions included
    extended: dict[str, list[Value]]  # the values added past an end of the configured grid
    at_edge: list[str]  # axes whose chosen value is still at an end of the values tried
    tried: list[Trial]
    chosen: dict[str, Value]


@dataclass
class LadderFM(FMFacts):
    rows: int = 0  # rows the FM trained on


@dataclass
class LadderResult(Record):
    comparisons: list[Comparison]
    days: list[str]
    vm_days: list[str]
    hyperparameters: dict[str, Value]
    distill_weight_total: dict[str, float]
    summary: Summary
    ne_by_day: dict[str, list[float | None]]
    fm: LadderFM
    vm_flops_per_example: float
    costs: dict[str, dict[str, RunCost]]  # variant -> vertical -> cost
    timings_s: dict[str, float]


@dataclass
class DelayRun:
    """One FM delay: the FM version that scored each day, and the VMs against AH and ah2."""

    fm_versions: dict[str, str]
    vs_ah: Summary
    vs_ah2: Summary


@dataclass
class FreshnessRow:
    """One FM delay (cadence 1: a refresh every day), or one refresh cadence (delay 0)."""

    delay: int
    cadence: int
    fm_ne: float | None
    fm_ne_ci: CI
    ah_ne: float | None
    ah2_ne: float | None
    ah_sa_ne: float | None
    sa_vs_ah_pct: float | None
    sa_vs_ah_pct_ci: CI
    head_vs_ah_pct: float | None
    head_vs_ah_pct_ci: CI
    sa_own_pct: float | None
    sa_own_pct_ci: CI


@dataclass
class FreshnessResult(Record):
    delays: list[int]
    vm_days: list[str]
    eval_days: list[str]
    distill_weight_total: dict[str, float]
    per_delay: dict[str, DelayRun]
    table: list[FreshnessRow]
    cadences: list[int]
    per_cadence: dict[str, DelayRun]
    cadence_table: list[FreshnessRow]


@dataclass
class SizeRun:
    """One FM size: its facts, the arm it trained in, and its summary against the baseline."""

    fm: FMFacts
    arm: str
    summary: Summary


@dataclass
class ScalingRow:
    size: str
    params: int
    flops_per_example: float
    fm_ne: float | None
    fm_gain_pct: float | None
    fm_gain_pct_ci: CI
    vm_ne: float | None
    vm_gain_pct: float | None
    vm_gain_pct_ci: CI
    transfer_ratio: float | None
    baseline_ne: float | None


@dataclass
class ScalingResult(Record):
    variant: str
    vm_days: list[str]
    flops_span: float
    sizes: dict[str, SizeRun]
    table: list[ScalingRow]
    vm_gain_increases_with_size: bool


@dataclass
class HistoryRow:
    """One FM of the history experiment: its size and history, its gain over the baseline VM and
    the gain of the VM it taught, on the same rows."""

    size: str
    days_before: int  # the FM started this many days before the VMs' first day
    fm_days: int  # days the FM had trained on when the VMs' first day was scored
    fm_rows: int  # rows the FM trained on in all
    fm_ne: float | None
    fm_gain_pct: float | None
    fm_gain_pct_ci: CI
    vm_ne: float | None
    vm_gain_pct: float | None
    vm_gain_pct_ci: CI
    transfer_ratio: float | None
    transfer_ratio_ci: CI


@dataclass
class HistoryResult(Record):
    variant: str
    days: list[str]
    vm_days: list[str]
    days_before: list[int]
    sizes: dict[str, dict[str, Any]]  # size -> its fm overrides
    baseline_ne: float | None
    table: list[HistoryRow]  # by size, then history
    pearson: float | None  # of the VM gains against the FM gains over the table's FMs
    spearman: float | None
    vm_gain_increases_with_fm_gain: bool  # in the FM gains' order, every step up (ties: either)


@dataclass
class AmortizationRow:
    n_vms: int
    vms: list[str]
    vm_training_rows: int
    fm_inferences_external: int
    fm_inferences_co_distillation: int
    inference_amortization: float
    tflops_external: float
    tflops_co_distillation: float
    compute_ratio: float
    seconds_external: float
    seconds_co_distillation: float
    seconds_ratio: float


@dataclass
class AmortizationResult(Record):
    assumptions: dict[str, str]
    fm_flops_per_example: float
    vm_flops_per_example: float
    period_rows: int
    das_seconds: float
    fm_train_seconds: float
    table: list[AmortizationRow]
    compute_crossover_n: int | None


@dataclass
class SeedStats:
    ne: float | None
    ne_gain_pct: float | None


@dataclass
class ObdResult(Record):
    comparisons: list[Comparison]
    params: str
    seeds: int
    days: list[str]
    vm_days: list[str]
    rows: int
    hyperparameters: dict[str, Value]
    units: str
    summary: Summary
    per_seed: dict[str, dict[str, SeedStats]]  # seed -> model label -> figures


@dataclass
class CellGain:
    """One method's relative NE gain (%) over the baseline VM in a robustness cell, its interval
    and verdict, and its transfer ratio (its gain / the FM's) where the FM gains."""

    gain_pct: float | None
    gain_pct_ci: CI
    verdict: str
    transfer_ratio: float | None
    transfer_ratio_ci: CI


@dataclass
class RobustnessCell:
    """One world shape of the robustness grid and what the frozen method gave there."""

    shape: dict[str, Any]  # base_ctr, drift, verticals, fm_delay
    label: str
    world_seed: int
    vm_days: list[str]
    ctr: float | None  # the positive rate the data shows (the baseline VM's rows)
    baseline_ne: float | None
    fm: CellGain
    methods: dict[str, CellGain]  # kd, ah, ah_sa


@dataclass
class RobustnessResult(Record):
    design: str
    axes: dict[str, list[float]]
    center: dict[str, Any]
    hyperparameters: dict[str, Value]
    cells: list[RobustnessCell]
    reversed: list[str]  # "cell: method" where a method's gain is reversed
    low_transfer: list[str]  # "cell" where the FM gains and AH's transfer ratio is below 0.5


RECORDS: dict[str, type[Record]] = {
    "tune": TuneResult,
    "ladder": LadderResult,
    "freshness": FreshnessResult,
    "scaling": ScalingResult,
    "history": HistoryResult,
    "amortization": AmortizationResult,
    "obd": ObdResult,
    "robustness": RobustnessResult,
}


# ------------------------------------------------------------------------------------ JSON edges


def to_json(record: Any) -> dict[str, Any]:
    """Plain data of a record (nested dataclasses, dicts, lists, scalars)."""
    return dataclasses.asdict(record)


def save(path: Path, record: Record) -> Path:
    """Atomically (exfm/files.py): a reader never sees half a result."""
    return files.write_json(path, to_json(record), default=_plain)


def load(path: Path, needed_by: str) -> Any:
    """The record stored at `<reports>/<name>.json`, typed. Raises ExperimentError naming the file
    (and the field) when it is missing, not JSON, of another schema or not such a record."""
    name = path.stem
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ExperimentError(
            f"{needed_by} needs {path}: run `exfm experiment {name}` first "
            "(with the same --quick setting)"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ExperimentError(f"{path} is not valid JSON ({e}): rerun its experiment") from e
    return parse(name, data, path)


def parse(name: str, data: Any, where: Path | str) -> Any:
    cls = RECORDS.get(name)
    if cls is None:
        raise ExperimentError(f"{where}: no experiment is called {name!r}; see {list(RECORDS)}")
    schema = data.get("schema") if isinstance(data, dict) else None
    if schema != SCHEMA:
        raise ExperimentError(
            f"{where} has schema {schema!r}; this version reads schema {SCHEMA}: rerun "
            f"`exfm experiment {name}`"
        )
    try:
        return _adapter(cls).validate_python(data)
    except pydantic.ValidationError as e:
        first = e.errors()[0]
        at = ".".join(str(p) for p in first["loc"])
        raise ExperimentError(
            f"{where} is not a {name} record: {at}: {first['msg']} ({e.error_count()} "
            f"problems): rerun `exfm experiment {name}`"
        ) from None


_ADAPTERS: dict[type, pydantic.TypeAdapter] = {}


def _adapter(cls: type) -> pydantic.TypeAdapter:
    if cls not in _ADAPTERS:
        _ADAPTERS[cls] = pydantic.TypeAdapter(cls)
    return _ADAPTERS[cls]


def _plain(x: Any) -> Any:
    """numpy scalars and paths in a record, as JSON."""
    if hasattr(x, "item") and callable(x.item):
        return x.item()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON serializable: {type(x).__name__}")

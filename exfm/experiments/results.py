"""The results page (`<reports>/results.html`), its Markdown twin (`results.md`, what the
README's results section shows) and the plots as standalone files (`plots/*.svg`): every
experiment's tables and plots, each with the command that reproduces it, and each claim of the
method with the verdict its confidence interval gives (holds / not significant / reversed).
Static and offline: inline SVG, no scripts, no CDN.

An experiment that has not run yet is listed as missing (with its command), not invented.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exfm.experiments.records import (
    AmortizationResult,
    CellGain,
    Comparison,
    FreshnessResult,
    HistoryResult,
    LadderResult,
    ObdResult,
    Record,
    RobustnessResult,
    ScalingResult,
    TuneResult,
    to_json,
)
from exfm.experiments.suite import EXPERIMENTS, Context
from exfm.files import write_json, write_text
from exfm.reporting import fmt, render, svg, trusted
from exfm.variants import POOLED, VARIANTS

NAMES = {
    **{v.name: v.title for v in VARIANTS.values()},
    "fm": "FM (teacher, not served)",
    "oracle": "oracle (true CTR)",
}
LADDER_ORDER = (*VARIANTS, "fm", "oracle")


def _fmt(x: Any, spec: str = ".4f") -> str:
    return fmt(x, spec, missing="-")


def _ci(ci: Sequence[float] | None, spec: str = ".3f") -> str:
    return "-" if not ci else f"[{format(ci[0], spec)}, {format(ci[1], spec)}]"


def _load(ctx: Context) -> dict[str, Any]:
    """Every experiment's record, None for those not run yet."""
    return {
        name: ctx.load(name, "results") if ctx.out(name).exists() else None for name in EXPERIMENTS
    }


# ---------------------------------------------------------------------------------------- tables


def _ladder_rows(result: LadderResult | ObdResult) -> list[list[str]]:
    models = result.summary.pooled
    weights = getattr(result, "distill_weight_total", {})
    rows = []
    for key in LADDER_ORDER:
        m = models.get(key)
        if m is None:
            continue
        rows.append(
            [
                NAMES[key],
                _fmt(m.ne),
                _ci(m.ne_ci, ".4f"),
                _fmt(m.ne_gain_pct, ".3f"),
                _ci(m.ne_gain_pct_ci),
                _fmt(m.auc),
                _fmt(m.calibration, ".3f"),
                _fmt(m.transfer_ratio, ".2f"),
                _fmt(weights.get(key), ".2f") if key in weights else "",
            ]
        )
    return rows


LADDER_HEAD = [
    "model",
    "NE",
    "NE CI",
    "gain % vs baseline",
    "gain CI",
    "AUC",
    "calibration",
    "transfer ratio",
    "distill weight",
]


def _per_vertical_rows(result: LadderResult) -> tuple[list[str], list[list[str]]]:
    summary = result.summary
    verticals = [v for v in summary.verticals if v != POOLED]
    rows = []
    for key in (*(v for v in VARIANTS if v != "baseline"), "fm"):
        if key not in summary.pooled:
            continue
        cells = [summary.of(key, v) for v in verticals]
        rows.append(
            [NAMES[key]]
            + [f"{_fmt(m.ne_gain_pct, '.3f')} {_ci(m.ne_gain_pct_ci, '.2f')}" for m in cells]
        )
    return ["gain % vs baseline [CI]", *verticals], rows


def _claim_rows(result: LadderResult | ObdResult) -> list[list[str]]:
    return [
        [
            f"{NAMES[c.model]} vs {NAMES[c.reference]}",
            _fmt(c.gain_pct, ".3f"),
            _ci(c.gain_pct_ci),
            c.verdict,
        ]
        for c in result.comparisons
    ]


CLAIM_HEAD = ["comparison (pooled over verticals)", "NE gain %", "CI", "verdict"]


def _tune_rows(result: TuneResult) -> list[list[str]]:
    return [
        [
            t.variant,
            *[_fmt(getattr(t, k), "g") for k in result.order],
            _fmt(t.worst_gain_pct, ".3f"),
            _fmt(t.mean_gain_pct, ".3f"),
            *[_fmt(t.gains_pct.get(w.name), ".3f") for w in result.worlds],
        ]
        for t in result.tried
    ]


TUNE_WORLD_HEAD = ["world", "shape", "seed", "CTR", "baseline VM NE", "FM gain %"]


def _tune_world_rows(result: TuneResult) -> list[list[str]]:
    return [
        [
            w.name,
            w.shape,
            str(w.seed),
            _fmt(w.ctr, ".3f"),
            _fmt(w.baseline_ne, ".4f"),
            _fmt(w.fm_gain_pct, ".3f"),
        ]
        for w in result.worlds
    ]


def _tune_tables(result: TuneResult) -> list[tuple[list[str], list[list[str]]]]:
    head = [
        "variant",
        *result.order,
        "worst gain %",
        "mean gain %",
        *[f"{w.name} gain %" for w in result.worlds],
    ]
    return [(TUNE_WORLD_HEAD, _tune_world_rows(result)), (head, _tune_rows(result))]


ROBUST_METHODS = {"kd": "KD", "ah": "AH", "ah_sa": "AH+SA"}
ROBUST_HEAD = [
    "cell",
    "CTR",
    "FM gain %",
    *[f"{t} gain % [CI]" for t in ROBUST_METHODS.values()],
    "AH transfer",
]


def _marked(g: CellGain) -> str:
    """A method's gain in a cell; a reversed one says so (red on the page)."""
    text = _gain(g.gain_pct, g.gain_pct_ci)
    return f"{text} reversed" if g.verdict == "reversed" else text


def _short_gain(g: CellGain) -> str:
    return f"{_fmt(g.gain_pct, '.2f')} {_ci(g.gain_pct_ci, '.2f')}"


def _robust_rows(result: RobustnessResult) -> list[list[str]]:
    return [
        [
            c.label,
            _fmt(c.ctr, ".3f"),
            _gain(c.fm.gain_pct, c.fm.gain_pct_ci),
            *[_marked(c.methods[m]) for m in ROBUST_METHODS],
            f"{_fmt(c.methods['ah'].transfer_ratio, '.2f')} "
            f"{_ci(c.methods['ah'].transfer_ratio_ci, '.2f')}",
        ]
        for c in result.cells
    ]


def _gain(value: float | None, ci: Sequence[float] | None) -> str:
    """A gain and its interval in one cell: `0.123 [0.010, 0.236]`."""
    return f"{_fmt(value, '.3f')} {_ci(ci)}"


def _fresh_rows(result: FreshnessResult, cadence: bool = False) -> list[list[str]]:
    return [
        [
            str(r.cadence if cadence else r.delay),
            _fmt(r.fm_ne),
            _fmt(r.ah_ne),
            _fmt(r.ah2_ne),
            _fmt(r.ah_sa_ne),
            _gain(r.sa_vs_ah_pct, r.sa_vs_ah_pct_ci),
            _gain(r.head_vs_ah_pct, r.head_vs_ah_pct_ci),
            _gain(r.sa_own_pct, r.sa_own_pct_ci),
        ]
        for r in (result.cadence_table if cadence else result.table)
    ]


FRESH_HEAD = [
    "FM delay (days)",
    "FM NE",
    "AH NE",
    "ah2 NE",
    "AH+SA NE",
    "AH+SA vs AH % [CI]",
    "ah2 vs AH % [CI] (extra head)",
    "AH+SA vs ah2 % [CI] (SA's own effect)",
]


def _scaling_rows(result: ScalingResult) -> list[list[str]]:
    return [
        [
            r.size,
            _fmt(r.params),
            _fmt(r.flops_per_example / 1e3, ".1f"),
            _fmt(r.fm_ne),
            _gain(r.fm_gain_pct, r.fm_gain_pct_ci),
            _fmt(r.vm_ne),
            _gain(r.vm_gain_pct, r.vm_gain_pct_ci),
            _fmt(r.transfer_ratio, ".2f"),
        ]
        for r in result.table
    ]


SCALING_HEAD = [
    "FM size",
    "FM params",
    "FM kFLOP/example",
    "FM NE",
    "FM gain % [CI]",
    "VM NE",
    "VM gain % [CI]",
    "transfer ratio",
]


def _history_rows(result: HistoryResult) -> list[list[str]]:
    return [
        [
            r.size,
            str(r.days_before),
            _fmt(r.fm_rows),
            _fmt(r.fm_ne),
            _gain(r.fm_gain_pct, r.fm_gain_pct_ci),
            _fmt(r.vm_ne),
            _gain(r.vm_gain_pct, r.vm_gain_pct_ci),
            f"{_fmt(r.transfer_ratio, '.2f')} {_ci(r.transfer_ratio_ci, '.2f')}",
        ]
        for r in result.table
    ]


HISTORY_HEAD = [
    "FM size",
    "FM starts (days before the VMs)",
    "FM rows trained",
    "FM NE",
    "FM gain % [CI]",
    "VM NE",
    "VM gain % [CI]",
    "transfer ratio [CI]",
]


def _amort_rows(result: AmortizationResult) -> list[list[str]]:
    return [
        [
            str(r.n_vms),
            _fmt(r.fm_inferences_external),
            _fmt(r.fm_inferences_co_distillation),
            _fmt(r.tflops_external, ".2f"),
            _fmt(r.tflops_co_distillation, ".2f"),
            _fmt(r.compute_ratio, ".2f"),
            _fmt(r.seconds_external, ".0f"),
            _fmt(r.seconds_co_distillation, ".0f"),
        ]
        for r in result.table
    ]


AMORT_HEAD = [
    "N VMs",
    "FM inferences (DAS)",
    "FM passes (co-distillation)",
    "TFLOP (DAS)",
    "TFLOP (co-distillation)",
    "co-dist / DAS compute",
    "seconds (DAS)",
    "seconds (co-dist, est.)",
]


# ----------------------------------------------------------------------------------------- plots


def _table_lines(name: str, table: Sequence[Any], ticks: list[str], keys: dict) -> str:
    """One line per column of an experiment's table (label -> field), over its rows."""
    series = {label: [getattr(row, key) for row in table] for label, key in keys.items()}
    return svg.lines(name, ticks, series, ticks=ticks)


def _claims(name: str, comparisons: list[Comparison]) -> str:
    return svg.ci_bars(
        name, [(f"{c.model} vs {c.reference}", c.gain_pct, c.gain_pct_ci) for c in comparisons]
    )


def _plots(results: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    lad: LadderResult | None = results.get("ladder")
    if lad:
        units = lad.summary.units
        series = dict(lad.ne_by_day)  # short names: the legend sits beside the plot
        out["ladder_ne_by_day"] = svg.lines("ladder_ne_by_day", units, series, height=240)
        out["ladder_claims"] = _claims("ladder_claims", lad.comparisons)
    fresh: FreshnessResult | None = results.get("freshness")
    if fresh:
        table = fresh.table
        ticks = [f"{r.delay} d" for r in table]
        out["freshness_fm_ne"] = _table_lines(
            "freshness_fm_ne",
            table,
            ticks,
            {"FM NE": "fm_ne", "AH NE": "ah_ne", "AH+SA NE": "ah_sa_ne"},
        )
        out["freshness_sa_gain"] = _table_lines(
            "freshness_sa_gain",
            table,
            ticks,
            {"AH+SA vs AH %": "sa_vs_ah_pct", "SA own (vs ah2) %": "sa_own_pct"},
        )
        out["freshness_cadence_sa_gain"] = _table_lines(
            "freshness_cadence_sa_gain",
            fresh.cadence_table,
            [f"every {r.cadence} d" for r in fresh.cadence_table],
            {"AH+SA vs AH %": "sa_vs_ah_pct", "SA own (vs ah2) %": "sa_own_pct"},
        )
    scal: ScalingResult | None = results.get("scaling")
    if scal:
        table = scal.table
        ticks = [f"{r.size} {r.flops_per_example / 1e3:.0f}k" for r in table]
        out["scaling_gain"] = _table_lines(
            "scaling_gain", table, ticks, {"FM gain %": "fm_gain_pct", "VM gain %": "vm_gain_pct"}
        )
    hist: HistoryResult | None = results.get("history")
    if hist:
        table = sorted(hist.table, key=lambda r: (r.fm_gain_pct is None, r.fm_gain_pct or 0.0))
        out["history_gain"] = _table_lines(
            "history_gain",
            table,
            [f"{r.size} {r.days_before}d" for r in table],
            {"FM gain %": "fm_gain_pct", "VM gain %": "vm_gain_pct"},
        )
    am: AmortizationResult | None = results.get("amortization")
    if am:
        table = am.table
        ticks = [str(r.n_vms) for r in table]
        out["amortization_compute"] = _table_lines(
            "amortization_compute",
            table,
            ticks,
            {"TFLOP DAS": "tflops_external", "TFLOP co-dist": "tflops_co_distillation"},
        )
        out["amortization_inferences"] = _table_lines(
            "amortization_inferences",
            table,
            ticks,
            {
                "FM inferences DAS": "fm_inferences_external",
                "FM passes co-dist": "fm_inferences_co_distillation",
            },
        )
    obd: ObdResult | None = results.get("obd")
    if obd:
        out["obd_claims"] = _claims("obd_claims", obd.comparisons)
    rob: RobustnessResult | None = results.get("robustness")
    if rob:
        out["robustness_cells"] = svg.verdict_grid(
            "robustness_cells",
            [c.label for c in rob.cells],
            [f"{t} gain %" for t in ROBUST_METHODS.values()],
            [
                [(_short_gain(c.methods[m]), c.methods[m].verdict) for m in ROBUST_METHODS]
                for c in rob.cells
            ],
        )
    return out


# ----------------------------------------------------------------------------------------- pages


@dataclass(frozen=True)
class Section:
    """One experiment on the page: its title, prose, tables ((head, rows) each), plot names,
    and the record it shows (its command and seconds)."""

    name: str
    title: str
    text: str
    tables: list[tuple[list[str], list[list[str]]]]
    plots: list[str]
    result: Record


def _tune_text(tune: TuneResult) -> str:
    extended = "; ".join(
        f"{k} extended with {', '.join(f'{v:g}' for v in vs)}" for k, vs in tune.extended.items()
    )
    edge = (
        f" At an end of the values tried (widen the grid): {', '.join(tune.at_edge)}."
        if tune.at_edge
        else " No chosen value is at an end of the values tried."
    )
    return (
        f"Chosen on {len(tune.worlds)} tuning worlds of different shapes (their seeds are none "
        f"of the worlds the other experiments report), one axis at a time in the order "
        f"{', '.join(tune.order)} from the neutral point ("
        + ", ".join(f"{k} = {v:g}" for k, v in tune.start.items())
        + "), keeping the best value so far; "
        f"criterion: {tune.criterion}. A weight or scale whose best value is at an end of its "
        "grid is extended past it"
        + (f" ({extended})" if extended else "")
        + ". Chosen: "
        + ", ".join(f"{k} = {v:g}" for k, v in tune.chosen.items())
        + "."
        + edge
        + " Every other experiment, the OBD ladder included, uses these values. beta "
        "(vm.grad_scale) is not tuned: with Adam and row-wise Adagrad, which do not see a "
        "gradient's scale, only w x beta reaches the VM (w 4 with beta 1 and w 1 with beta 4 "
        "train the same VM), so w covers it."
    )


def _robust_text(rob: RobustnessResult) -> str:
    design = (
        "every combination of the axes"
        if rob.design == "full"
        else "the center cell and, one axis at a time, the center with that axis changed"
    )
    axes = "; ".join(f"{k} {', '.join(f'{v:g}' for v in vs)}" for k, vs in rob.axes.items())
    rev = (
        "Reversed (the gain's interval below zero): " + "; ".join(rob.reversed) + "."
        if rob.reversed
        else "No method is reversed in any cell."
    )
    low = (
        "Cells where the FM gains and AH transfers less than half of it: "
        + "; ".join(rob.low_transfer)
        + "."
        if rob.low_transfer
        else "Wherever the FM gains, AH transfers at least half of its gain."
    )
    return (
        f"The frozen method ({', '.join(f'{k} = {v:g}' for k, v in rob.hyperparameters.items())})"
        f" on a grid of world shapes ({axes}): {design}. Each cell is its own world (cells that "
        f"differ only in the FM delay share one), with its FM, its DAS and its VMs; gains are over "
        f"that cell's baseline VM on the same rows, with paired bootstrap intervals over days. "
        f"{rev} {low}"
    )


def _ladder_text(lad: LadderResult) -> str:
    return (
        f"Streaming over {len(lad.days)} days; VMs from {lad.vm_days[0]}, progressive NE pooled "
        f"over {len(lad.summary.units)} days x every vertical. Intervals: paired bootstrap over "
        "days (every model scored on the same resampled days). The distillation weight is the "
        "total weight of each variant's distillation terms (ah2 and AH+SA carry the same total)."
    )


def _fresh_text(fresh: FreshnessResult) -> str:
    return (
        "The DAS scores day ds with the FM trained through ds - 1 - delay. For every delay the "
        f"VMs start on {fresh.vm_days[0]} (the first day the largest delay can score) and are "
        f"compared on {len(fresh.eval_days)} days. ah2 adds the same second head as SA, fed the "
        "raw FM prediction with the same weight, so SA's own effect is AH+SA vs ah2. The "
        "second table is the cadence gap production has: the FM trains every day, but the DAS "
        "scores with the FM refreshed every "
        + ", ".join(str(k) for k in fresh.cadences)
        + " days (delay 0; the VMs train daily on the same days)."
    )


def _scaling_text(scal: ScalingResult) -> str:
    grows = "grows" if scal.vm_gain_increases_with_size else "does NOT grow"
    return (
        f"FM sizes spanning {scal.flops_span:.0f}x in FLOPs per example; the VM ({scal.variant}) "
        f"is compared with the ladder's baseline VM on the same rows. The VM gain {grows} "
        "monotonically with the FM's size in this run."
    )


def _history_text(hist: HistoryResult) -> str:
    grows = "grows" if hist.vm_gain_increases_with_fm_gain else "does NOT grow"
    corr = (
        f"Pearson r = {hist.pearson:.2f}, Spearman rho = {hist.spearman:.2f}"
        if hist.pearson is not None and hist.spearman is not None
        else "no correlation (fewer than 3 FMs or a constant gain)"
    )
    return (
        f"FMs of sizes {', '.join(hist.sizes)} that start "
        f"{', '.join(str(b) for b in hist.days_before)} days before the VMs' first day (0: the "
        f"day before it; the DAS at delay 0), each teaching a VM ({hist.variant}) per vertical on "
        f"the world's last days; every model is compared with one baseline VM on the same "
        f"{len(hist.vm_days)} days. Over the {len(hist.table)} FMs, the VM gain against the FM "
        f"gain: {corr} (point estimates; each gain's interval is in the table). In the order of "
        f"the FMs' gains, the VM gain {grows} at every step in this run."
    )


def _amort_text(am: AmortizationResult) -> str:
    cross = am.compute_crossover_n
    verdict = (
        f"Co-distillation costs more compute from N = {cross} VMs on."
        if cross
        else f"Co-distillation stays cheaper in total compute up to N = {len(am.table)} here; "
        "the DAS still saves FM inferences."
    )
    return (
        "The DAS runs one FM inference per example whatever N is; co-distillation runs the FM "
        "forward and backward on every training row of every VM. On the DAS side the FM also "
        "trains once on every vertical's rows. Both sides cover the days the VMs train on; "
        "training costs 3x a forward's FLOPs; seconds are the ladder's measured FM training, DAS "
        "and VM seconds (co-distillation's FM part at the FM's measured training seconds per "
        f"row). VMs 5-8 are a second model per vertical (the AH variant). {verdict}"
    )


def _obd_text(obd: ObdResult) -> str:
    return (
        f"{obd.rows:,} evaluated rows, {obd.seeds} training seeds, hyperparameters frozen from "
        "the tuning worlds. Intervals: paired bootstrap over days, each with all its seeds. No "
        "oracle: real data has no true CTR."
    )


def _ladder_tables(lad: LadderResult) -> list[tuple[list[str], list[list[str]]]]:
    return [
        (LADDER_HEAD, _ladder_rows(lad)),
        (CLAIM_HEAD, _claim_rows(lad)),
        _per_vertical_rows(lad),
    ]


# experiment -> its title, its prose, its tables ((head, rows) each) and its plots, in page order
PAGE: dict[str, tuple[str, Callable[[Any], str], Callable[[Any], list], list[str]]] = {
    "tune": (
        "Hyperparameters (chosen once, then frozen)",
        _tune_text,
        _tune_tables,
        [],
    ),
    "ladder": (
        "Ablation ladder",
        _ladder_text,
        _ladder_tables,
        ["ladder_claims", "ladder_ne_by_day"],
    ),
    "freshness": (
        "Freshness gap: FM delay vs Student Adapter",
        _fresh_text,
        lambda r: [
            (FRESH_HEAD, _fresh_rows(r)),
            (["FM refreshed every (days)", *FRESH_HEAD[1:]], _fresh_rows(r, cadence=True)),
        ],
        ["freshness_fm_ne", "freshness_sa_gain", "freshness_cadence_sa_gain"],
    ),
    "scaling": (
        "Transfer scaling: VM gain vs FM size",
        _scaling_text,
        lambda r: [(SCALING_HEAD, _scaling_rows(r))],
        ["scaling_gain"],
    ),
    "history": (
        "Teacher history: VM gain vs the FM's own gain",
        _history_text,
        lambda r: [(HISTORY_HEAD, _history_rows(r))],
        ["history_gain"],
    ),
    "amortization": (
        "Amortization: N VMs on one FM",
        _amort_text,
        lambda r: [(AMORT_HEAD, _amort_rows(r))],
        ["amortization_inferences", "amortization_compute"],
    ),
    "obd": (
        "A real dataset: Open Bandit sample (campaigns as verticals)",
        _obd_text,
        lambda r: [(LADDER_HEAD, _ladder_rows(r)), (CLAIM_HEAD, _claim_rows(r))],
        ["obd_claims"],
    ),
    "robustness": (
        "Robustness: the frozen method on worlds of other shapes",
        _robust_text,
        lambda r: [(ROBUST_HEAD, _robust_rows(r))],
        ["robustness_cells"],
    ),
}


def _sections(results: dict[str, Any]) -> list[Section]:
    """Every experiment that ran, in the order of the page."""
    return [
        Section(name, title, text(r), tables(r), plots, r)
        for name, (title, text, tables, plots) in PAGE.items()
        if (r := results.get(name)) is not None
    ]


def _markdown(sections: list[Section], missing: list[str], mode: str) -> str:
    lines = []
    for s in sections:
        lines += [
            f"#### {s.title}",
            "",
            f"`{s.result.command}` ({s.result.seconds} s)",
            "",
            f"Data: {s.result.world}",
            "",
            s.text,
            "",
        ]
        for head, rows in s.tables:
            lines.append("| " + " | ".join(head) + " |")
            lines.append("|" + "---|" * len(head))
            lines += ["| " + " | ".join(r) + " |" for r in rows]
            lines.append("")
        lines += [f"![{p}](plots/{p}.svg)" for p in s.plots]
        lines.append("")
    for m in missing:
        lines.append(f"- not run yet: `exfm experiment {m}{' --quick' if mode == 'quick' else ''}`")
    return "\n".join(lines) + "\n"


def _write_svgs(folder: Path, plots: dict[str, str]) -> None:
    """Each plot also as a standalone SVG file (for the README and other documents)."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.svg"):
        if old.stem not in plots:
            old.unlink()
    for name, markup in plots.items():
        standalone = markup.replace(
            "<svg ", '<svg xmlns="http://www.w3.org/2000/svg" style="background:#fff" ', 1
        )
        (folder / f"{name}.svg").write_text(standalone)


def write_results(ctx: Context) -> Path:
    """results.html, results.md, results.json (every experiment's headline figures) and
    plots/*.svg."""
    results = _load(ctx)
    missing = [name for name, r in results.items() if r is None]
    sections = _sections(results)
    plots = _plots(results)
    _write_svgs(ctx.reports / "plots", plots)
    page = render(
        "results.html",
        sections=sections,
        plots={k: trusted(v) for k, v in plots.items()},
        missing=missing,
        mode=ctx.mode,
    )
    path = write_text(ctx.reports / "results.html", page)
    write_text(ctx.reports / "results.md", _markdown(sections, missing, ctx.mode))

    def table(name: str) -> list[dict[str, Any]] | None:
        r = results.get(name)
        return [to_json(row) for row in r.table] if r is not None else None

    write_json(
        ctx.reports / "results.json",
        {
            "mode": ctx.mode,
            "missing": missing,
            "claims": {
                name: [to_json(c) for c in r.comparisons]
                for name, r in results.items()
                if r is not None and hasattr(r, "comparisons")
            },
            "freshness": table("freshness"),
            "freshness_cadence": (
                [to_json(row) for row in results["freshness"].cadence_table]
                if results.get("freshness") is not None
                else None
            ),
            "scaling": table("scaling"),
            "history": table("history"),
            "amortization": table("amortization"),
            "robustness": (
                [to_json(c) for c in results["robustness"].cells]
                if results.get("robustness") is not None
                else None
            ),
        },
    )
    return path

"""The results page (`<reports>/results.html`), its Markdown twin (`results.md`, what the
README's results section shows) and the plots as standalone files (`plots/*.svg`): every
experiment's tables and plots, each with the command that reproduces it, and each claim of the
method with the verdict its confidence interval gives (holds / not significant / reversed).
Static and offline: inline SVG, no scripts, no CDN.

An experiment that has not run yet is listed as missing (with its command), not invented.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

from jinja2 import Environment
from markupsafe import Markup

from data_checks import svg
from exfm.experiments.runner import write_json
from exfm.experiments.suite import EXPERIMENTS, Context
from exfm.files import write_text
from exfm.variants import POOLED, VARIANTS

NAMES = {
    **{v.name: v.title for v in VARIANTS.values()},
    "fm": "FM (teacher, not served)",
    "oracle": "oracle (true CTR)",
}
LADDER_ORDER = (*VARIANTS, "fm", "oracle")


def _fmt(x: Any, spec: str = ".4f") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    if isinstance(x, int) and not isinstance(x, bool):
        return f"{x:,}"
    if isinstance(x, float):
        return format(x, spec)
    return str(x)


def _ci(ci: Sequence[float] | None, spec: str = ".3f") -> str:
    return "-" if not ci else f"[{format(ci[0], spec)}, {format(ci[1], spec)}]"


def _load(ctx: Context) -> dict[str, dict[str, Any] | None]:
    out: dict[str, dict[str, Any] | None] = {}
    for name in EXPERIMENTS:
        path = ctx.out(name)
        out[name] = json.loads(path.read_text()) if path.exists() else None
    return out


# ---------------------------------------------------------------------------------------- tables


def _ladder_rows(result: dict[str, Any]) -> list[list[str]]:
    models = result["summary"]["verticals"][POOLED]
    weights = result.get("distill_weight_total", {})
    rows = []
    for key in LADDER_ORDER:
        m = models.get(key)
        if m is None:
            continue
        rows.append(
            [
                NAMES[key],
                _fmt(m.get("ne")),
                _ci(m.get("ne_ci"), ".4f"),
                _fmt(m.get("ne_gain_pct"), ".3f"),
                _ci(m.get("ne_gain_pct_ci")),
                _fmt(m.get("auc")),
                _fmt(m.get("calibration"), ".3f"),
                _fmt(m.get("transfer_ratio"), ".2f"),
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


def _per_vertical_rows(result: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    verticals = [v for v in result["summary"]["verticals"] if v != POOLED]
    rows = []
    for key in (*(v for v in VARIANTS if v != "baseline"), "fm"):
        if key not in result["summary"]["verticals"][POOLED]:
            continue
        rows.append(
            [NAMES[key]]
            + [
                _fmt(result["summary"]["verticals"][v][key].get("ne_gain_pct"), ".3f")
                + " "
                + _ci(result["summary"]["verticals"][v][key].get("ne_gain_pct_ci"), ".2f")
                for v in verticals
            ]
        )
    return ["gain % vs baseline [CI]", *verticals], rows


def _claim_rows(result: dict[str, Any]) -> list[list[str]]:
    return [
        [
            f"{NAMES[c['model']]} vs {NAMES[c['reference']]}",
            _fmt(c["gain_pct"], ".3f"),
            _ci(c["gain_pct_ci"]),
            c["verdict"],
        ]
        for c in result["comparisons"]
    ]


CLAIM_HEAD = ["comparison (pooled over verticals)", "NE gain %", "CI", "verdict"]


def _tune_rows(result: dict[str, Any]) -> list[list[str]]:
    return [
        [t["variant"], *[_fmt(t[k], "g") for k in result["order"]], _fmt(t["ne"], ".5f")]
        for t in result["tried"]
    ]


def _fresh_rows(result: dict[str, Any]) -> list[list[str]]:
    return [
        [
            str(r["delay"]),
            _fmt(r["fm_ne"]),
            _fmt(r["ah_ne"]),
            _fmt(r["ah2_ne"]),
            _fmt(r["ah_sa_ne"]),
            f"{_fmt(r['sa_vs_ah_pct'], '.3f')} {_ci(r['sa_vs_ah_pct_ci'])}",
            f"{_fmt(r['head_vs_ah_pct'], '.3f')} {_ci(r['head_vs_ah_pct_ci'])}",
            f"{_fmt(r['sa_own_pct'], '.3f')} {_ci(r['sa_own_pct_ci'])}",
        ]
        for r in result["table"]
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


def _scaling_rows(result: dict[str, Any]) -> list[list[str]]:
    return [
        [
            r["size"],
            _fmt(r["params"]),
            _fmt(r["flops_per_example"] / 1e3, ".1f"),
            _fmt(r["fm_ne"]),
            f"{_fmt(r['fm_gain_pct'], '.3f')} {_ci(r['fm_gain_pct_ci'])}",
            _fmt(r["vm_ne"]),
            f"{_fmt(r['vm_gain_pct'], '.3f')} {_ci(r['vm_gain_pct_ci'])}",
            _fmt(r["transfer_ratio"], ".2f"),
        ]
        for r in result["table"]
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


def _amort_rows(result: dict[str, Any]) -> list[list[str]]:
    return [
        [
            str(r["n_vms"]),
            _fmt(r["fm_inferences_external"]),
            _fmt(r["fm_inferences_co_distillation"]),
            _fmt(r["tflops_external"], ".2f"),
            _fmt(r["tflops_co_distillation"], ".2f"),
            _fmt(r["compute_ratio"], ".2f"),
            _fmt(r["seconds_external"], ".0f"),
            _fmt(r["seconds_co_distillation"], ".0f"),
        ]
        for r in result["table"]
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


def _ci_bars(name: str, items: Sequence[tuple[str, float, Sequence[float] | None]]) -> str:
    """Horizontal bars around zero with confidence whiskers: (label, value, [lo, hi])."""
    width, row, left, right = 640, 20, 250, 40
    values = [v for _, v, _ in items] + [x for _, _, ci in items if ci for x in ci] + [0.0]
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    lo, hi = lo - 0.05 * span, hi + 0.05 * span

    def x(v: float) -> float:
        return left + (v - lo) / (hi - lo) * (width - left - right)

    height = row * len(items) + 24
    parts = [
        f'<svg data-plot="{escape(name)}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" {svg.FONT}>',
        f'<line x1="{x(0):.1f}" x2="{x(0):.1f}" y1="4" y2="{height - 16}" stroke="#999"/>',
        f'<text x="{x(0):.1f}" y="{height - 4}" text-anchor="middle">0</text>',
    ]
    for i, (label, value, ci) in enumerate(items):
        y = 8 + i * row
        color = svg.COLORS["pass"] if value >= 0 else svg.COLORS["fail"]
        a, b = sorted((x(0), x(value)))
        parts.append(
            f'<text x="{left - 6}" y="{y + 11}" text-anchor="end">{escape(label)}</text>'
            f'<rect x="{a:.1f}" y="{y}" width="{max(b - a, 1):.1f}" height="{row - 8}" '
            f'fill="{color}" opacity="0.75"><title>{escape(label)}: {value:.3f}</title></rect>'
        )
        if ci:
            parts.append(
                f'<line x1="{x(ci[0]):.1f}" x2="{x(ci[1]):.1f}" y1="{y + 6}" y2="{y + 6}" '
                'stroke="#222" stroke-width="1.5"/>'
            )
    parts.append("</svg>")
    return "".join(parts)


def _table_lines(name: str, table: list[dict[str, Any]], ticks: list[str], keys: dict) -> str:
    """One line per column of an experiment's table (label -> key), over its rows."""
    series = {label: [row[key] for row in table] for label, key in keys.items()}
    return svg.lines(name, ticks, series, ticks=ticks)


def _claims(name: str, comparisons: list[dict[str, Any]]) -> str:
    return _ci_bars(
        name,
        [
            (f"{c['model']} vs {c['reference']}", c["gain_pct"], c["gain_pct_ci"])
            for c in comparisons
        ],
    )


def _plots(results: dict[str, dict[str, Any] | None]) -> dict[str, str]:
    out: dict[str, str] = {}
    lad = results.get("ladder")
    if lad:
        units = lad["summary"]["units"]
        series = dict(lad["ne_by_day"])  # short names: the legend sits beside the plot
        out["ladder_ne_by_day"] = svg.lines("ladder_ne_by_day", units, series, height=240)
        out["ladder_claims"] = _claims("ladder_claims", lad["comparisons"])
    fresh = results.get("freshness")
    if fresh:
        table = fresh["table"]
        ticks = [f"{r['delay']} d" for r in table]
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
    scal = results.get("scaling")
    if scal:
        table = scal["table"]
        ticks = [f"{r['size']} {r['flops_per_example'] / 1e3:.0f}k" for r in table]
        out["scaling_gain"] = _table_lines(
            "scaling_gain", table, ticks, {"FM gain %": "fm_gain_pct", "VM gain %": "vm_gain_pct"}
        )
    am = results.get("amortization")
    if am:
        table = am["table"]
        ticks = [str(r["n_vms"]) for r in table]
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
    obd = results.get("obd")
    if obd:
        out["obd_claims"] = _claims("obd_claims", obd["comparisons"])
    return out


# ----------------------------------------------------------------------------------------- pages


def _sections(results: dict[str, dict[str, Any] | None]) -> list[dict[str, Any]]:
    """Title, command, prose, tables ((head, rows) each) and plot names of every experiment."""
    out = []
    tune = results.get("tune")
    if tune:
        out.append(
            {
                "name": "tune",
                "title": "Hyperparameters (chosen once, then frozen)",
                "text": (
                    f"Chosen on a tuning world (world seed {tune['world_seed']}, "
                    f"{len(tune['days'])} days; the ladder runs on another seed), one axis at a "
                    f"time in the order {', '.join(tune['order'])}, keeping the best value so far; "
                    f"criterion: {tune['criterion']}. Chosen: "
                    + ", ".join(f"{k} = {v:g}" for k, v in tune["chosen"].items())
                    + ". Every other experiment, the OBD ladder included, uses these values."
                ),
                "tables": [(["variant", *tune["order"], "pooled NE"], _tune_rows(tune))],
                "plots": [],
                "result": tune,
            }
        )
    lad = results.get("ladder")
    if lad:
        head, rows = _per_vertical_rows(lad)
        out.append(
            {
                "name": "ladder",
                "title": "Ablation ladder (default world)",
                "text": (
                    f"Streaming over {len(lad['days'])} days; VMs from {lad['vm_days'][0]}, "
                    f"progressive NE pooled over {len(lad['summary']['units'])} days x every "
                    "vertical. Intervals: paired bootstrap over days "
                    "(every model scored on the same resampled days). The distillation weight is "
                    "the total weight of each variant's distillation terms (ah2 and AH+SA carry "
                    "the same total)."
                ),
                "tables": [
                    (LADDER_HEAD, _ladder_rows(lad)),
                    (CLAIM_HEAD, _claim_rows(lad)),
                    (head, rows),
                ],
                "plots": ["ladder_claims", "ladder_ne_by_day"],
                "result": lad,
            }
        )
    fresh = results.get("freshness")
    if fresh:
        out.append(
            {
                "name": "freshness",
                "title": "Freshness gap: FM delay vs Student Adapter",
                "text": (
                    "The DAS scores day ds with the FM trained through ds - 1 - delay. For every "
                    f"delay the VMs start on {fresh['vm_days'][0]} (the first day the largest "
                    f"delay can score) and are compared on {len(fresh['eval_days'])} days. ah2 "
                    "adds the same second head as SA, fed the raw FM prediction with the same "
                    "weight, so SA's own effect is AH+SA vs ah2."
                ),
                "tables": [(FRESH_HEAD, _fresh_rows(fresh))],
                "plots": ["freshness_fm_ne", "freshness_sa_gain"],
                "result": fresh,
            }
        )
    scal = results.get("scaling")
    if scal:
        out.append(
            {
                "name": "scaling",
                "title": "Transfer scaling: VM gain vs FM size",
                "text": (
                    f"FM sizes spanning {scal['flops_span']:.0f}x in FLOPs per example; the VM "
                    f"({scal['variant']}) is compared with the ladder's baseline VM on the same "
                    "rows. The VM gain "
                    + ("grows" if scal["vm_gain_increases_with_size"] else "does NOT grow")
                    + " monotonically with the FM's size in this run."
                ),
                "tables": [(SCALING_HEAD, _scaling_rows(scal))],
                "plots": ["scaling_gain"],
                "result": scal,
            }
        )
    am = results.get("amortization")
    if am:
        cross = am["compute_crossover_n"]
        out.append(
            {
                "name": "amortization",
                "title": "Amortization: N VMs on one FM",
                "text": (
                    "The DAS runs one FM inference per example whatever N is; co-distillation "
                    "runs the FM forward and backward on every training row of every VM. On the "
                    "DAS side the FM also trains once on every vertical's rows. Both sides cover "
                    "the days the VMs train on; training costs 3x a forward's FLOPs; seconds are "
                    "the ladder's measured FM training, DAS and VM seconds (co-distillation's FM "
                    "part at the FM's measured training seconds per row). VMs 5-8 are a second "
                    "model per vertical (the AH variant). "
                    + (
                        f"Co-distillation costs more compute from N = {cross} VMs on."
                        if cross
                        else "Co-distillation stays cheaper in total compute up to "
                        f"N = {len(am['table'])} here; the DAS still saves FM inferences."
                    )
                ),
                "tables": [(AMORT_HEAD, _amort_rows(am))],
                "plots": ["amortization_inferences", "amortization_compute"],
                "result": am,
            }
        )
    obd = results.get("obd")
    if obd:
        out.append(
            {
                "name": "obd",
                "title": "A real dataset: Open Bandit sample (campaigns as verticals)",
                "text": (
                    f"{obd['rows']:,} evaluated rows, {obd['seeds']} training seeds, "
                    f"hyperparameters frozen from the tuning world. Intervals: paired bootstrap "
                    "over (seed, day) units. No oracle: real data has no true CTR."
                ),
                "tables": [(LADDER_HEAD, _ladder_rows(obd)), (CLAIM_HEAD, _claim_rows(obd))],
                "plots": ["obd_claims"],
                "result": obd,
            }
        )
    return out


_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>ExFM results</title><style>
body{font-family:system-ui,sans-serif;margin:24px auto;max-width:1150px;color:#222;padding:0 12px}
h1{font-size:22px} h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:13px;margin:8px 0} td,th{border:1px solid #ddd;
padding:3px 8px} th{background:#f4f4f4} td{font-variant-numeric:tabular-nums}
code{background:#f4f4f4;padding:1px 4px} .muted{color:#777;font-size:13px}
svg{max-width:100%;height:auto;display:block;margin:6px 0}
.holds{color:#3b7d3b;font-weight:600} .reversed{color:#c0392b;font-weight:600}
</style></head><body>
<h1>ExFM results{% if mode == "quick" %} (quick mode: small settings, for tests){% endif %}</h1>
<p class="muted">Every figure below was measured by the command shown with it, on this
project's code and data; a verdict is "holds" when the confidence interval of the gain lies above
zero, "reversed" when below, "not significant" otherwise.</p>
{% for s in sections %}<h2 id="{{ s.name }}">{{ s.title }}</h2>
<p><code>{{ s.result.command }}</code> <span class="muted">({{ s.result.seconds }} s)</span></p>
<p>{{ s.text }}</p>
{% for head, rows in s.tables %}<table><tr>{% for h in head %}<th>{{ h }}</th>{% endfor %}</tr>
{% for r in rows %}<tr>{% for c in r %}<td{% if c in ("holds", "reversed") %}
 class="{{ c }}"{% endif %}>{{ c }}</td>{% endfor %}</tr>{% endfor %}
</table>{% endfor %}
{% for p in s.plots %}{% if p in plots %}{{ plots[p] }}{% endif %}{% endfor %}
{% endfor %}
{% if missing %}<h2>Not run yet</h2><ul>{% for m in missing %}
<li><code>exfm experiment {{ m }}{% if mode == "quick" %} --quick{% endif %}</code></li>
{% endfor %}</ul>{% endif %}
</body></html>"""


def _markdown(sections: list[dict[str, Any]], missing: list[str], mode: str) -> str:
    lines = []
    for s in sections:
        lines += [
            f"#### {s['title']}",
            "",
            f"`{s['result']['command']}` ({s['result']['seconds']} s)",
            "",
            s["text"],
            "",
        ]
        for head, rows in s["tables"]:
            lines.append("| " + " | ".join(head) + " |")
            lines.append("|" + "---|" * len(head))
            lines += ["| " + " | ".join(r) + " |" for r in rows]
            lines.append("")
        lines += [f"![{p}](plots/{p}.svg)" for p in s["plots"]]
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
    env = Environment(autoescape=True)
    page = env.from_string(_PAGE).render(
        sections=sections,
        # the SVG helpers escape every text they draw
        plots={k: Markup(v) for k, v in plots.items()},  # noqa: S704
        missing=missing,
        mode=ctx.mode,
    )
    path = write_text(ctx.reports / "results.html", page)
    write_text(ctx.reports / "results.md", _markdown(sections, missing, ctx.mode))
    write_json(
        ctx.reports / "results.json",
        {
            "mode": ctx.mode,
            "missing": missing,
            "claims": {
                name: r["comparisons"]
                for name, r in results.items()
                if r is not None and "comparisons" in r
            },
            "freshness": results["freshness"]["table"] if results.get("freshness") else None,
            "scaling": results["scaling"]["table"] if results.get("scaling") else None,
            "amortization": results["amortization"]["table"]
            if results.get("amortization")
            else None,
        },
    )
    return path

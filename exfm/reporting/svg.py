"""Small inline SVG charts for every page the platform writes (the drift report, the pipeline
report, the results page): no JavaScript, no external resources, so a page opens offline in any
browser. Every chart is an <svg> with a `data-plot` attribute naming it; every text it draws is
escaped, so its markup can be trusted by a template (`exfm.reporting.trusted`). Layouts reserve
room for their texts with `text_width`, so no label is cut off at the chart's edge."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape

COLORS = {
    "pass": "#3b7d3b",
    "warn": "#c98a00",
    "fail": "#c0392b",
    "ref": "#9aa5b1",
    "cur": "#2c6fbb",
    "ungraded": "#a9b2bc",
}
SERIES = ["#2c6fbb", "#c0392b", "#3b7d3b", "#8e44ad", "#c98a00", "#16a085"]
FONT_SIZE = 11
FONT = f'font-family="system-ui, sans-serif" font-size="{FONT_SIZE}"'
# a halo behind a text drawn over lines and points, so that it stays readable
HALO = 'stroke="#fff" stroke-width="3" paint-order="stroke"'
LABEL_CHARS = 18  # longer axis labels are shortened; their <title> holds them in full
_C45 = math.cos(math.pi / 4)
# Glyph widths in em of DejaVu Sans (Debian's default sans-serif, wider than most), rounded up:
# an upper bound of a text's width in the fonts a browser picks for system-ui.
_NARROW, _WIDE = set("ijlrtfI.,:;|!()[]' -"), set("mwMW%@")


def text_width(text: str, size: float = FONT_SIZE) -> float:
    """An upper bound of `text`'s width in pixels at font size `size` (see _NARROW)."""
    em = 0.0
    for c in text:
        if not c.isascii() or c in _WIDE:
            em += 1.0
        elif c in _NARROW:
            em += 0.42
        else:
            em += 0.8 if c.isupper() else 0.64
    return em * size


def _fmt(x: float) -> str:
    if x == 0:
        return "0"
    if abs(x) >= 100 or abs(x) < 0.01:
        return f"{x:.2g}"
    return f"{x:.3g}"


def _short(label: str, chars: int = LABEL_CHARS) -> str:
    return label if len(label) <= chars else label[: chars - 1] + "…"


def _label(x: float, y: float, label: str, attrs: str = "", shown: str | None = None) -> str:
    """An axis label drawn as `shown` (default: shortened to LABEL_CHARS), with the full text in
    its <title> when they differ."""
    shown = _short(label) if shown is None else shown
    title = f"<title>{escape(label)}</title>" if shown != label else ""
    return f'<text x="{x:.1f}" y="{y:.1f}" {attrs}>{title}{escape(shown)}</text>'


def bars(
    name: str,
    items: Sequence[tuple[str, float, str]],
    lines: Sequence[tuple[float, str]] = (),
    width: int = 640,
    notes: Mapping[str, str] | None = None,
) -> str:
    """Horizontal bars: (label, value, status) each, with optional threshold lines; `notes`
    (label -> text) adds a remark after a bar's value (e.g. why it is not graded)."""
    row, right = 18, 60
    notes = notes or {}
    ends = {
        label: f"{_fmt(v)} · {notes[label]}" if label in notes else _fmt(v) for label, v, _ in items
    }
    left = max([150.0] + [text_width(_short(label)) + 12 for label, _, _ in items])
    width = max(width, int(left + 240 + max([text_width(e) for e in ends.values()] + [0])))
    height = row * len(items) + 30
    top = max([v for _, v, _ in items] + [t for t, _ in lines] + [1e-9])
    scale = min(
        [(width - left - right) / top]
        + [(width - left - 8 - text_width(ends[label])) / v for label, v, _ in items if v > 0]
    )
    parts = [
        f'<svg data-plot="{escape(name)}" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" {FONT}>'
    ]
    for i, (label, value, status) in enumerate(items):
        y = 10 + i * row
        parts.append(_label(left - 6, y + 12, label, 'text-anchor="end"'))
        parts.append(
            f'<rect x="{left:.1f}" y="{y + 2}" width="{max(value * scale, 1):.1f}" '
            f'height="{row - 5}" fill="{COLORS.get(status, COLORS["cur"])}">'
            f"<title>{escape(label)}: {_fmt(value)}</title></rect>"
        )
        parts.append(
            f'<text x="{left + value * scale + 4:.1f}" y="{y + 12}" {HALO}>'
            f"{escape(ends[label])}</text>"
        )
    for threshold, status in lines:
        x = left + threshold * scale
        parts.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="5" y2="{height - 15}" '
            f'stroke="{COLORS[status]}" stroke-dasharray="4 3"/>'
        )
        parts.append(
            f'<text x="{x:.1f}" y="{height - 3}" text-anchor="middle" '
            f'fill="{COLORS[status]}">{status} {_fmt(threshold)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def histogram(
    name: str,
    labels: Sequence[str],
    ref: Sequence[float],
    cur: Sequence[float],
    width: int = 640,
    height: int = 180,
) -> str:
    """Reference (grey) and today (blue) shares side by side, one pair per bin. Bin labels too
    wide for their bins are turned 45 degrees; the chart grows to hold them."""
    n = max(len(labels), 1)
    top, plot_h = 20, height - 50
    every = math.ceil(n / 16)  # at most 16 labels
    shown = [(i, _short(label)) for i, label in enumerate(labels) if i % every == 0]
    widest = max([text_width(s) for _, s in shown] + [0.0])
    left = 46.0
    turned = widest + 6 > (width - left - 10) / n
    for _ in range(3 if turned else 0):  # a turned label reaches left of its bin: make room
        slot = (width - left - 10) / n
        left = max(
            [46.0] + [(text_width(s) + FONT_SIZE) * _C45 - (i + 0.5) * slot + 4 for i, s in shown]
        )
    slot = (width - left - 10) / n
    base = top + plot_h
    height = int(base + ((widest + FONT_SIZE) * _C45 + 12 if turned else 20))
    y_top = max([*ref, *cur, 1e-9])
    scale = plot_h / y_top
    key_today = width - 4 - text_width("■ today")
    key_ref = key_today - 10 - text_width("■ reference")
    parts = [
        f'<svg data-plot="{escape(name)}" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" {FONT}>',
        f'<line x1="{left:.1f}" x2="{width - 5}" y1="{base}" y2="{base}" stroke="#555"/>',
        f'<text x="{left - 4:.1f}" y="{top + 5}" text-anchor="end">{y_top:.1%}</text>',
        f'<text x="{left - 4:.1f}" y="{base}" text-anchor="end">0%</text>',
    ]
    for i, (label, r, c) in enumerate(zip(labels, ref, cur, strict=True)):
        x = left + i * slot
        w = max(slot / 2 - 1, 1)
        for dx, value, color in ((0, r, COLORS["ref"]), (w, c, COLORS["cur"])):
            h = value * scale
            parts.append(
                f'<rect x="{x + dx:.1f}" y="{base - h:.1f}" '
                f'width="{w:.1f}" height="{h:.1f}" fill="{color}">'
                f"<title>{escape(label)}: {value:.2%}</title></rect>"
            )
    for i, _ in shown:
        x = left + (i + 0.5) * slot
        if turned:
            parts.append(
                _label(
                    x + 3,
                    base + 8,
                    labels[i],
                    f'text-anchor="end" transform="rotate(-45 {x + 3:.1f} {base + 8})"',
                )
            )
        else:
            parts.append(_label(x, base + 14, labels[i], 'text-anchor="middle"'))
    parts.append(
        f'<text x="{key_ref:.1f}" y="12" fill="{COLORS["ref"]}">■ reference</text>'
        f'<text x="{key_today:.1f}" y="12" fill="{COLORS["cur"]}">■ today</text></svg>'
    )
    return "".join(parts)


def _y_axis(values: Sequence[float]) -> tuple[float, float, list[str]]:
    """(low, high, tick labels) of a y axis holding `values`, on round steps: 4 or 5 ticks."""
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5 * (abs(lo) or 1), hi + 0.5 * (abs(hi) or 1)
    raw = (hi - lo) / 4
    power = 10 ** math.floor(math.log10(raw))
    mantissa = next(m for m in (1, 2, 2.5, 5, 10) if m * power >= raw * (1 - 1e-9))
    step = mantissa * power
    lo, hi = math.floor(lo / step + 1e-9) * step, math.ceil(hi / step - 1e-9) * step
    decimals = max(0, -math.floor(math.log10(step) + 1e-9) + (mantissa == 2.5))
    ticks = [f"{lo + k * step:.{decimals}f}" for k in range(round((hi - lo) / step) + 1)]
    return lo, hi, ticks


def lines(
    name: str,
    days: Sequence[str],
    series: dict[str, Sequence[float | None]],
    highlight: str | None = None,
    width: int = 640,
    height: int = 200,
    ticks: Sequence[str] | None = None,
    thresholds: Sequence[tuple[float, str]] = (),
    zero: bool = False,
    y_label: str | None = None,
) -> str:
    """Values over days, one polyline per series (gaps where a value is missing), on a y axis
    with round tick values. `ticks` labels the x positions (default: each day's MM-DD); labels
    are thinned to stay apart, keeping the highlighted (else the last) day's. `thresholds`
    ((value, status) each) are drawn as labelled dashed lines inside the axis; `zero` starts
    the axis at 0, so that a change reads at its true size."""
    values = [v for s in series.values() for v in s if v is not None]
    marks = [t for t, _ in thresholds]
    lo, hi, yticks = _y_axis(values + marks + ([0.0] if zero else []))
    xticks = [_short(ticks[i] if ticks else day[5:]) for i, day in enumerate(days)]
    widest = max([text_width(t) for t in xticks] + [0.0])
    left = max(
        50.0, max(text_width(t) for t in yticks) + 8 + (16 if y_label else 0), widest / 2 + 4
    )
    right = max([110.0] + [text_width(label) + 14 for label in series])
    top, bottom = 10, 28
    n = max(len(days) - 1, 1)
    every = max(1, math.ceil((widest + 10) / ((width - left - right) / n)))
    anchor = days.index(highlight) if highlight in days else len(days) - 1

    def xy(i: int, v: float) -> tuple[float, float]:
        return (
            left + i * (width - left - right) / n,
            top + (hi - v) / (hi - lo) * (height - top - bottom),
        )

    parts = [
        f'<svg data-plot="{escape(name)}" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" {FONT}>'
    ]
    for k, tick in enumerate(yticks):
        _, y = xy(0, lo + k * (hi - lo) / (len(yticks) - 1))
        parts.append(
            f'<line x1="{left:.1f}" x2="{width - right:.1f}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="{"#999" if k == 0 else "#eee"}"/>'
            f'<text x="{left - 4:.1f}" y="{y + 4:.1f}" text-anchor="end">{tick}</text>'
        )
    if y_label:
        mid = (top + height - bottom) / 2
        parts.append(
            f'<text transform="translate(12,{mid:.1f}) rotate(-90)" text-anchor="middle">'
            f"{escape(_short(y_label, 24))}</text>"
        )
    for i, day in enumerate(days):
        x, _ = xy(i, lo)
        if day == highlight:
            parts.append(
                f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{height - bottom}" stroke="#bbb"/>'
            )
        if (i - anchor) % every == 0:
            label = ticks[i] if ticks else day
            parts.append(_label(x, height - bottom + 14, label, 'text-anchor="middle"', xticks[i]))
    placed = top + 9.0 - 12  # each threshold's label sits above its line, clear of the last
    for threshold, status in sorted(thresholds, key=lambda t: -t[0]):
        _, y = xy(0, threshold)
        placed = max(y - 3, placed + 12)
        parts.append(
            f'<line x1="{left:.1f}" x2="{width - right:.1f}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="{COLORS[status]}" stroke-dasharray="4 3"/>'
            f'<text x="{left + 4:.1f}" y="{placed:.1f}" fill="{COLORS[status]}" {HALO}>'
            f"{status} {_fmt(threshold)}</text>"
        )
    for k, (label, seq) in enumerate(series.items()):
        color = SERIES[k % len(SERIES)]
        points = [(i, *xy(i, v), v) for i, v in enumerate(seq) if v is not None]
        if points:
            path = " ".join(f"{x:.1f},{y:.1f}" for _, x, y, _ in points)
            parts.append(
                f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="1.5"/>'
            )
            parts += [
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{color}">'
                f"<title>{escape(days[i])} {escape(label)}: {_fmt(v)}</title></circle>"
                for i, x, y, v in points
            ]
        parts.append(
            f'<text x="{width - right + 8:.1f}" y="{16 + 14 * k}" fill="{color}">'
            f"{escape(label)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def ci_bars(name: str, items: Sequence[tuple[str, float, Sequence[float] | None]]) -> str:
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
        f'viewBox="0 0 {width} {height}" {FONT}>',
        f'<line x1="{x(0):.1f}" x2="{x(0):.1f}" y1="4" y2="{height - 16}" stroke="#999"/>',
        f'<text x="{x(0):.1f}" y="{height - 4}" text-anchor="middle">0</text>',
    ]
    for i, (label, value, ci) in enumerate(items):
        y = 8 + i * row
        color = COLORS["pass"] if value >= 0 else COLORS["fail"]
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


VERDICT_FILL = {"holds": "#cfe8cf", "reversed": "#f4c7c1", "not significant": "#eef0f2"}


def verdict_grid(
    name: str,
    rows: Sequence[str],
    columns: Sequence[str],
    cells: Sequence[Sequence[tuple[str, str]]],
) -> str:
    """A table as a chart: one row per label of `rows`, one column per title of `columns`, each
    cell (its text, its verdict) filled by the verdict: green holds, red reversed, grey not
    significant (white: undetermined). The verdict is also in each cell's <title>."""
    pad, row = 8, 22
    left = max((text_width(r) for r in rows), default=0) + 2 * pad
    col = max(
        [text_width(c) for c in columns] + [text_width(t) for r in cells for t, _ in r] + [40]
    )
    col += 2 * pad
    width = math.ceil(left + col * len(columns))
    height = row * (len(rows) + 1) + 4
    parts = [
        f'<svg data-plot="{escape(name)}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" {FONT}>'
    ]
    for j, title in enumerate(columns):
        cx = left + col * j + col / 2
        parts.append(
            f'<text x="{cx:.1f}" y="{row - 7}" text-anchor="middle" '
            f'font-weight="bold">{escape(title)}</text>'
        )
    for i, (label, values) in enumerate(zip(rows, cells, strict=True)):
        y = row * (i + 1)
        parts.append(f'<text x="{pad}" y="{y + row - 7}">{escape(label)}</text>')
        for j, (text, verdict) in enumerate(values):
            x = left + col * j
            fill = VERDICT_FILL.get(verdict, "#fff")
            parts.append(
                f'<rect x="{x + 1:.1f}" y="{y + 1}" width="{col - 2:.1f}" height="{row - 2}" '
                f'fill="{fill}" stroke="#d5dadf"><title>{escape(columns[j])}, {escape(label)}: '
                f"{escape(text)} ({escape(verdict)})</title></rect>"
                f'<text x="{x + col / 2:.1f}" y="{y + row - 7}" text-anchor="middle">'
                f"{escape(text)}</text>"
            )
    parts.append("</svg>")
    return "".join(parts)

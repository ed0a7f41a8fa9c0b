"""Small inline SVG charts for every page the platform writes (the drift report, the pipeline
report, the results page): no JavaScript, no external resources, so a page opens offline in any
browser. Every chart is an <svg> with a `data-plot` attribute naming it; every text it draws is
escaped, so its markup can be trusted by a template (`exfm.reporting.trusted`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

COLORS = {
    "pass": "#3b7d3b",
    "warn": "#c98a00",
    "fail": "#c0392b",
    "ref": "#9aa5b1",
    "cur": "#2c6fbb",
}
SERIES = ["#2c6fbb", "#c0392b", "#3b7d3b", "#8e44ad", "#c98a00", "#16a085"]
FONT = 'font-family="system-ui, sans-serif" font-size="11"'


def _fmt(x: float) -> str:
    if x == 0:
        return "0"
    if abs(x) >= 100 or abs(x) < 0.01:
        return f"{x:.2g}"
    return f"{x:.3g}"


def bars(
    name: str,
    items: Sequence[tuple[str, float, str]],
    lines: Sequence[tuple[float, str]] = (),
    width: int = 640,
) -> str:
    """Horizontal bars: (label, value, status) each, with optional threshold lines."""
    row, left, right = 18, 150, 60
    height = row * len(items) + 30
    top = max([v for _, v, _ in items] + [t for t, _ in lines] + [1e-9])
    scale = (width - left - right) / top
    parts = [
        f'<svg data-plot="{escape(name)}" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" {FONT}>'
    ]
    for i, (label, value, status) in enumerate(items):
        y = 10 + i * row
        parts.append(f'<text x="{left - 6}" y="{y + 12}" text-anchor="end">{escape(label)}</text>')
        parts.append(
            f'<rect x="{left}" y="{y + 2}" width="{max(value * scale, 1):.1f}" '
            f'height="{row - 5}" fill="{COLORS.get(status, COLORS["cur"])}">'
            f"<title>{escape(label)}: {_fmt(value)}</title></rect>"
        )
        parts.append(f'<text x="{left + value * scale + 4:.1f}" y="{y + 12}">{_fmt(value)}</text>')
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
    """Reference (grey) and today (blue) shares side by side, one pair per bin."""
    n = max(len(labels), 1)
    left, bottom = 40, 40
    slot = (width - left - 10) / n
    top = max([*ref, *cur, 1e-9])
    scale = (height - bottom - 10) / top
    parts = [
        f'<svg data-plot="{escape(name)}" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" {FONT}>',
        f'<line x1="{left}" x2="{width - 5}" y1="{height - bottom}" '
        f'y2="{height - bottom}" stroke="#555"/>',
        f'<text x="{left - 4}" y="15" text-anchor="end">{_fmt(top)}</text>',
    ]
    for i, (label, r, c) in enumerate(zip(labels, ref, cur, strict=True)):
        x = left + i * slot
        w = max(slot / 2 - 1, 1)
        for dx, value, color in ((0, r, COLORS["ref"]), (w, c, COLORS["cur"])):
            h = value * scale
            parts.append(
                f'<rect x="{x + dx:.1f}" y="{height - bottom - h:.1f}" '
                f'width="{w:.1f}" height="{h:.1f}" fill="{color}">'
                f"<title>{escape(label)}: {value:.2%}</title></rect>"
            )
        if n <= 16 or i % math.ceil(n / 16) == 0:
            parts.append(
                f'<text transform="translate({x + slot / 2:.1f},{height - bottom + 6})'
                f' rotate(40)">{escape(label[:14])}</text>'
            )
    parts.append(
        f'<text x="{width - 150}" y="12" fill="{COLORS["ref"]}">■ reference</text>'
        f'<text x="{width - 70}" y="12" fill="{COLORS["cur"]}">■ today</text></svg>'
    )
    return "".join(parts)


def lines(
    name: str,
    days: Sequence[str],
    series: dict[str, Sequence[float | None]],
    highlight: str | None = None,
    width: int = 640,
    height: int = 200,
    ticks: Sequence[str] | None = None,
) -> str:
    """Values over days, one polyline per series (gaps where a value is missing). `ticks` labels
    the x positions (default: each day's MM-DD)."""
    left, bottom, right = 50, 45, 110
    values = [v for s in series.values() for v in s if v is not None]
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5 * (abs(lo) or 1), hi + 0.5 * (abs(hi) or 1)
    n = max(len(days) - 1, 1)

    def xy(i: int, v: float) -> tuple[float, float]:
        return (
            left + i * (width - left - right) / n,
            10 + (hi - v) / (hi - lo) * (height - bottom - 10),
        )

    parts = [
        f'<svg data-plot="{escape(name)}" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" {FONT}>',
        f'<text x="{left - 4}" y="14" text-anchor="end">{_fmt(hi)}</text>',
        f'<text x="{left - 4}" y="{height - bottom}" text-anchor="end">{_fmt(lo)}</text>',
    ]
    for i, day in enumerate(days):
        x, _ = xy(i, lo)
        if day == highlight:
            parts.append(
                f'<line x1="{x:.1f}" x2="{x:.1f}" y1="10" y2="{height - bottom}" stroke="#bbb"/>'
            )
        if len(days) <= 15 or i % math.ceil(len(days) / 15) == 0:
            parts.append(
                f'<text transform="translate({x:.1f},{height - bottom + 8}) '
                f'rotate(40)">{escape(ticks[i] if ticks else day[5:])}</text>'
            )
    for k, (label, seq) in enumerate(series.items()):
        color = SERIES[k % len(SERIES)]
        points = [xy(i, v) for i, v in enumerate(seq) if v is not None]
        if points:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            parts.append(
                f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="1.5"/>'
            )
            parts += [
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{color}"/>' for x, y in points
            ]
        parts.append(
            f'<text x="{width - right + 8}" y="{16 + 14 * k}" fill="{color}">{escape(label)}</text>'
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

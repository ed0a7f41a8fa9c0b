"""A dense feature's drift against its reference: the PSI bins and the grid that KS and the shift
are computed on (data_checks/drift.py's docstring defines each statistic and its bound).

Four SQL queries per feature and set of rows, run by the caller's `query` (Drift._rows): the
reference's counts; one sort of the reference, picking its values at the ranks of the grid's
quantiles and of the bin edges' interpolation, each with the counts below it and at or below it;
today's values binned against the grid points and the bin edges (DuckDB's histogram, whose
cumulative counts give today's CDF and its left limits); one sort of today, picking its values at
the grid's levels. No per-row Python: what comes back is a few thousand numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

Query = Callable[[str, list[Any]], list[tuple]]
# a picked rank's value, the count of values below it and the count at or below it
Stat = tuple[float, int, int]


@dataclass(frozen=True)
class Grid:
    """Both sides of a dense feature on the grid (data_checks/drift.py's docstring).

    points: the distinct reference values at the grid's ranks, ascending; `ref_at`, `cur_at` =
    F(g), the share at or below each point, and `ref_below`, `cur_below` = F(g-), the share
    strictly below, each of shape (len(points),).
    ref_quantiles, cur_quantiles: Q(i / G) for i = 0..G, shape (G + 1,): the smallest value whose
    share at or below it is at least i / G (Q(0) the min).
    scale: the reference's standard deviation (the pooled one when the reference is constant)."""

    points: np.ndarray
    ref_at: np.ndarray
    ref_below: np.ndarray
    cur_at: np.ndarray
    cur_below: np.ndarray
    ref_quantiles: np.ndarray
    cur_quantiles: np.ndarray
    scale: float

    def ks(self) -> float:
        """max |F_ref - F_cur| over the grid points and their left limits."""
        at = np.abs(self.ref_at - self.cur_at)
        below = np.abs(self.ref_below - self.cur_below)
        return float(max(at.max(), below.max()))

    def ks_bound(self) -> float:
        """How far below the exact KS the grid's may be: the largest reference share strictly
        between two neighbouring grid points, or outside them."""
        inside = self.ref_below[1:] - self.ref_at[:-1]
        return float(np.max([self.ref_below[0], 1.0 - self.ref_at[-1], *inside, 0.0]))

    def wasserstein(self) -> float:
        """The integral of |Q_ref - Q_cur| over [0, 1], by trapezoids between the levels."""
        gap = np.abs(self.ref_quantiles - self.cur_quantiles)
        return float(np.sum(gap[:-1] + gap[1:]) / 2 / (len(gap) - 1))

    def wasserstein_bound(self) -> float:
        """How far the trapezoids may be from the exact integral: within a step between levels
        |Q_ref - Q_cur| moves at most by the larger rise of either quantile function."""
        rises = np.maximum(np.diff(self.ref_quantiles), np.diff(self.cur_quantiles))
        return float(np.sum(rises) / (len(self.ref_quantiles) - 1))

    def shift(self) -> float:
        """Wasserstein-1 / the reference's standard deviation (0 when both are the same
        constant)."""
        return self.wasserstein() / self.scale if self.scale > 0 else 0.0

    def shift_bound(self) -> float:
        return self.wasserstein_bound() / self.scale if self.scale > 0 else 0.0


@dataclass(frozen=True)
class DenseDrift:
    """A dense feature's PSI bins (names, reference counts, today's counts) and its grid (None
    when a side has no value)."""

    bins: tuple[list[str], np.ndarray, np.ndarray]
    grid: Grid | None


def levels(n: int, size: int) -> list[int]:
    """The ranks (1-based, among n sorted values) of the quantiles at 0, 1/size, .., 1: the
    ceil(i n / size)-th value, the min for i = 0; [] when n = 0."""
    return [max(-(-i * n // size), 1) for i in range(size + 1)] if n else []


def _picked(
    query: Query,
    c: str,
    table: str,
    where: str,
    params: list[Any],
    ranks: set[int],
    counted: bool = True,
) -> dict[int, Stat]:
    """rank -> (value, values below it, values at or below it) of the non-null values of column
    `c` of `table` sorted, at `ranks` (the counts 0 unless `counted`)."""
    counts = "rank() OVER w - 1, count(*) OVER w" if counted else "0, 0"
    return {
        r: (x, below, upto)
        for r, x, below, upto in query(
            f"SELECT * FROM (SELECT row_number() OVER w AS r, {c} AS x, {counts} "  # noqa: S608 - names are validated
            f"FROM {table} WHERE {where} AND {c} IS NOT NULL WINDOW w AS (ORDER BY {c})) "
            "WHERE r IN (SELECT unnest(?::BIGINT[]))",
            [*params, sorted(ranks)],
        )
    }


def dense_drift(
    query: Query,
    c: str,
    where: str,
    params: list[Any],
    tables: tuple[str, str],
    bins: int,
    size: int,
) -> DenseDrift:
    """The bins (`bins` quantile bins and "missing") and the grid (G = `size`; 0: no grid) of
    the quoted column `c` on the rows `where` (with `params`) of the reference and today's
    `tables`."""
    ref, cur = tables
    ((ref_rows, n, ref_var),) = query(
        f"SELECT count(*), count({c}), var_pop({c}) FROM {ref} WHERE {where}",  # noqa: S608
        params,
    )
    # quantile_cont's p-quantile interpolates the sorted values at 0-based (n - 1) * p
    spots = [((n - 1) * i / bins) for i in range(1, bins)] if n else []
    grid_ranks = levels(n, size) if size else []
    around = {*(int(h) + 1 for h in spots), *(min(int(h) + 2, n) for h in spots)}
    stats = _picked(query, c, ref, where, params, {*grid_ranks, *around})
    points = sorted({stats[r][0]: stats[r] for r in grid_ranks}.items())
    edges = _edges(stats, spots, n)
    cuts = {math.nextafter(x, -math.inf) for x in [*edges, *(x for x, _ in points)]}
    bounds = sorted(cuts | {x for x, _ in points})
    ((cur_rows, m, hist, cur_mean, cur_var),) = query(
        f"SELECT count(*), count({c}), histogram({c}, ?), avg({c}), var_pop({c}) "  # noqa: S608
        f"FROM {cur} WHERE {where}",
        [bounds or [0.0], *params],
    )
    upto = dict(zip(bounds, np.cumsum([(hist or {}).get(b, 0) for b in bounds]), strict=True))

    def below(x: float) -> int:  # today's values below x
        return int(upto.get(math.nextafter(x, -math.inf), 0))

    ordered = sorted(edges)
    ref_lt = np.array([0, *(edges[e] for e in ordered), n], dtype=np.float64)
    cur_lt = np.array([0, *(below(e) for e in ordered), m], dtype=np.float64)
    names = [_interval(ordered, i) for i in range(len(ordered) + 1)] + ["missing"]
    ref_c, cur_c = np.diff(ref_lt), np.diff(cur_lt)
    counts = (names, np.append(ref_c, ref_rows - n), np.append(cur_c, cur_rows - m))
    if not points or not m:
        return DenseDrift(counts, None)
    cur_ranks = levels(m, size)
    cur_values = _picked(query, c, cur, where, params, set(cur_ranks), counted=False)
    grid = Grid(
        points=np.array([x for x, _ in points], dtype=np.float64),
        ref_at=np.array([s[2] for _, s in points], dtype=np.float64) / n,
        ref_below=np.array([s[1] for _, s in points], dtype=np.float64) / n,
        cur_at=np.array([upto[x] for x, _ in points], dtype=np.float64) / m,
        cur_below=np.array([below(x) for x, _ in points], dtype=np.float64) / m,
        ref_quantiles=np.array([stats[r][0] for r in grid_ranks], dtype=np.float64),
        cur_quantiles=np.array([cur_values[r][0] for r in cur_ranks], dtype=np.float64),
        scale=_scale(ref_var, points[0][0], n, (m, cur_mean, cur_var)),
    )
    return DenseDrift(counts, grid)


def _edges(stats: dict[int, Stat], spots: list[float], n: int) -> dict[float, int]:
    """Each bin edge (the sorted values interpolated at the 0-based positions `spots`, as
    quantile_cont) -> the count of reference values below it."""
    edges: dict[float, int] = {}
    for h in spots:
        (a, a_below, a_upto), (b, b_below, _) = stats[int(h) + 1], stats[min(int(h) + 2, n)]
        e = float(a + (h - int(h)) * (b - a))
        # a and b are neighbours in the sorted values: none lies strictly between them
        edges[e] = a_below if e <= a else (a_upto if e < b else b_below)
    return edges


def _scale(ref_var: float, ref_value: float, n: int, today: tuple[int, float, float]) -> float:
    """The reference's standard deviation; when it is 0 (every reference value is `ref_value`),
    the pooled one of both sides, from today's (count, mean, variance)."""
    if ref_var > 0:
        return math.sqrt(ref_var)
    m, mean, var = today
    pooled = (n * ref_value + m * mean) / (n + m)
    return math.sqrt((n * (ref_value - pooled) ** 2 + m * (var + (mean - pooled) ** 2)) / (n + m))


def _interval(edges: list[float], i: int) -> str:
    lo = "-inf" if i == 0 else f"{edges[i - 1]:.4g}"
    hi = "inf" if i == len(edges) else f"{edges[i]:.4g}"
    return f"[{lo}, {hi})"

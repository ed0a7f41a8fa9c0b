"""Drift of one day against its trailing reference window, computed in DuckDB SQL over the lake.

Reads: impressions of ds and of the reference days (`checks.reference_days` before ds that exist),
and, when present, the DAS predictions of the same days. Both sides are loaded once into an
in-memory DuckDB database; every statistic comes from SQL aggregates and sorts (no per-row
Python).

Per scope (each vertical, and "all" pooled) and feature:
- PSI and Jensen-Shannon divergence on shared bins: dense features use the reference's quantiles as
  edges (`checks.dense_bins`; interpolated, as DuckDB's quantile_cont, from the sort that picks
  the KS grid below), categorical ones the reference's `top_k` ids plus "other"; a missing
  value is a bin of its own. Bin shares are smoothed, (count + 0.5) / (n + 0.5 * bins), so that an
  empty bin does not make PSI infinite. PSI = sum (q - p) ln(q / p); JS in bits (0..1). A
  reordering of a categorical (the same shares on other ids) moves the top ids' bins: PSI sees it.
- Kolmogorov-Smirnov statistic for dense features, max |F_ref - F_cur|, on a grid: the
  reference's quantiles Q(i/G) for i = 0..G (G = `checks.ks_grid`; Q(p) is the ceil(p n)-th
  smallest of n values, the smallest whose share at or below it is at least p; Q(0) the min),
  picked from one sort of the reference with the counts below and at or below each. Today's
  values are binned against the grid points in one aggregate (DuckDB's histogram), and the
  cumulative counts give both CDFs and their left limits F(g-) at every grid point. The grid
  statistic is never above the exact one, and at most the largest reference share strictly
  between two neighbouring grid points below it: under 1/G (0.001 at G = 1000), 0 when every
  reference value is a grid point. The bound is recorded with each result. Ties and point
  masses keep it: a value many rows hold is one grid point, and its left limit is compared too.
- Shift for dense features: the Wasserstein-1 distance of the two distributions (the area
  between their CDFs, in the feature's units) divided by the reference's standard deviation,
  so that it reads in reference standard deviations whatever the feature's scale: a mean shift
  of 0.25 sd is 0.25, a scale change by s about the median |s - 1| E|X - median| / sd (0.4 at
  s = 1.5 for a normal). W1 is the integral over [0, 1] of |Q_ref - Q_cur|, taken by trapezoids
  on the same levels i/G (today's quantiles from one sort of the day): within a step the gap
  moves at most by the larger rise of either quantile function, so the error is at most the
  sum of those rises / G, recorded as the bound (at most (range of ref + range of today) / G).
  A constant reference is scaled by the pooled standard deviation of both sides (two equal
  constants: 0).
- Label-rate shift: CTR / reference CTR - 1, with the two-proportion z-score.
- ID churn (`checks.id_features`): the share of today's rows whose id never appeared in the window.
- From the DAS: PSI of the FM's logits against the reference days' logits, and the FM's
  calibration on the day (mean predicted probability / CTR): the freshness gap made visible.

Each statistic is computed once per distinct set of rows: when one vertical is the only one on
both sides, its rows are all the rows, and the "all" scope reuses its values.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import duckdb
import numpy as np

from data_checks.dense import DenseDrift, Grid, dense_drift
from exfm.config_schema import ChecksConfig
from exfm.data.schema import FeatureSpec
from exfm.lake import DAS, IMPRESSIONS, Lake
from exfm.lineage import changes, current_id, partition_inputs, reference_days
from exfm.variants import POOLED

SMOOTHING = 0.5
ALL = POOLED
T = TypeVar("T")


def shares(counts: np.ndarray) -> np.ndarray:
    """Smoothed bin shares of a count vector (see the module docstring)."""
    counts = np.asarray(counts, dtype=np.float64)
    return (counts + SMOOTHING) / (counts.sum() + SMOOTHING * len(counts))


def psi(ref_counts: np.ndarray, cur_counts: np.ndarray) -> float:
    """Population stability index of the current bins against the reference bins."""
    p, q = shares(ref_counts), shares(cur_counts)
    return float(np.sum((q - p) * np.log(q / p)))


def js_divergence(ref_counts: np.ndarray, cur_counts: np.ndarray) -> float:
    """Jensen-Shannon divergence in bits (0 = same distribution, 1 = disjoint)."""
    p, q = shares(ref_counts), shares(cur_counts)
    m = (p + q) / 2
    return float((np.sum(p * np.log(p / m)) + np.sum(q * np.log(q / m))) / (2 * math.log(2)))


def reference_window(lake: Lake, ds: str, days: int) -> list[str]:
    """The trailing days before ds (at most `days`) that have impressions."""
    return reference_days(lake, ds, days)


def _quote(name: str) -> str:
    """A feature name as a SQL identifier (names are validated by the config: [a-z0-9_])."""
    return '"' + name.replace('"', "") + '"'


@dataclass
class Histogram:
    labels: list[str]
    ref: list[float]
    cur: list[float]


class Drift:
    """The reference window and the day, loaded into DuckDB; one method per statistic. Each
    statistic is computed once per (feature, rows): `_once` keys it by the rows its scope selects
    (`_rows_of`), so the "all" scope of a day with one vertical reuses that vertical's values."""

    def __init__(
        self, lake: Lake, spec: FeatureSpec, cfg: ChecksConfig, ds: str, reference: list[str]
    ) -> None:
        self.lake, self.spec, self.cfg, self.ds, self.reference = lake, spec, cfg, ds, reference
        self.con = duckdb.connect()
        self.con.register("cur_src", lake.dataset(IMPRESSIONS, ds=[ds]))
        self.con.execute("CREATE TEMP TABLE cur AS SELECT * FROM cur_src")
        if reference:
            self.con.register("ref_src", lake.dataset(IMPRESSIONS, ds=reference))
            self.con.execute("CREATE TEMP TABLE ref AS SELECT * FROM ref_src")
        self.has_das = False
        self._memo: dict[tuple[Any, ...], Any] = {}
        self._sole: dict[tuple[str, str], str | None] = {}

    def close(self) -> None:
        self.con.close()

    def _rows(self, sql: str, params: list[Any]) -> list[tuple]:
        return self.con.execute(sql, params).fetchall()

    # ---------------------------------------------------------------------------------- scopes

    def _where(self, scope: str) -> tuple[str, list[Any]]:
        if scope == ALL:
            return "TRUE", []
        return "vertical = ?", [scope]

    def _rows_of(self, scope: str, ref: str = "ref", cur: str = "cur") -> str:
        """The scope selecting the same rows as `scope` that statistics are keyed by: ALL for
        the only vertical of both tables (its rows are all the rows), else `scope`."""
        if scope == ALL:
            return ALL
        if (ref, cur) not in self._sole:
            verticals = {
                v
                for table in (ref, cur)
                for (v,) in self._rows(f"SELECT DISTINCT vertical FROM {table}", [])  # noqa: S608
            }
            self._sole[ref, cur] = verticals.pop() if len(verticals) == 1 else None
        return ALL if self._sole[ref, cur] == scope else scope

    def _once(
        self,
        key: tuple[Any, ...],
        scope: str,
        compute: Callable[[str], T],
        ref: str = "ref",
        cur: str = "cur",
    ) -> T:
        """compute(scope) the first time `key` is asked of these rows; the same value after."""
        rows = self._rows_of(scope, ref, cur)
        memo_key = (*key, ref, cur, rows)
        if memo_key not in self._memo:
            self._memo[memo_key] = compute(rows)
        return self._memo[memo_key]  # type: ignore[no-any-return]

    # --------------------------------------------------------------------------------- bins

    def dense_bins(
        self,
        column: str,
        scope: str,
        ref: str = "ref",
        cur: str = "cur",
    ) -> tuple[list[str], np.ndarray, np.ndarray]:
        """(bin names, reference counts, today's counts) on the reference's quantiles."""
        return self._dense(column, scope, ref, cur).bins

    def _dense(self, column: str, scope: str, ref: str = "ref", cur: str = "cur") -> DenseDrift:
        return self._once(
            ("dense", column), scope, lambda s: self._dense_drift(column, s, ref, cur), ref, cur
        )

    def _dense_drift(self, column: str, scope: str, ref: str, cur: str) -> DenseDrift:
        """The bins, and for the impressions' features the grid (the DAS's logits: PSI only)."""
        where, params = self._where(scope)
        grid = self.cfg.ks_grid if (ref, cur) == ("ref", "cur") else 0
        return dense_drift(
            self._rows, _quote(column), where, params, (ref, cur), self.cfg.dense_bins, grid
        )

    def categorical_bins(self, column: str, scope: str) -> tuple[list[str], np.ndarray, np.ndarray]:
        """(bin labels, reference counts, today's counts) of the reference's top ids."""
        return self._once(
            ("categorical_bins", column), scope, lambda s: self._categorical_bins(column, s)
        )

    def _categorical_bins(
        self, column: str, scope: str
    ) -> tuple[list[str], np.ndarray, np.ndarray]:
        where, wparams = self._where(scope)
        c = _quote(column)
        top = [
            r[0]
            for r in self._rows(
                f"SELECT {c} FROM ref WHERE {where} AND {c} IS NOT NULL "  # noqa: S608
                f"GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT ?",
                [*wparams, self.cfg.top_k],
            )
        ]
        labels = [*[str(t) for t in top], "other", "missing"]
        exact = f"histogram_exact({c}, ?)" if top else "NULL"
        counts = {"ref": np.zeros(len(labels)), "cur": np.zeros(len(labels))}
        for side, rows, n, hist in self._rows(
            f"SELECT side, count(*), count({c}), {exact} FROM ("  # noqa: S608
            f"SELECT 'ref' AS side, {c} FROM ref WHERE {where} "
            f"UNION ALL SELECT 'cur', {c} FROM cur WHERE {where}) GROUP BY side",
            [*([top] if top else []), *wparams, *wparams],
        ):
            ids = [(hist or {}).get(t, 0) for t in top]
            counts[side][:] = [*ids, n - sum(ids), rows - n]
        return labels, counts["ref"], counts["cur"]

    # ----------------------------------------------------------------------------- statistics

    def grid(self, column: str, scope: str) -> Grid | None:
        """Both sides of a dense feature on the grid of the reference's quantiles (the
        module docstring); None when either side has no value of it."""
        return self._dense(column, scope).grid

    def ks(self, column: str, scope: str) -> float:
        """Kolmogorov-Smirnov statistic on the grid (0 when a side has no value)."""
        grid = self.grid(column, scope)
        return grid.ks() if grid is not None else 0.0

    def shift(self, column: str, scope: str) -> float:
        """Wasserstein-1 / the reference's standard deviation (0 when a side has no value)."""
        grid = self.grid(column, scope)
        return grid.shift() if grid is not None else 0.0

    def label_shift(self, scope: str) -> dict[str, float | None]:
        return label_shift(*self.clicks("ref", scope), *self.clicks("cur", scope))

    def clicks(self, side: str, scope: str) -> tuple[int, int]:
        """(rows, clicks) of the reference window (side "ref") or of the day ("cur")."""
        if side not in ("ref", "cur"):
            raise ValueError(f"side must be ref or cur, got {side!r}")
        return self._once(("clicks", side), scope, lambda s: self._clicks(side, s))

    def _clicks(self, side: str, scope: str) -> tuple[int, int]:
        where, wparams = self._where(scope)
        ((n, k),) = self._rows(f"SELECT count(*), sum(label) FROM {side} WHERE {where}", wparams)  # noqa: S608
        return int(n), int(k or 0)

    def churn(self, column: str, scope: str) -> float:
        """The share of today's rows whose id the reference window never saw."""
        return self._once(("churn", column), scope, lambda s: self._churn(column, s))

    def _churn(self, column: str, scope: str) -> float:
        where, wparams = self._where(scope)
        c = _quote(column)
        value = self._rows(
            f"SELECT avg(CASE WHEN s.id IS NULL THEN 1.0 ELSE 0.0 END) FROM cur "  # noqa: S608
            f"LEFT JOIN (SELECT DISTINCT {c} AS id FROM ref WHERE {where}) AS s "
            f"ON cur.{c} = s.id WHERE {where.replace('vertical', 'cur.vertical')} "
            f"AND cur.{c} IS NOT NULL",
            [*wparams, *wparams],
        )[0][0]
        return float(value) if value is not None else 0.0

    def rows(self, scope: str) -> tuple[int, float]:
        """(rows today, mean rows a day in the reference window)."""
        today, _ = self.clicks("cur", scope)
        ref, _ = self.clicks("ref", scope)
        return today, ref / max(len(self.reference), 1)

    # --------------------------------------------------------------------------------- FM

    def load_das(self) -> bool:
        """Register today's and the reference days' FM predictions (newest version of each day).
        Returns False when today has none."""
        today = _newest_versions(self.lake, [self.ds])
        past = _newest_versions(self.lake, self.reference)
        if not today or not past:
            return False
        for name, versions in (("das_cur", today), ("das_ref", past)):
            tables = [
                self.lake.read(
                    DAS, fm_version=[v], ds=[d], columns=["example_id", "vertical", "fm_logit"]
                )
                for d, v in versions.items()
            ]
            self.con.register(f"{name}_src", _concat(tables))
            self.con.execute(f"CREATE TEMP TABLE {name} AS SELECT * FROM {name}_src")  # noqa: S608
        self.has_das = True
        self.fm_versions = today
        return True

    def fm_calibration(self, scope: str) -> float | None:
        """The FM's mean predicted probability / the CTR on the day (None without clicks)."""
        return self._once(("fm_calibration",), scope, self._fm_calibration, "das_ref", "das_cur")

    def _fm_calibration(self, scope: str) -> float | None:
        where, wparams = self._where(scope)
        where = where.replace("vertical", "c.vertical")
        row = self._rows(
            "SELECT avg(1 / (1 + exp(-d.fm_logit))), avg(c.label) FROM cur AS c "  # noqa: S608
            f"JOIN das_cur AS d USING (example_id, vertical) WHERE {where}",
            wparams,
        )[0]
        if row[0] is None or not row[1]:
            return None
        return float(row[0] / row[1])


def _newest_versions(lake: Lake, days: list[str]) -> dict[str, str]:
    """day -> the newest FM version that scored it (by the version's training day) among the
    current ones: made from the impressions the lake holds now by a snapshot the registry
    still holds (exfm/lineage.py); stale predictions are left out."""
    out: dict[str, str] = {}
    for p in lake.partitions(DAS, ds=days) if days else []:
        if p["fm_version"] > out.get(p["ds"], "") and _current(lake, p):
            out[p["ds"]] = p["fm_version"]
    return out


def _current(lake: Lake, values: dict[str, str]) -> bool:
    recorded = partition_inputs(lake, DAS, values)
    if recorded is None:
        return False
    now = {**lake.content_ids(IMPRESSIONS, ds=[values["ds"]])}
    now.update({k: current_id(lake, k) for k in recorded if not k.startswith("impressions/")})
    return not changes(lake, recorded, now)  # type: ignore[arg-type]


def _concat(tables: list) -> Any:
    import pyarrow as pa

    return pa.concat_tables(tables)


def label_shift(
    n_ref: int, clicks_ref: int, n_cur: int, clicks_cur: int
) -> dict[str, float | None]:
    """Relative CTR change and its two-proportion z-score (None without data)."""
    if not n_ref or not n_cur or not clicks_ref:
        return {
            "ctr": clicks_cur / n_cur if n_cur else None,
            "ref_ctr": None,
            "shift": None,
            "z": None,
        }
    p_r, p_c = clicks_ref / n_ref, clicks_cur / n_cur
    pooled = (clicks_ref + clicks_cur) / (n_ref + n_cur)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_ref + 1 / n_cur))
    return {
        "ctr": p_c,
        "ref_ctr": p_r,
        "shift": p_c / p_r - 1,
        "z": (p_c - p_r) / se if se > 0 else 0.0,
    }

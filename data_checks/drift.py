"""Drift of one day against its trailing reference window, computed in DuckDB SQL over the lake.

Reads: impressions of ds and of the reference days (`checks.reference_days` before ds that exist),
and, when present, the DAS predictions of the same days. Both sides are loaded once into an
in-memory DuckDB database; every statistic is a SQL aggregate (no per-row Python).

Per scope (each vertical, and "all" pooled) and feature:
- PSI and Jensen-Shannon divergence on shared bins: dense features use the reference's quantiles as
  edges (`checks.dense_bins`), categorical ones the reference's `top_k` ids plus "other"; a missing
  value is a bin of its own. Bin shares are smoothed, (count + 0.5) / (n + 0.5 * bins), so that an
  empty bin does not make PSI infinite. PSI = sum (q - p) ln(q / p); JS in bits (0..1).
- Kolmogorov-Smirnov statistic for dense features: max |F_ref - F_cur| over every observed value.
- Label-rate shift: CTR / reference CTR - 1, with the two-proportion z-score.
- ID churn (`checks.id_features`): the share of today's rows whose id never appeared in the window.
- From the DAS: PSI of the FM's logits against the reference days' logits, and the FM's
  calibration on the day (mean predicted probability / CTR): the freshness gap made visible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np

from exfm.config_schema import ChecksConfig
from exfm.data.schema import FeatureSpec
from exfm.lake import DAS, IMPRESSIONS, Lake
from exfm.lineage import changes, current_id, partition_inputs, reference_days
from exfm.variants import POOLED

SMOOTHING = 0.5
ALL = POOLED


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
    """The reference window and the day, loaded into DuckDB; one method per statistic."""

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

    def close(self) -> None:
        self.con.close()

    def _rows(self, sql: str, params: list[Any]) -> list[tuple]:
        return self.con.execute(sql, params).fetchall()

    # --------------------------------------------------------------------------------- bins

    def _where(self, scope: str) -> tuple[str, list[Any]]:
        if scope == ALL:
            return "TRUE", []
        return "vertical = ?", [scope]

    def _bin_counts(
        self,
        expr: str,
        params: list[Any],
        scope: str,
        labels: list[str],
        ref: str = "ref",
        cur: str = "cur",
    ) -> tuple[np.ndarray, np.ndarray]:
        """Counts of each bin label (the SQL `expr` maps a row to its label) on both sides."""
        where, wparams = self._where(scope)
        rows = self._rows(
            f"SELECT side, bin, count(*) FROM ("  # noqa: S608 - expr is built from validated names
            f" SELECT 'ref' AS side, {expr} AS bin FROM {ref} WHERE {where}"
            f" UNION ALL SELECT 'cur', {expr} FROM {cur} WHERE {where}) GROUP BY side, bin",
            [*params, *wparams, *params, *wparams],
        )
        index = {label: i for i, label in enumerate(labels)}
        counts = {"ref": np.zeros(len(labels)), "cur": np.zeros(len(labels))}
        for side, label, n in rows:
            counts[side][index[str(label)]] += n
        return counts["ref"], counts["cur"]

    def dense_bins(
        self,
        column: str,
        scope: str,
        ref: str = "ref",
        cur: str = "cur",
    ) -> tuple[list[str], np.ndarray, np.ndarray]:
        where, wparams = self._where(scope)
        probs = [i / self.cfg.dense_bins for i in range(1, self.cfg.dense_bins)]
        q = self._rows(
            f"SELECT quantile_cont({_quote(column)}, ?) FROM {ref} "  # noqa: S608
            f"WHERE {where} AND {_quote(column)} IS NOT NULL",
            [probs, *wparams],
        )[0][0]
        edges = sorted({float(e) for e in (q or [])})
        cases = " ".join(f"WHEN {_quote(column)} < ? THEN '{i}'" for i in range(len(edges)))
        expr = f"CASE WHEN {_quote(column)} IS NULL THEN 'missing' {cases} ELSE '{len(edges)}' END"
        labels = [str(i) for i in range(len(edges) + 1)] + ["missing"]
        names = [_interval(edges, i) for i in range(len(edges) + 1)] + ["missing"]
        ref_c, cur_c = self._bin_counts(expr, edges, scope, labels, ref, cur)
        return names, ref_c, cur_c

    def categorical_bins(self, column: str, scope: str) -> tuple[list[str], np.ndarray, np.ndarray]:
        where, wparams = self._where(scope)
        top = [
            r[0]
            for r in self._rows(
                f"SELECT {_quote(column)} FROM ref WHERE {where} AND {_quote(column)} IS NOT NULL "  # noqa: S608
                f"GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT ?",
                [*wparams, self.cfg.top_k],
            )
        ]
        expr = (
            f"CASE WHEN {_quote(column)} IS NULL THEN 'missing' "
            f"WHEN list_contains(?, {_quote(column)}) THEN CAST({_quote(column)} AS VARCHAR) "
            f"ELSE 'other' END"
        )
        labels = [*[str(t) for t in top], "other", "missing"]
        ref_c, cur_c = self._bin_counts(expr, [top], scope, labels)
        return labels, ref_c, cur_c

    # ----------------------------------------------------------------------------- statistics

    def ks(self, column: str, scope: str) -> float:
        where, wparams = self._where(scope)
        c = _quote(column)
        value = self._rows(
            f"WITH a AS (SELECT {c} AS x, 1 AS r FROM ref WHERE {where} AND {c} IS NOT NULL "  # noqa: S608
            f" UNION ALL SELECT {c}, 0 FROM cur WHERE {where} AND {c} IS NOT NULL),"
            " g AS (SELECT x, sum(r) AS nr, sum(1 - r) AS nc FROM a GROUP BY x),"
            " t AS (SELECT sum(nr) AS tr, sum(nc) AS tc FROM g),"
            " c AS (SELECT sum(nr) OVER (ORDER BY x) AS cr, sum(nc) OVER (ORDER BY x) AS cc FROM g)"
            " SELECT max(abs(cr / tr - cc / tc)) FROM c, t WHERE tr > 0 AND tc > 0",
            [*wparams, *wparams],
        )[0][0]
        return float(value) if value is not None else 0.0

    def label_shift(self, scope: str) -> dict[str, float | None]:
        return label_shift(*self.clicks("ref", scope), *self.clicks("cur", scope))

    def clicks(self, side: str, scope: str) -> tuple[int, int]:
        """(rows, clicks) of the reference window (side "ref") or of the day ("cur")."""
        if side not in ("ref", "cur"):
            raise ValueError(f"side must be ref or cur, got {side!r}")
        where, wparams = self._where(scope)
        ((n, k),) = self._rows(f"SELECT count(*), sum(label) FROM {side} WHERE {where}", wparams)  # noqa: S608
        return int(n), int(k or 0)

    def churn(self, column: str, scope: str) -> float:
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
        where, wparams = self._where(scope)
        today = self._rows(f"SELECT count(*) FROM cur WHERE {where}", wparams)[0][0]  # noqa: S608
        ref = self._rows(f"SELECT count(*) FROM ref WHERE {where}", wparams)[0][0]  # noqa: S608
        return int(today), ref / max(len(self.reference), 1)

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


def _interval(edges: list[float], i: int) -> str:
    lo = "-inf" if i == 0 else f"{edges[i - 1]:.4g}"
    hi = "inf" if i == len(edges) else f"{edges[i]:.4g}"
    return f"[{lo}, {hi})"


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

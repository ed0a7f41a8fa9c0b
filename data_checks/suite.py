"""Great Expectations suites built in code from the feature spec and the `checks` params (no GX
YAML/JSON stores), run in an ephemeral context on each (ds, vertical) partition of a day.

Expectations of the partition of vertical v:
- the columns of the lake schema exist, with their dtypes (ids int64 or text, label int8,
  categorical int64, dense float32);
- example_id, ts and label are never null; each feature v has is null in at most
  `checks.max_null_fraction` of the rows (an all-null feature fails);
- label is 0 or 1; example_id is unique; vertical is v and one of the configured verticals;
- dense features lie in `checks.dense_ranges`;
- with a reference window: the row count and the CTR within `checks.rows_ratio` /
  `checks.ctr_ratio` of the window's daily mean and CTR, or within the sampling interval of the
  count at `checks.confidence` (`Bands`), whichever is wider: a day fails only on a change that is
  both large and clear from its counts. A vertical of 2,000 rows and 16 expected clicks sees 7 or
  28 clicks by chance; at 200,000 rows the ratio band is the wider one and decides.
Each result names the expectation, the column, what was observed and a few unexpected values.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd
import pyarrow as pa

from data_checks.records import CheckResult
from exfm.config_schema import ChecksConfig
from exfm.data.schema import FeatureSpec

log = logging.getLogger(__name__)

_ID_TYPES = ["Int64Dtype", "int64", "object", "str", "string"]
_INT64 = ["Int64Dtype", "int64"]


@dataclass(frozen=True)
class Bands:
    """A vertical's reference window: its days, rows and clicks (all 0 without one), and what a
    day of that vertical may hold.

    Rows: the ratio band around the window's mean a day, widened to the `confidence` interval of
    a Poisson count whose rate is known from the window (the negative binomial predictive of a
    Gamma(rows + 1/2, days) rate: the window's own noise counts too). Clicks: the ratio band
    around the window's CTR, widened to the interval of today's clicks in today's rows under
    that CTR (the beta-binomial predictive of a Beta(clicks + 1/2, rows - clicks + 1/2) rate).
    The bounds are half a count outside the interval's ends, so the float mean of an allowed
    count never falls out by rounding."""

    days: int = 0
    rows: int = 0
    clicks: int = 0

    @property
    def ctr(self) -> float | None:
        return self.clicks / self.rows if self.rows and self.clicks else None

    def row_bounds(self, cfg: ChecksConfig) -> tuple[int, int] | None:
        """[min, max] rows of a day; None without a window."""
        if not self.days or not self.rows:
            return None
        mean = self.rows / self.days
        lo, hi = int(mean * cfg.rows_ratio[0]), int(mean * cfg.rows_ratio[1]) + 1
        if cfg.confidence:
            from scipy import stats

            tail = (1 - cfg.confidence) / 2
            q_lo, q_hi = stats.nbinom(self.rows + 0.5, self.days / (self.days + 1)).ppf(
                [tail, 1 - tail]
            )
            lo, hi = min(lo, int(q_lo)), max(hi, int(q_hi))
        return lo, hi

    def ctr_bounds(self, rows: int, cfg: ChecksConfig) -> tuple[float, float] | None:
        """[min, max] CTR of a day of `rows` rows; None without a window or without clicks."""
        ctr = self.ctr
        if ctr is None or not rows:
            return None
        lo, hi = ctr * cfg.ctr_ratio[0], min(ctr * cfg.ctr_ratio[1], 1.0)
        if cfg.confidence:
            from scipy import stats

            tail = (1 - cfg.confidence) / 2
            k_lo, k_hi = stats.betabinom(
                rows, self.clicks + 0.5, self.rows - self.clicks + 0.5
            ).ppf([tail, 1 - tail])
            lo = min(lo, max(float(k_lo) - 0.5, 0.0) / rows)
            hi = max(hi, min(float(k_hi) + 0.5, rows) / rows)
        return lo, hi


class SuiteRunner:
    """One ephemeral GX context for a check run; `run` validates one partition."""

    def __init__(self, spec: FeatureSpec, cfg: ChecksConfig) -> None:
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        self.gx = gx
        self.spec, self.cfg = spec, cfg
        self.context = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False)
        source = self.context.data_sources.add_pandas("exfm_partitions")
        self.batch = source.add_dataframe_asset("partition").add_batch_definition_whole_dataframe(
            "whole"
        )
        self._count = 0

    def expectations(self, vertical: str, bands: Bands, rows: int) -> list[Any]:
        """The suite of a partition of `rows` rows of `vertical`."""
        import great_expectations.expectations as gxe

        spec, cfg = self.spec, self.cfg
        available = {f.name for f in spec.available(vertical)}
        columns = ["example_id", "ts", "label", *spec.names, "ds", "vertical"]
        out: list[Any] = [
            gxe.ExpectTableColumnsToMatchSet(column_set=columns, exact_match=False),
            gxe.ExpectColumnValuesToBeInTypeList(column="example_id", type_list=_ID_TYPES),
            gxe.ExpectColumnValuesToBeInTypeList(column="label", type_list=["int8"]),
            gxe.ExpectColumnValuesToNotBeNull(column="example_id"),
            gxe.ExpectColumnValuesToNotBeNull(column="ts"),
            gxe.ExpectColumnValuesToNotBeNull(column="label"),
            gxe.ExpectColumnValuesToBeInSet(column="label", value_set=[0, 1]),
            gxe.ExpectColumnValuesToBeUnique(column="example_id"),
            gxe.ExpectColumnValuesToBeInSet(column="vertical", value_set=[vertical]),
            gxe.ExpectColumnValuesToBeInSet(column="vertical", value_set=list(spec.verticals)),
        ]
        for feat in spec.features:
            types = _INT64 if feat.is_categorical else ["float32"]
            out.append(gxe.ExpectColumnValuesToBeInTypeList(column=feat.name, type_list=types))
            if feat.name in available:
                out.append(
                    gxe.ExpectColumnValuesToNotBeNull(
                        column=feat.name, mostly=max(1.0 - cfg.max_null_fraction, 1e-9)
                    )
                )
        for name, (lo, hi) in cfg.dense_ranges.items():
            if name in available:
                out.append(
                    gxe.ExpectColumnValuesToBeBetween(column=name, min_value=lo, max_value=hi)
                )
        row_bounds = bands.row_bounds(cfg)
        if row_bounds:
            lo, hi = row_bounds
            out.append(gxe.ExpectTableRowCountToBeBetween(min_value=lo, max_value=hi))
        ctr_bounds = bands.ctr_bounds(rows, cfg)
        if ctr_bounds:
            lo, hi = ctr_bounds
            out.append(gxe.ExpectColumnMeanToBeBetween(column="label", min_value=lo, max_value=hi))
        return out

    def run(self, table: pa.Table, vertical: str, bands: Bands) -> list[CheckResult]:
        """Validate one partition (with its ds and vertical columns); one result per expectation."""
        self._count += 1
        # every expectation at construction: adding them one by one re-serializes the whole
        # suite into the (in-memory) store each time, which costs seconds
        suite = self.context.suites.add(
            self.gx.ExpectationSuite(
                name=f"impressions_{vertical}_{self._count}",
                expectations=self.expectations(vertical, bands, table.num_rows),
            )
        )
        validation = self.context.validation_definitions.add(
            self.gx.ValidationDefinition(
                name=f"validate_{vertical}_{self._count}", data=self.batch, suite=suite
            )
        )
        frame = table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)
        result = validation.run(batch_parameters={"dataframe": frame})
        out = [_describe(r, vertical) for r in result.results]
        for i, r in enumerate(out):
            if r.status == "fail" and (note := self._bands_note(r.check, bands)):
                out[i] = replace(r, message=f"{r.message} ({note})")
        return out

    def _bands_note(self, check: str, bands: Bands) -> str:
        """How the rows or CTR bounds were made, for the failure message."""
        cfg = self.cfg
        interval = f", or the {cfg.confidence * 100:g}% sampling interval" if cfg.confidence else ""
        if check == "expect_table_row_count_to_be_between":
            return (
                f"{_range(cfg.rows_ratio)} x the reference's {bands.rows / bands.days:,.0f} "
                f"rows a day{interval}"
            )
        if check == "expect_column_mean_to_be_between" and bands.ctr is not None:
            return (
                f"{_range(cfg.ctr_ratio)} x the reference CTR {bands.ctr:.4g} "
                f"({bands.clicks:,} clicks in {bands.rows:,} rows){interval}"
            )
        return ""


def _range(pair: tuple[float, ...]) -> str:
    return f"[{pair[0]:g}, {pair[1]:g}]"


def _describe(result: Any, vertical: str) -> CheckResult:
    cfg = result.expectation_config
    details = result.result or {}
    error = (
        (result.exception_info or {}).get("exception_message")
        if (result.exception_info or {}).get("raised_exception")
        else None
    )
    examples = [_plain(v) for v in (details.get("partial_unexpected_list") or [])[:5]]
    observed = details.get("observed_value")
    kwargs = {
        k: _plain(v)
        for k, v in cfg.kwargs.items()
        if k not in ("batch_id", "column", "column_set", "value_set", "type_list")
    }
    message = error or _message(cfg.type, details, examples, observed, kwargs)
    return CheckResult(
        kind="suite",
        scope=vertical,
        check=cfg.type,
        feature=cfg.kwargs.get("column"),
        status="pass" if result.success else "fail",
        value=_plain(observed if observed is not None else details.get("unexpected_count")),
        message=message,
        details={"examples": examples, "bounds": kwargs},
    )


def _message(
    kind: str, details: dict[str, Any], examples: list[Any], observed: Any, bounds: dict[str, Any]
) -> str:
    """What failed, with the observed value and the bounds it had to keep."""
    allowed = _allowed(bounds)
    if details.get("unexpected_count"):
        pct = details.get("unexpected_percent") or 0.0
        return (
            f"{details['unexpected_count']} unexpected values ({pct:.2f}%), for example {examples}"
            + (f"; allowed {allowed}" if allowed else "")
        )
    if kind == "expect_table_columns_to_match_set" and details.get("details"):
        mismatched = details["details"].get("mismatched", {})
        return f"missing columns {mismatched.get('missing', [])}"
    return f"observed {_plain(observed)}" + (f"; allowed {allowed}" if allowed else "")


def _allowed(bounds: dict[str, Any]) -> str:
    """`[min, max]` (or `>= min`, `<= max`) of an expectation's kwargs; '' when it has none."""
    lo, hi = (_short(bounds.get(k)) for k in ("min_value", "max_value"))
    if lo is not None and hi is not None:
        return f"[{lo}, {hi}]"
    if lo is not None:
        return f">= {lo}"
    return f"<= {hi}" if hi is not None else ""


def _short(x: Any) -> str | None:
    if x is None:
        return None
    return f"{x:.6g}" if isinstance(x, float) else str(x)


def _plain(value: Any) -> Any:
    """JSON-friendly scalars (numpy numbers, NaN/NA, timestamps)."""
    if value is None:
        return None
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, str | int | float | bool):
        return value
    return str(value)

"""The daily gate: run the suite and the drift statistics of a day, grade every result against its
thresholds (pass / warn / fail), store the results, write the drift report, and stop the day's
training when anything failed. The verdict is a function of the impressions alone: the FM-score
checks (from the DAS, when the day has current predictions) are advisory, at most a warning.

Stored in the lake: `checks/ds=D/result.json` (everything, for the report and for people) and the
parquet partition `checks/ds=D/` (one row per check, for `exfm sql "select * from checks"`).

Each result records the content ids of the impressions it checked (`inputs`: every vertical of the
day and of its reference days, exfm/lineage.py). Training and scoring stages call
`require_pass(cfg, lake, ds)`: a stored failing result stops them with the list of failing checks
and the report's location; a day with no result, or whose result was made on impressions that are
no longer the lake's (re-landed, a vertical added, a day landed into the window), is not checked:
refused, or trained with a warning, per `checks.unchecked`.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import duckdb
import pyarrow as pa

from data_checks.drift import ALL, Drift, js_divergence, psi
from data_checks.records import SEVERITY, CheckResult, DayChecks, RecordError
from data_checks.suite import Bands, SuiteRunner
from exfm import ids
from exfm.config import Config
from exfm.config_schema import ThresholdConfig
from exfm.data.schema import FeatureSpec
from exfm.errors import ExfmError, LakeError
from exfm.lake import CHECKS, IMPRESSIONS, Lake
from exfm.lineage import changes, describe_changes, inputs_metadata, reference_days

log = logging.getLogger(__name__)
__all__ = ["SEVERITY", "CheckFailed", "NotChecked", "check_day", "load_result", "require_pass"]
# The FM's scores on the day (from the DAS) are shown when the day has current predictions, but
# they never gate it: the day is usually checked before it is scored, so a verdict that counted
# them would depend on when the check ran, not on the impressions it records.
ADVISORY = "advisory: the FM's scores, shown but not gating the day"
HISTOGRAMS = 3  # the report shows the reference-vs-today histograms of this many features


class CheckFailed(ExfmError):
    """A day failed its checks; its training must not run."""


class NotChecked(CheckFailed):
    """A day has no check result of its current impressions (checks.unchecked = refuse)."""


def result_key(ds: str) -> str:
    return f"checks/ds={ids.ds(ds)}/result.json"


def grade(value: float | None, threshold: ThresholdConfig) -> str:
    if value is None:
        return "pass"
    if value >= threshold.fail:
        return "fail"
    return "warn" if value >= threshold.warn else "pass"


def check_day(cfg: Config, lake: Lake, ds: str, report: bool = True) -> DayChecks:
    """Check day ds, store the results and the report (unless not `report`: a range writes its
    pages once, at its end); returns the day's record (module doc).

    A check that cannot run (a corrupt or unreadable partition) is not a pass: the day's stored
    result, if any, is removed (the gate then treats the day as never checked) and the error
    names the file."""
    result = evaluate(cfg, lake, ds)
    inputs = result.inputs
    moved = changes(lake, inputs, check_inputs(cfg, lake, ds)[1])
    if moved:
        raise LakeError(
            f"the impressions of ds={ds} changed while they were checked "
            f"({describe_changes(moved)}); nothing was stored: check the day again"
        )
    _store(lake, result)
    from data_checks.report import report_uri, write_reports

    result.report = write_reports(cfg, lake, ds) if report else report_uri(lake, ds)
    warnings = result.with_status("warn")
    for r in warnings:
        log.warning("check %s warns: %s", ds, r.describe())
    log.info(
        "check %s: %s (%d fail, %d warn) in %.1f s; report %s",
        ds,
        result.status,
        len(result.with_status("fail")),
        len(warnings),
        result.seconds,
        result.report,
    )
    return result


def evaluate(cfg: Config, lake: Lake, ds: str) -> DayChecks:
    """The graded checks of day ds, stored nowhere (`check_day` stores them); a check that cannot
    run removes the day's stored result (see check_day)."""
    started = time.perf_counter()
    spec = FeatureSpec.from_config(cfg.features)
    try:
        reference, inputs = check_inputs(cfg, lake, ids.ds(ds))
        today = [p["vertical"] for p in lake.partitions(IMPRESSIONS, ds=[ds])]
        result = DayChecks(ds=ds, reference_days=reference, verticals=today, inputs=inputs)
        if not today:
            result.add(
                CheckResult.graded(
                    "rows", ALL, "rows", None, 0, None, "fail", f"no impressions for ds={ds}"
                )
            )
        else:
            _run(cfg, lake, spec, ds, reference, today, result)
    except (LakeError, duckdb.Error, pa.ArrowException, OSError) as e:
        removed = _forget(lake, ds)
        why = _unreadable(cfg, lake, ds) or " ".join(str(e).split())
        raise LakeError(
            f"ds={ds} cannot be checked: {why}"
            + (
                "; its earlier check result was removed (a check that cannot run is not a pass)"
                if removed
                else ""
            )
        ) from e
    result.grade()
    result.seconds = round(time.perf_counter() - started, 3)
    return result


def _run(
    cfg: Config,
    lake: Lake,
    spec: FeatureSpec,
    ds: str,
    reference: list[str],
    today: list[str],
    result: DayChecks,
) -> None:
    checks = cfg.checks
    drift = Drift(lake, spec, checks, ds, reference)
    try:
        expected = (
            sorted(set(today) | {p["vertical"] for p in lake.partitions(IMPRESSIONS, ds=reference)})
            if reference
            else today
        )
        runner = SuiteRunner(spec, checks)
        for vertical in expected:
            bands = Bands(len(reference), *drift.clicks("ref", vertical)) if reference else Bands()
            if vertical not in today:
                # a vertical seen a few times a week may miss a day by chance
                lo, hi = bands.row_bounds(checks) or (1, None)
                result.add(
                    CheckResult.graded(
                        "rows",
                        vertical,
                        "rows",
                        None,
                        0,
                        None,
                        "fail" if lo > 0 else "pass",
                        f"vertical {vertical} has no rows on {ds} (reference mean "
                        f"{bands.rows / max(bands.days, 1):.1f} a day; allowed [{lo}, {hi}])",
                    )
                )
                continue
            table = lake.read_partition(IMPRESSIONS, {"ds": ds, "vertical": vertical})
            result.extend(runner.run(table, vertical, bands))
        if reference:
            drift_checks(drift, spec, cfg, [*today, ALL], result)
    finally:
        drift.close()


def drift_checks(
    drift: Drift, spec: FeatureSpec, cfg: Config, scopes: list[str], result: DayChecks
) -> None:
    checks, out = cfg.checks, result.results
    for scope in scopes:
        shift = drift.label_shift(scope)
        value = abs(shift["shift"]) if shift["shift"] is not None else None
        clear = shift["z"] is not None and abs(shift["z"]) >= checks.label_shift_min_z
        out.append(
            CheckResult.graded(
                "label",
                scope,
                "label_shift",
                "label",
                value,
                checks.label_shift,
                grade(value, checks.label_shift) if clear else "pass",
                f"CTR {_pct(shift['ctr'])} vs {_pct(shift['ref_ctr'])} (z = "
                f"{shift['z'] if shift['z'] is None else round(shift['z'], 1)})",
                ctr=shift["ctr"],
                ref_ctr=shift["ref_ctr"],
                z=shift["z"],
            )
        )
        features = spec.features if scope == ALL else spec.available(scope)
        for feat in features:
            if feat.is_categorical:
                labels, ref_c, cur_c = drift.categorical_bins(feat.name, scope)
            else:
                labels, ref_c, cur_c = drift.dense_bins(feat.name, scope)
                out.extend(_grid_results(drift, cfg, feat.name, scope))
            p, j = psi(ref_c, cur_c), js_divergence(ref_c, cur_c)
            # ids come and go every day (new users and ads): their shares shift by design, so
            # their drift is shown but graded by the churn check
            is_id = feat.name in checks.id_features
            note = "ids churn by design: graded by the churn check" if is_id else ""
            out.append(
                CheckResult.graded(
                    "drift",
                    scope,
                    "psi",
                    feat.name,
                    p,
                    checks.psi,
                    "pass" if is_id else grade(p, checks.psi),
                    note,
                )
            )
            out.append(
                CheckResult.graded(
                    "drift",
                    scope,
                    "js",
                    feat.name,
                    j,
                    checks.js,
                    "pass" if is_id else grade(j, checks.js),
                    note,
                )
            )
            if scope == ALL and not is_id:
                result.histograms[feat.name] = {
                    "labels": labels,
                    "ref": _norm(ref_c),
                    "cur": _norm(cur_c),
                    "psi": p,
                }
        for name in checks.id_features:
            if scope == ALL or spec.feature(name) in spec.available(scope):
                value = drift.churn(name, scope)
                out.append(
                    CheckResult.graded(
                        "churn",
                        scope,
                        "churn",
                        name,
                        value,
                        checks.churn,
                        grade(value, checks.churn),
                        f"{value:.1%} of the rows have a {name} unseen in the window",
                    )
                )
    top = sorted(result.histograms.items(), key=lambda kv: -kv[1]["psi"])[:HISTOGRAMS]
    result.histograms = dict(top)
    if drift.load_das():
        result.fm_versions = drift.fm_versions
        for scope in scopes:
            _, ref_c, cur_c = drift.dense_bins("fm_logit", scope, "das_ref", "das_cur")
            p = psi(ref_c, cur_c)
            out.append(
                CheckResult.graded(
                    "fm",
                    scope,
                    "fm_score_psi",
                    "fm_logit",
                    p,
                    checks.fm_score_psi,
                    _advisory(grade(p, checks.fm_score_psi)),
                    ADVISORY,
                    advisory=True,
                )
            )
            calibration = drift.fm_calibration(scope)
            error = None if calibration is None else abs(calibration - 1)
            out.append(
                CheckResult.graded(
                    "fm",
                    scope,
                    "fm_calibration",
                    "fm_logit",
                    error,
                    checks.fm_calibration,
                    _advisory(grade(error, checks.fm_calibration)),
                    f"FM mean prediction / CTR = {calibration}; {ADVISORY}",
                    calibration=calibration,
                    advisory=True,
                )
            )


def _grid_results(drift: Drift, cfg: Config, feature: str, scope: str) -> list[CheckResult]:
    """KS and shift of a dense feature, with how far each may be from its exact value."""
    checks, grid = cfg.checks, drift.grid(feature, scope)
    if grid is None:  # no value on a side: nothing to compare
        return [
            CheckResult.graded("drift", scope, name, feature, 0.0, limits, "pass", "no values")
            for name, limits in (("ks", checks.ks), ("shift", checks.shift))
        ]
    on = f"on the reference's quantiles at 1/{checks.ks_grid} steps ({len(grid.points)} values)"
    ks, ks_bound = grid.ks(), grid.ks_bound()
    shift, shift_bound = grid.shift(), grid.shift_bound()
    return [
        CheckResult.graded(
            "drift",
            scope,
            "ks",
            feature,
            ks,
            checks.ks,
            grade(ks, checks.ks),
            f"KS {on}: "
            + (f"at most {ks_bound:.2g} below the exact value" if ks_bound else "exact"),
            bound=round(ks_bound, 6),
        ),
        CheckResult.graded(
            "drift",
            scope,
            "shift",
            feature,
            shift,
            checks.shift,
            grade(shift, checks.shift),
            f"Wasserstein-1 {grid.wasserstein():.4g} / reference sd {grid.scale:.4g}: moved "
            f"{shift:.2f} sd; within {shift_bound:.2g} of the exact value",
            bound=round(shift_bound, 6),
        ),
    ]


def _advisory(status: str) -> str:
    return "warn" if status == "fail" else status


def _norm(counts: Any) -> list[float]:
    total = float(sum(counts)) or 1.0
    return [round(float(c) / total, 6) for c in counts]


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3%}"


def _store(lake: Lake, result: DayChecks) -> None:
    lake.put_bytes(
        result_key(result.ds), json.dumps(result.to_json(), default=str, indent=1).encode()
    )
    rows = result.results
    table = pa.table(
        {
            "kind": [r.kind for r in rows],
            "scope": [r.scope for r in rows],
            "check": [r.check for r in rows],
            "feature": [r.feature for r in rows],
            "value": pa.array(
                [r.value if isinstance(r.value, int | float) else None for r in rows],
                pa.float64(),
            ),
            "warn": pa.array([r.warn for r in rows], pa.float64()),
            "fail": pa.array([r.fail for r in rows], pa.float64()),
            "status": [r.status for r in rows],
            "message": [r.message for r in rows],
        }
    )
    metadata = inputs_metadata(result.inputs or {})
    lake.write_partition(CHECKS, {"ds": result.ds}, table, metadata=metadata)


def _unreadable(cfg: Config, lake: Lake, ds: str) -> str | None:
    """The first impressions partition of ds or its reference days that cannot be read in full,
    or None: what a check that failed to run names."""
    try:
        days = [*reference_days(lake, ds, cfg.checks.reference_days), ds]
        parts = [p for day in days for p in lake.partitions(IMPRESSIONS, ds=[day])]
    except (LakeError, OSError):
        return None
    return lake.first_unreadable(IMPRESSIONS, parts)


def _forget(lake: Lake, ds: str) -> bool:
    """Remove ds's stored check result (result.json and the checks partition); True if any."""
    found = lake.exists(result_key(ds))
    if found:
        lake.delete_key(result_key(ds))
    if lake.partitions(CHECKS, ds=[ds]):
        lake.delete_partition(CHECKS, {"ds": ds})
        found = True
    return found


def load_result(lake: Lake, ds: str) -> DayChecks | None:
    """The stored record of ds, or None when ds was never checked. Raises CheckFailed when it is
    unreadable (a check that cannot be read is not a pass)."""
    key = result_key(ds)
    if not lake.exists(key):
        return None
    try:
        return DayChecks.from_json(json.loads(lake.get_bytes(key)), where=key)
    except (ValueError, LakeError, RecordError) as e:
        raise CheckFailed(f"the check result of {ds} is unreadable: {e}") from e


def failure_message(result: DayChecks) -> str:
    return result.failure_message()


def check_inputs(cfg: Config, lake: Lake, ds: str) -> tuple[list[str], dict[str, str]]:
    """The reference days of ds and the content ids of every impressions partition a check of
    ds reads now (the day's and its reference days', every vertical)."""
    reference = reference_days(lake, ds, cfg.checks.reference_days)
    inputs: dict[str, str] = {}
    for day in [*reference, ds]:
        inputs.update(lake.content_ids(IMPRESSIONS, ds=[day]))
    return reference, inputs


def require_pass(cfg: Config, lake: Lake, ds: str) -> DayChecks | None:
    """The gate of every stage that trains on or scores ds. Returns the day's check result when
    it is current and did not fail. Raises CheckFailed when it failed; a day that is not checked
    (no result, or a result made on other impressions) raises NotChecked, or trains with a
    warning and returns None when checks.unchecked is warn."""
    result = load_result(lake, ds)
    if result is None:
        problem = f"ds={ds} was never checked"
    elif result.inputs is None:
        problem = f"the check of ds={ds} was made before checks recorded content ids"
    else:
        found = changes(lake, result.inputs, check_inputs(cfg, lake, ds)[1])
        problem = (
            f"ds={ds} was checked on other impressions than the lake holds now: "
            f"{describe_changes(found)}"
            if found
            else None
        )
    if problem is not None:
        if cfg.checks.unchecked == "refuse":
            raise NotChecked(
                f"{problem}; run `exfm check --ds {ds}` first (checks.unchecked=refuse)"
            )
        log.warning("%s; going on without a check (checks.unchecked=warn)", problem)
        return None
    if result.status == "fail":
        raise CheckFailed(result.failure_message())
    return result

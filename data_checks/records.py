"""The records of the daily checks: one `CheckResult` per check, one `DayChecks` per day.

The gate builds them, the drift report and the stages read them; they become JSON only at the
boundaries: `checks/ds=D/result.json` in the lake (with the schema version `SCHEMA`), the checks
parquet partition, and the summaries the stages hand to Airflow and DVC.

The JSON of a check result is flat: the fields below, then its details (a label shift's `ctr`,
`ref_ctr` and `z`, the FM calibration's `calibration`, a KS or shift result's `bound` (how far its
grid value may be from the exact one), an expectation's `examples` and `bounds`).
A result.json without `schema` is the first layout, which is this one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from exfm.errors import ExfmError

SCHEMA = 1
Status = Literal["pass", "warn", "fail"]
SEVERITY: dict[str, int] = {"pass": 0, "warn": 1, "fail": 2}
Kind = Literal["suite", "rows", "label", "drift", "churn", "fm"]


class RecordError(ExfmError):
    """A stored check record cannot be read as one (corrupt, or written by a newer version)."""


@dataclass(frozen=True)
class CheckResult:
    """One graded check of a day: what was measured where, its thresholds and its status.

    kind: suite (a Great Expectations expectation), rows (a vertical missing), label (CTR
    shift), drift (psi / js / ks / shift of a feature), churn (unseen ids), fm (the FM's scores;
    advisory: shown, never gating). scope: a vertical, or the pooled scope. value: the measured
    statistic (an expectation's observed value, which may be text). warn / fail: the thresholds
    it was graded against, when it has them.
    """

    kind: Kind
    scope: str
    check: str
    feature: str | None
    status: Status
    value: Any = None
    warn: float | None = None
    fail: float | None = None
    message: str = ""
    advisory: bool = False
    details: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def graded(
        cls,
        kind: Kind,
        scope: str,
        check: str,
        feature: str | None,
        value: float | None,
        thresholds: Any,
        status: Status,
        message: str = "",
        *,
        advisory: bool = False,
        **details: Any,
    ) -> CheckResult:
        """A statistic graded against a ThresholdConfig (or None); the value rounded to 6 digits."""
        return cls(
            kind=kind,
            scope=scope,
            check=check,
            feature=feature,
            status=status,
            value=None if value is None else round(float(value), 6),
            warn=thresholds.warn if thresholds is not None else None,
            fail=thresholds.fail if thresholds is not None else None,
            message=message,
            advisory=advisory,
            details=details,
        )

    @property
    def gating(self) -> bool:
        return not self.advisory

    def describe(self) -> str:
        """`check [scope/feature] = value: message` (one line, for logs and errors)."""
        where = f"{self.scope}/{self.feature}" if self.feature else self.scope
        value = "" if self.value is None else f" = {self.value}"
        return f"{self.check} [{where}]{value}: {self.message or ''}".rstrip(": ")

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        details = out.pop("details")
        if not out["advisory"]:
            del out["advisory"]
        return {**out, **details}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CheckResult:
        names = {f.name for f in dataclasses.fields(cls)} - {"details"}
        try:
            known = {k: data[k] for k in names if k in data}
            details = {k: v for k, v in data.items() if k not in names}
            result = cls(**known, details=details)
        except TypeError as e:
            raise RecordError(f"not a check result: {e}") from None
        if result.status not in SEVERITY:
            raise RecordError(f"check {result.check!r} has an unknown status {result.status!r}")
        return result


@dataclass
class DayChecks:
    """Every check of one day, and what they were made from.

    inputs: the content ids of the impressions checked (the day's and its reference days', every
    vertical; exfm/lineage.py); None in a record made before checks recorded them.
    histograms: feature -> reference vs today's bin shares (the most drifted, for the report).
    fm_versions: the FM snapshots whose predictions the advisory checks read.
    status: the worst gating status. report: where the HTML report was written (not stored).
    das: the DAS's scoring facts of the day, attached when the report reads the records.
    """

    ds: str
    reference_days: list[str]
    verticals: list[str]
    inputs: dict[str, str] | None
    results: list[CheckResult] = field(default_factory=list)
    histograms: dict[str, dict[str, Any]] = field(default_factory=dict)
    fm_versions: dict[str, str] | None = None
    status: Status = "pass"
    seconds: float = 0.0
    report: str | None = None
    das: dict[str, Any] | None = None

    def __iter__(self) -> Iterator[CheckResult]:
        return iter(self.results)

    def add(self, result: CheckResult) -> None:
        self.results.append(result)

    def extend(self, results: list[CheckResult]) -> None:
        self.results.extend(results)

    def grade(self) -> Status:
        """The day's verdict: the worst status of the checks that gate (advisory ones do not)."""
        gating = [r.status for r in self.results if r.gating]
        self.status = max(gating, key=SEVERITY.__getitem__, default="pass")
        return self.status

    def with_status(self, status: str) -> list[CheckResult]:
        return [r for r in self.results if r.status == status]

    def counts(self) -> dict[str, int]:
        return {s: len(self.with_status(s)) for s in SEVERITY}

    def pick(self, check: str, scope: str, feature: str | None = None) -> CheckResult | None:
        """The first result of `check` on `scope` (and `feature`, when given)."""
        for r in self.results:
            if r.check == check and r.scope == scope and (feature is None or r.feature == feature):
                return r
        return None

    def failure_message(self) -> str:
        failing = self.with_status("fail")
        lines = "\n".join(f"  - {r.describe()}" for r in failing)
        return (
            f"ds={self.ds} failed {len(failing)} data checks; its training is stopped:\n"
            f"{lines}\nreport: {self.report or 'n/a'}"
        )

    def to_json(self) -> dict[str, Any]:
        """The stored result.json (without the report's location and the DAS's facts, which are
        not facts of the check)."""
        return {
            "schema": SCHEMA,
            "ds": self.ds,
            "reference_days": list(self.reference_days),
            "verticals": list(self.verticals),
            "inputs": self.inputs,
            "results": [r.to_json() for r in self.results],
            "histograms": self.histograms,
            **({"fm_versions": self.fm_versions} if self.fm_versions is not None else {}),
            "status": self.status,
            "seconds": self.seconds,
        }

    @classmethod
    def from_json(cls, data: Any, where: str = "a check result") -> DayChecks:
        """Read a stored result.json. Raises RecordError naming `where` when it is not one."""
        if not isinstance(data, Mapping):
            raise RecordError(f"{where} is not a JSON object")
        schema = data.get("schema", 1)
        if schema != SCHEMA:
            raise RecordError(
                f"{where} has schema {schema!r}; this version reads schema {SCHEMA} (written by "
                "another version of exfm: check the day again with this one)"
            )
        try:
            day = cls(
                ds=str(data["ds"]),
                reference_days=list(data.get("reference_days", [])),
                verticals=list(data.get("verticals", [])),
                inputs=data["inputs"] if isinstance(data.get("inputs"), dict) else None,
                results=[CheckResult.from_json(r) for r in data.get("results", [])],
                histograms=dict(data.get("histograms", {})),
                fm_versions=data.get("fm_versions"),
                status=data["status"],
                seconds=float(data.get("seconds", 0.0)),
            )
        except (KeyError, TypeError, ValueError, RecordError) as e:
            raise RecordError(f"{where} is not a check result: {e}") from None
        if day.status not in SEVERITY:
            raise RecordError(f"{where} has an unknown status {day.status!r}")
        return day

"""The check records: their JSON is what result.json holds, and reading refuses what is not one."""

from __future__ import annotations

import json

import pytest

from data_checks.gate import CheckFailed, load_result, result_key
from data_checks.records import SCHEMA, CheckResult, DayChecks, RecordError
from exfm.config_schema import ThresholdConfig
from exfm.lake import Lake


def _day() -> DayChecks:
    day = DayChecks("2026-01-08", ["2026-01-07"], ["feed"], {"impressions/x": "id1"})
    day.add(
        CheckResult.graded(
            "label", "all", "label_shift", "label", 0.1234567, ThresholdConfig(), "pass",
            "CTR 2% vs 2%", ctr=0.02, ref_ctr=0.021, z=1.5,
        )
    )  # fmt: skip
    day.add(CheckResult("suite", "feed", "expect_x", "label", "fail", 3, message="3 unexpected"))
    fm = ThresholdConfig(warn=0.2, fail=1.0)
    day.add(CheckResult.graded("fm", "all", "fm_calibration", "fm_logit", 5.0, fm, "warn",
                               advisory=True, calibration=6.0))  # fmt: skip
    return day


_LABEL = {"kind": "label", "scope": "all", "check": "label_shift", "feature": "label"}


def test_a_day_round_trips_through_its_json() -> None:
    day = _day()
    assert day.grade() == "fail"  # the advisory FM check does not gate; the suite check does
    text = json.dumps(day.to_json())
    back = DayChecks.from_json(json.loads(text))
    assert back == day
    data = json.loads(text)
    assert data["schema"] == SCHEMA
    label = data["results"][0]
    # flat, as the report and `exfm sql` readers have always seen it
    assert (label["value"], label["warn"], label["ctr"], label["z"]) == (0.123457, 0.1, 0.02, 1.5)
    assert "advisory" not in label and data["results"][2]["advisory"] is True


def test_grading_and_the_failure_message() -> None:
    day = _day()
    day.grade()
    assert day.counts() == {"pass": 1, "warn": 1, "fail": 1}
    assert day.pick("label_shift", "all").details["ref_ctr"] == 0.021
    assert day.pick("label_shift", "feed") is None
    message = day.failure_message()
    assert "ds=2026-01-08 failed 1 data checks" in message
    assert "expect_x [feed/label] = 3: 3 unexpected" in message


def test_a_record_without_a_schema_is_the_first_layout() -> None:
    data = _day().to_json()
    del data["schema"]
    assert DayChecks.from_json(data).results == _day().results


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([1, 2], "is not a JSON object"),
        ({"schema": 2, "ds": "d", "status": "pass"}, "has schema 2; this version reads schema 1"),
        ({"ds": "d"}, "is not a check result: 'status'"),
        ({"ds": "d", "status": "great"}, "unknown status 'great'"),
        ({"ds": "d", "status": "pass", "results": [{"kind": "x"}]}, "not a check result"),
        ({"ds": "d", "status": "pass", "results": [{**_LABEL, "status": "ok"}]},
         "unknown status 'ok'"),
    ],
)  # fmt: skip
def test_what_is_not_a_record_is_refused_by_name(data: object, message: str) -> None:
    with pytest.raises(RecordError, match=message):
        DayChecks.from_json(data, where="checks/ds=d/result.json")


def test_an_unreadable_stored_result_is_not_a_pass(tmp_path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    ds = "2026-01-08"
    lake.put_bytes(result_key(ds), b'{"ds": "2026-01-08", "status": "pa')
    with pytest.raises(CheckFailed, match="the check result of 2026-01-08 is unreadable"):
        load_result(lake, ds)
    lake.put_bytes(result_key(ds), json.dumps({"schema": 9, "ds": ds, "status": "pass"}).encode())
    with pytest.raises(CheckFailed, match=r"checks/ds=2026-01-08/result.json has schema 9"):
        load_result(lake, ds)

"""The daily gate on simulated data: clean days pass, a shock is flagged, corrupted partitions
fail naming the expectation, the column and a value, and a failed day does not train."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from data_checks.drift import ALL
from data_checks.gate import CheckFailed, check_day, load_result, require_pass
from data_checks.records import CheckResult, DayChecks
from exfm import stages
from exfm.catalog import Catalog
from exfm.config import Config, load_config, replace
from exfm.data.world import generate
from exfm.lake import IMPRESSIONS, Lake
from exfm.registry import Registry
from tests.conftest import REPO, SMALL_WORLD, TINY_MODELS

SHOCK = "2026-01-10"


@pytest.fixture(scope="module")
def shocked(tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, Lake]:
    """Six days of 60k impressions with a shock on the sixth; a 3-day reference window."""
    root = tmp_path_factory.mktemp("checks")
    cfg = load_config(
        REPO / "params.yaml",
        [
            "world.days=6",
            "world.impressions_per_day=60000",
            f"world.shock_ds={SHOCK}",
            "checks.reference_days=3",
            f"lake.root={root / 'lake'}",
            f"lake.catalog={root / 'c.duckdb'}",
        ],
    )
    lake = Lake.from_config(cfg.lake)
    generate(cfg, lake)
    return cfg, lake


def _flagged(result: DayChecks) -> list[tuple[str, str, str | None]]:
    return [(r.check, r.scope, r.feature) for r in result if r.status != "pass"]


@pytest.mark.slow
def test_a_stable_day_passes_and_a_shock_is_flagged(shocked: tuple[Config, Lake]) -> None:
    cfg, lake = shocked
    stable = check_day(cfg, lake, "2026-01-09")
    assert stable.status == "pass", _flagged(stable)
    assert stable.reference_days == ["2026-01-06", "2026-01-07", "2026-01-08"]
    suite = [r for r in stable if r.kind == "suite"]
    assert len({r.scope for r in suite}) == 4 and all(r.status == "pass" for r in suite)
    kinds = {r.check for r in stable}
    assert {"psi", "js", "ks", "shift", "label_shift", "churn"} <= kinds
    shock = check_day(cfg, lake, SHOCK)
    assert shock.status in ("warn", "fail")
    assert ("label_shift", "all", "label") in _flagged(shock)
    stored = load_result(lake, SHOCK)
    assert stored is not None and stored.status == shock.status
    # what is stored reads back as the record the check returned (less where its page went)
    assert stored.results == shock.results and stored.inputs == shock.inputs
    assert stored.report is None and shock.report


def test_results_are_stored_for_sql_and_the_report(shocked: tuple[Config, Lake]) -> None:
    cfg, lake = shocked
    check_day(cfg, lake, "2026-01-08")
    rows = (
        Catalog(lake, cfg.lake.catalog)
        .query(
            "select count(*) as n, count(distinct scope) as scopes from checks where ds = ?",
            ["2026-01-08"],
        )
        .to_pylist()[0]
    )
    assert rows["n"] > 100 and rows["scopes"] == 5
    assert lake.exists("reports/drift/2026-01-08.html") and lake.exists("reports/drift/index.html")


def tiny_world(folder: Path) -> tuple[Config, Lake]:
    """A tiny world's days landed into a lake under `folder` (shared with tests/cli)."""
    cfg = load_config(
        REPO / "params.yaml", [*SMALL_WORLD, *TINY_MODELS, f"lake.root={folder / 'lake'}"]
    )
    lake = Lake.from_config(cfg.lake)
    generate(cfg, lake)
    return cfg, lake


@pytest.fixture
def tiny(tmp_path: Path) -> tuple[Config, Lake]:
    return tiny_world(tmp_path)


def _corrupt(lake: Lake, how: str) -> None:
    """Rewrite day 3's feed partition as a broken pipeline would (around the write checks)."""
    values = {"ds": "2026-01-07", "vertical": "feed"}
    t = lake.read_partition(IMPRESSIONS, values).drop_columns(["ds", "vertical"])
    if how == "missing column":
        t = t.drop_columns(["hour"])
    elif how == "label 2":
        t = t.set_column(
            t.column_names.index("label"),
            "label",
            pa.array([2, *t.column("label").to_pylist()[1:]], pa.int8()),
        )
    elif how == "all-null feature":
        t = t.set_column(
            t.column_names.index("ad_ctr_hist"), "ad_ctr_hist", pa.nulls(t.num_rows, pa.float32())
        )
    elif how == "three times the rows":
        t = pa.concat_tables([t, t, t])
    elif how == "duplicate example_id":
        ids_ = t.column("example_id").to_pylist()
        t = t.set_column(0, "example_id", pa.array([ids_[1], *ids_[1:]], pa.int64()))
    lake.write_partition(IMPRESSIONS, values, t)


@pytest.mark.parametrize(
    ("how", "expectation", "column", "value"),
    [
        ("missing column", "expect_table_columns_to_match_set", None, "hour"),
        ("label 2", "expect_column_values_to_be_in_set", "label", "[2]"),
        ("all-null feature", "expect_column_values_to_not_be_null", "ad_ctr_hist", "None"),
        ("duplicate example_id", "expect_column_values_to_be_unique", "example_id", None),
        # the observed value and the bounds it broke
        ("three times the rows", "expect_table_row_count_to_be_between", None, "; allowed ["),
    ],
)
def test_a_corrupted_partition_fails_and_nothing_trains(
    tiny: tuple[Config, Lake],
    how: str,
    expectation: str,
    column: str | None,
    value: str | None,
) -> None:
    cfg, lake = tiny
    _corrupt(lake, how)
    result = check_day(cfg, lake, "2026-01-07")
    assert result.status == "fail"
    failing = [r for r in result.with_status("fail") if r.scope == "feed"]
    match = [r for r in failing if r.check == expectation and r.feature == column]
    assert match, failing
    if value is not None:
        assert value in match[0].message
    if how == "duplicate example_id":
        assert (
            str(
                lake.read_partition(IMPRESSIONS, {"ds": "2026-01-07", "vertical": "feed"})
                .column("example_id")[0]
                .as_py()
            )
            in match[0].message
        )
    with pytest.raises(CheckFailed) as e:
        stages.train_fm(cfg, "2026-01-07")
    assert expectation in str(e.value) and "report:" in str(e.value)
    assert Registry(lake).history("fm", None) == []


def test_an_empty_day_and_a_missing_vertical_fail(tiny: tuple[Config, Lake]) -> None:
    cfg, lake = tiny
    empty = check_day(cfg, lake, "2026-01-09")
    assert empty.status == "fail"
    assert "no impressions for ds=2026-01-09" in empty.results[0].message
    lake.delete_partition(IMPRESSIONS, {"ds": "2026-01-07", "vertical": "video"})
    missing = check_day(cfg, lake, "2026-01-07")
    assert ("rows", "video", None) in _flagged(missing)
    with pytest.raises(CheckFailed, match="vertical video has no rows on 2026-01-07"):
        require_pass(cfg, lake, "2026-01-07")


def _set_clicks(lake: Lake, ds: str, vertical: str, clicks: int) -> int:
    """Rewrite a partition with exactly `clicks` clicks (the first rows); returns its rows."""
    values = {"ds": ds, "vertical": vertical}
    t = lake.read_partition(IMPRESSIONS, values).drop_columns(["ds", "vertical"])
    labels = [1] * clicks + [0] * (t.num_rows - clicks)
    lake.write_partition(
        IMPRESSIONS,
        values,
        t.set_column(t.column_names.index("label"), "label", pa.array(labels, pa.int8())),
    )
    return t.num_rows


def _ctr(result: DayChecks, vertical: str) -> CheckResult:
    (out,) = [
        r for r in result if r.check == "expect_column_mean_to_be_between" and r.scope == vertical
    ]
    return out


def test_a_ctr_change_fails_only_when_its_counts_make_it_clear(tiny: tuple[Config, Lake]) -> None:
    """The issue's case: a vertical of a few hundred rows and a few dozen clicks halves its CTR
    by chance. The ratio band alone (confidence 0) fails it; the default gate passes it, and
    still fails a change the counts make clear."""
    cfg, lake = tiny
    day = "2026-01-07"
    ref_rows, ref_clicks = _counts(lake, ["2026-01-05", "2026-01-06"], "feed")
    rows = lake.read_partition(IMPRESSIONS, {"ds": day, "vertical": "feed"}).num_rows
    expected = ref_clicks / ref_rows * rows
    assert 20 < expected < 80, expected  # the world's shape: feed's CTR is 2%
    _set_clicks(lake, day, "feed", round(expected * 0.45))
    plain = replace(cfg, checks=replace(cfg.checks, confidence=0.0))
    assert _ctr(check_day(plain, lake, day), "feed").status == "fail"
    chance = check_day(cfg, lake, day)
    assert _ctr(chance, "feed").status == "pass", _ctr(chance, "feed")
    assert chance.status != "fail", chance.with_status("fail")

    _set_clicks(lake, day, "feed", round(expected * 3))
    clear = _ctr(check_day(cfg, lake, day), "feed")
    assert clear.status == "fail"
    # the observed CTR, the bounds, and how they were made
    assert "; allowed [" in clear.message and "x the reference CTR" in clear.message
    assert "99.99% sampling interval" in clear.message


def _counts(lake: Lake, days: list[str], vertical: str) -> tuple[int, int]:
    """(rows, clicks) of a vertical over days."""
    t = lake.read(IMPRESSIONS, ds=days, columns=["vertical", "label"])
    mine = pc.filter(t.column("label"), pc.equal(t.column("vertical"), vertical))
    return len(mine), int(pc.sum(mine).as_py() or 0)


def _move(lake: Lake, day: str, sd: float, order: dict[int, int]) -> None:
    """Rewrite every partition of `day` with user_ctr_hist moved up by `sd` and the category ids
    renamed by `order` (the same shares on other ids)."""
    for p in lake.partitions(IMPRESSIONS, ds=[day]):
        values = {"ds": day, "vertical": p["vertical"]}
        t = lake.read_partition(IMPRESSIONS, values).drop_columns(["ds", "vertical"])
        hist = pc.add(t.column("user_ctr_hist"), pa.scalar(sd, pa.float32()))
        ids_ = [order.get(x, x) for x in t.column("category_id").to_pylist()]
        t = t.set_column(t.column_names.index("user_ctr_hist"), "user_ctr_hist", hist)
        t = t.set_column(
            t.column_names.index("category_id"), "category_id", pa.array(ids_, pa.int64())
        )
        lake.write_partition(IMPRESSIONS, values, t)


def test_a_quarter_sd_shift_and_a_reordered_categorical_are_flagged(
    tiny: tuple[Config, Lake],
) -> None:
    """At the default thresholds: an ordinary day is not flagged by the shift statistic; the
    same day with a dense feature moved by 0.25 reference sd is (it reads about 0.25, within
    its recorded bound), and the same day with a categorical's top ids reordered is flagged by
    PSI."""
    cfg, lake = tiny
    day, reference = "2026-01-07", ["2026-01-05", "2026-01-06"]
    ordinary = check_day(cfg, lake, day)
    shifts = [r for r in ordinary if r.check == "shift"]
    assert shifts and all(r.status == "pass" for r in shifts), shifts
    ref = lake.read(IMPRESSIONS, ds=reference, columns=["user_ctr_hist", "category_id"])
    sd = float(np.std(ref.column("user_ctr_hist").to_numpy()))
    ids_, counts = np.unique(ref.column("category_id").to_numpy(), return_counts=True)
    top = [int(x) for x in ids_[np.argsort(-counts, kind="stable")][:10]]
    _move(lake, day, 0.25 * sd, dict(zip(top, top[::-1], strict=True)))
    moved = check_day(cfg, lake, day)
    shift = moved.pick("shift", ALL, "user_ctr_hist")
    assert shift is not None and shift.status == "warn", shift
    assert 0.2 <= shift.value <= 0.35 and shift.details["bound"] < 0.05
    reordered = moved.pick("psi", ALL, "category_id")
    assert reordered is not None and reordered.status in ("warn", "fail"), reordered

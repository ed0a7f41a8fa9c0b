"""The feature spec and the validation every impressions partition passes before it is written."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from exfm.config import load_config
from exfm.data.impressions import write_impressions
from exfm.data.schema import FeatureSpec, validate_partition
from exfm.errors import SchemaError
from exfm.lake import IMPRESSIONS, Lake
from tests.conftest import REPO

DAY = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)


def _rows(spec: FeatureSpec, vertical: str, n: int = 4, **overrides: object) -> dict:
    cols: dict[str, object] = {
        "example_id": list(range(n)),
        "ts": [DAY + dt.timedelta(hours=i) for i in range(n)],
        "label": [i % 2 for i in range(n)],
    }
    for f in spec.features:
        if vertical not in f.verticals:
            cols[f.name] = pa.nulls(n, f.arrow_type)
        else:
            cols[f.name] = list(range(n)) if f.is_categorical else [0.5 * i for i in range(n)]
    cols["true_ctr"] = [0.1] * n
    cols.update(overrides)
    return cols


def _valid(spec: FeatureSpec, vertical: str = "feed", **overrides: object) -> pa.Table:
    return validate_partition(
        pa.table(_rows(spec, vertical, **overrides)), spec, "2026-01-05", vertical, "test.csv"
    )


def test_valid_partition_is_normalized(spec: FeatureSpec) -> None:
    out = _valid(spec)
    assert out.column_names[:3] == ["example_id", "ts", "label"]
    assert out.schema.field("label").type == pa.int8()
    assert out.schema.field("ts").type == pa.timestamp("us", tz="UTC")
    assert out.schema.field("user_id").type == pa.int64()
    assert out.schema.field("hour").type == pa.float32()
    assert out.schema.metadata[b"exfm.feature_spec"] == spec.fingerprint().encode()


def test_unavailable_features_must_be_null(spec: FeatureSpec) -> None:
    out = _valid(spec, "search")
    assert out.column("device_type").null_count == out.num_rows
    with pytest.raises(SchemaError, match="does not have feature 'device_type'.*row 0 holds 7"):
        _valid(spec, "search", device_type=[7, None, None, None])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"label": [0, 2, 1, 0]}, "label 2 at row 1 is not 0 or 1"),
        ({"label": [0, None, 1, 0]}, "column 'label' is null at row 1"),
        ({"label": [0.0, float("nan"), 1.0, 0.0]}, "label nan at row 1 is not 0 or 1"),
        ({"label": ["0", "1", "1", "0"]}, "column 'label' has type string"),
        ({"example_id": [1, 2, 2, 3]}, "duplicate example_id 2 at rows [1, 2]"),
        ({"example_id": [1.0, 2.0, 3.0, 4.0]}, "column 'example_id' has type double"),
        ({"ts": [DAY - dt.timedelta(seconds=1)] + [DAY] * 3}, "outside ds=2026-01-05"),
        ({"ts": ["2026-01-05"] * 4}, "column 'ts' has type string"),
        ({"user_id": ["a", "b", "c", "d"]}, "categorical feature 'user_id' has type string"),
        ({"hour": ["x", "y", "z", "w"]}, "dense feature 'hour' has type string"),
        ({"hour": [1.0, float("inf"), 2.0, 3.0]}, "dense feature 'hour' is inf at row 1"),
        ({"true_ctr": [0.1, 1.5, 0.2, 0.3]}, "true_ctr 1.5 at row 1 is not in [0, 1]"),
    ],
)
def test_bad_values_are_rejected_with_column_value_and_row(
    spec: FeatureSpec, override: dict, message: str
) -> None:
    with pytest.raises(SchemaError) as e:
        _valid(spec, **override)
    assert message in str(e.value)
    assert str(e.value).startswith("test.csv:")


def test_missing_extra_and_empty(spec: FeatureSpec) -> None:
    rows = _rows(spec, "feed")
    del rows["hour"]
    with pytest.raises(SchemaError, match=r"missing columns \['hour'\]"):
        validate_partition(pa.table(rows), spec, "2026-01-05", "feed", "f")
    with pytest.raises(SchemaError, match=r"unexpected columns \['junk'\]"):
        _valid(spec, junk=[1, 2, 3, 4])
    with pytest.raises(SchemaError, match="has no rows"):
        validate_partition(
            pa.table(_rows(spec, "feed")).slice(0, 0), spec, "2026-01-05", "feed", "f"
        )
    with pytest.raises(SchemaError, match="unknown vertical 'radio'"):
        validate_partition(pa.table(_rows(spec, "feed")), spec, "2026-01-05", "radio", "f")


def test_missing_values_in_available_features_stay_null(spec: FeatureSpec) -> None:
    out = _valid(spec, user_id=[1, None, 3, 4], hour=[1.0, None, 2.0, 3.0])
    assert out.column("user_id").null_count == 1
    assert out.column("hour").null_count == 1


def test_fingerprint_tracks_the_spec() -> None:
    base = FeatureSpec.from_config(load_config(REPO / "params.yaml").features)
    same = FeatureSpec.from_config(load_config(REPO / "params.yaml").features)
    other = FeatureSpec.from_config(
        load_config(REPO / "params.yaml", ["features.features.user_id.hash_buckets=1024"]).features
    )
    assert base.fingerprint() == same.fingerprint() != other.fingerprint()
    assert [f.name for f in base.available("search")] == [
        "user_id",
        "ad_id",
        "advertiser_id",
        "category_id",
        "context_id",
        "position",
        "hour",
        "user_ctr_hist",
        "ad_ctr_hist",
        "user_log_views",
        "ad_log_views",
    ]


def test_one_bad_partition_writes_nothing(spec: FeatureSpec, lake: Lake) -> None:
    good = pa.table(_rows(spec, "feed"))
    bad = pa.table(_rows(spec, "video", label=[0, 1, 3, 0]))
    bad = bad.cast(good.schema)
    table = pa.concat_tables(
        [
            good.append_column("ds", pa.array(["2026-01-05"] * 4)).append_column(
                "vertical", pa.array(["feed"] * 4)
            ),
            bad.append_column("ds", pa.array(["2026-01-05"] * 4)).append_column(
                "vertical", pa.array(["video"] * 4)
            ),
        ]
    )
    with pytest.raises(SchemaError, match=r"vertical=video.*label 3 at row 2"):
        write_impressions(lake, spec, table, source="unit")
    assert lake.partitions(IMPRESSIONS) == []
    written = write_impressions(lake, spec, table.slice(0, 4), source="unit")
    assert [w.values for w in written] == [{"ds": "2026-01-05", "vertical": "feed"}]

"""Bring your own data (exfm/data/ingest.py): the real Open Bandit Dataset sample through the API,
small CSV/parquet files written in tmp_path, and every kind of bad input, each of which must write
nothing to the lake. `exfm ingest` itself is in tests/cli/test_ingest_cli.py."""

from __future__ import annotations

import collections
import csv
import datetime as dt
import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from exfm.config import Config, config_from_dict, load_config
from exfm.data.columns import hash_text
from exfm.data.ingest import ingest, read_sources
from exfm.errors import ConfigError, IngestError
from exfm.lake import IMPRESSIONS, Lake
from tests.conftest import REPO, SHARED

OBD = SHARED / "data" / "obd"
CAMPAIGNS = ("all", "men", "women")
# configs/obd.yaml: campaign -> vertical ("all" is reserved for every vertical pooled)
VERTICAL = {"all": "all_items", "men": "men", "women": "women"}

# ---------------------------------------------------------------------------------- OBD sample


def _obd_cfg(tmp: Path) -> Config:
    return load_config(
        REPO / "configs" / "obd.yaml",
        [f"lake.root={tmp / 'lake'}", f"lake.catalog={tmp / 'c.duckdb'}"],
    )


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def obd(tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, Lake, list[Any]]:
    """configs/obd.yaml ingested once into a fresh lake (its source paths are relative to REPO)."""
    cfg = _obd_cfg(tmp_path_factory.mktemp("obd"))
    lake = Lake.from_config(cfg.lake)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(REPO)
        written = ingest(cfg, lake)
    return cfg, lake, written


def test_obd_sample_lands_as_7_days_by_3_verticals_with_the_source_row_counts(obd) -> None:
    _, lake, written = obd
    expected: collections.Counter[tuple[str, str]] = collections.Counter()
    for campaign in CAMPAIGNS:
        for row in _csv_rows(OBD / campaign / f"{campaign}.csv"):
            day = dt.datetime.fromisoformat(row["timestamp"]).astimezone(dt.UTC).date()
            expected[(day.isoformat(), VERTICAL[campaign])] += 1
    parts = lake.partitions(IMPRESSIONS)
    assert len(parts) == len(written) == 21
    assert {(p["ds"], p["vertical"]) for p in parts} == set(expected)
    table = lake.read(IMPRESSIONS)
    got = collections.Counter(
        zip(table["ds"].to_pylist(), table["vertical"].to_pylist(), strict=True)
    )
    assert got == expected
    per_vertical = collections.Counter(table["vertical"].to_pylist())
    assert per_vertical == {"all_items": 10_000, "men": 10_000, "women": 10_000}
    assert sum(table["label"].to_pylist()) == sum(
        int(r["click"]) for c in CAMPAIGNS for r in _csv_rows(OBD / c / f"{c}.csv")
    )


def _by_source_row(lake: Lake, campaign: str) -> tuple[dict[int, dict[str, Any]], list[dict]]:
    """Lake rows of one campaign keyed by their source row (from the generated example_id)."""
    table = lake.read(IMPRESSIONS, vertical=campaign)
    rows = {int(r["example_id"].split(":")[2]): r for r in table.to_pylist()}
    return rows, _csv_rows(OBD / campaign / f"{campaign}.csv")


def test_obd_item_ids_are_namespaced_by_vertical(obd) -> None:
    _, lake, _ = obd
    mapping: dict[str, dict[str, set[int]]] = {}
    for campaign in ("men", "women"):
        lake_rows, source = _by_source_row(lake, campaign)
        m: dict[str, set[int]] = collections.defaultdict(set)
        for i, src in enumerate(source, start=1):
            m[src["item_id"]].add(lake_rows[i]["item_id"])
        assert all(len(ids) == 1 for ids in m.values()), "one raw item id -> one lake id"
        mapping[campaign] = {k: v for k, v in m.items()}
    shared = set(mapping["men"]) & set(mapping["women"])
    assert shared, "the sample has raw item ids used by both campaigns"
    for raw in shared:
        assert mapping["men"][raw] != mapping["women"][raw]
    assert mapping["men"]["12"] == {hash_text(pa.array(["men:12"]))[0].as_py()}


def test_obd_lookup_and_hashed_features_come_from_the_source_files(obd) -> None:
    _, lake, _ = obd
    lake_rows, source = _by_source_row(lake, "women")
    items = {r["item_id"]: r for r in _csv_rows(OBD / "women" / "item_context.csv")}
    for i in (1, 2, 500, 10_000):
        got, src, item = lake_rows[i], source[i - 1], items[source[i - 1]["item_id"]]
        assert got["item_feature_0"] == pytest.approx(float(item["item_feature_0"]), rel=1e-6)
        assert got["item_feature_1"] == hash_text(pa.array([item["item_feature_1"]]))[0].as_py()
        assert got["user_feature_2"] == hash_text(pa.array([src["user_feature_2"]]))[0].as_py()
        assert got["position"] == int(src["position"])
        assert got["affinity_33"] == pytest.approx(float(src["user-item_affinity_33"]), abs=1e-6)
    table = lake.read(IMPRESSIONS)
    for name in ("item_feature_0", "item_feature_1", "item_feature_2", "item_feature_3"):
        assert table[name].null_count == 0, f"{name}: every OBD item is in its item_context.csv"


def test_reingesting_obd_rewrites_the_same_rows_without_duplicates(obd) -> None:
    cfg, lake, _ = obd
    before = lake.read(IMPRESSIONS).sort_by("example_id")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(REPO)
        ingest(cfg, lake)
    after = lake.read(IMPRESSIONS).sort_by("example_id")
    assert after.num_rows == 30_000
    assert len(pc.unique(after["example_id"])) == 30_000
    assert after.equals(before)


# ------------------------------------------------------------------------------- small files

HEADER = ["timestamp", "user", "item", "price", "click"]
GOOD = [
    ["2026-01-05T10:00:00Z", "u1", "7", "1.5", "0"],
    ["2026-01-05T11:00:00Z", "u2", "8", "", "1"],
    ["2026-01-06T09:30:00Z", "u1", "7", "2.25", "0"],
]


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def make_cfg(tmp_path: Path, sources: list[dict[str, Any]], **ingest_keys: Any) -> Config:
    """Verticals feed and search; `query` exists only in search; item ids (int) namespaced;
    user and query ids are text (id type string) unless `id_types` says otherwise."""
    cat = {"kind": "categorical", "hash_buckets": 1024}
    raw = {
        "world": {"verticals": {"feed": {"traffic_share": 0.5}, "search": {"traffic_share": 0.5}}},
        "features": {
            "verticals": ["feed", "search"],
            "features": {
                "user": cat,
                "item": cat,
                "price": {"kind": "dense"},
                "query": {**cat, "only_verticals": ["search"]},
            },
        },
        "lake": {"root": str(tmp_path / "lake"), "catalog": str(tmp_path / "c.duckdb")},
        "vm": {"features": ["user", "item", "price"]},
        "checks": {"dense_ranges": {"price": [0.0, 1e6]}, "id_features": ["user", "item"]},
        "ingest": {
            "label_column": "click",
            "namespace_by_vertical": ["item"],
            "id_types": {"user": "string", "query": "string"},
            "sources": sources,
            **ingest_keys,
        },
    }
    return config_from_dict(raw)


def good_source(tmp_path: Path) -> dict[str, Any]:
    return {
        "path": str(write_csv(tmp_path / "good" / "feed.csv", HEADER, GOOD)),
        "vertical": "feed",
    }


def test_small_csv_maps_columns_onto_the_lake_schema(tmp_path: Path) -> None:
    table = read_sources(make_cfg(tmp_path, [good_source(tmp_path)]))
    assert table["ds"].to_pylist() == ["2026-01-05", "2026-01-05", "2026-01-06"]
    assert table["example_id"].to_pylist() == ["feed:feed:1", "feed:feed:2", "feed:feed:3"]
    assert table["label"].type == pa.int8() and table["label"].to_pylist() == [0, 1, 0]
    assert table["price"].type == pa.float32() and table["price"].to_pylist() == [1.5, None, 2.25]
    assert table["user"].to_pylist() == hash_text(pa.array(["u1", "u2", "u1"])).to_pylist()
    assert (
        table["item"].to_pylist() == hash_text(pa.array(["feed:7", "feed:8", "feed:7"])).to_pylist()
    )
    assert table["query"].null_count == 3, "feed has no query feature, and no query column"


def test_hash_of_text_is_pinned_so_reingests_keep_their_ids() -> None:
    assert hash_text(pa.array(["men:12", "abc", None])).to_pylist() == [
        2535390378690311286,
        8952642330259793944,
        None,
    ]


def test_timestamps_with_offsets_naive_or_z_are_read_as_utc_instants(tmp_path: Path) -> None:
    rows = [
        ["2026-01-06T01:30:00+02:00", "u", "1", "1", "0"],  # 2026-01-05 23:30 UTC
        ["2026-01-05 12:00:00", "u", "1", "1", "0"],  # naive: UTC
        ["2026-01-05T12:00:00.123456Z", "u", "1", "1", "1"],
    ]
    src = {"path": str(write_csv(tmp_path / "t.csv", HEADER, rows)), "vertical": "feed"}
    table = read_sources(make_cfg(tmp_path, [src]))
    assert table["ds"].to_pylist() == ["2026-01-05"] * 3
    assert table["ts"].to_pylist() == [
        dt.datetime(2026, 1, 5, 23, 30, tzinfo=dt.UTC),
        dt.datetime(2026, 1, 5, 12, 0, tzinfo=dt.UTC),
        dt.datetime(2026, 1, 5, 12, 0, 0, 123456, tzinfo=dt.UTC),
    ]


def test_numeric_epochs_are_read_in_timestamp_unit(tmp_path: Path) -> None:
    moment = dt.datetime(2026, 1, 5, 23, 59, 59, 500000, tzinfo=dt.UTC)
    ms = int(moment.timestamp() * 1000)
    rows = [[str(ms), "u", "1", "1", "0"], [str(ms + 1000), "u", "1", "1", "0"]]
    src = {"path": str(write_csv(tmp_path / "e.csv", HEADER, rows)), "vertical": "feed"}
    table = read_sources(make_cfg(tmp_path, [src], timestamp_unit="ms"))
    assert table["ts"][0].as_py() == moment
    assert table["ds"].to_pylist() == ["2026-01-05", "2026-01-06"]


def test_vertical_column_routes_rows_and_only_verticals_nulls_the_others(tmp_path: Path) -> None:
    header = [*HEADER, "surface", "query", "id"]
    rows = [
        ["2026-01-05T10:00:00Z", "u1", "7", "1", "0", "feed", "q1", "10"],
        ["2026-01-05T10:00:00Z", "u1", "7", "1", "1", "search", "q1", "11"],
    ]
    src = {"path": str(write_csv(tmp_path / "mixed.csv", header, rows))}
    cfg = make_cfg(tmp_path, [src], vertical_column="surface", example_id_column="id")
    table = read_sources(cfg)
    assert table["vertical"].to_pylist() == ["feed", "search"]
    assert table["query"].to_pylist() == [None, hash_text(pa.array(["q1"]))[0].as_py()]
    item = table["item"].to_pylist()
    assert item[0] != item[1], "item 7 of feed and of search are different ids"
    assert table["example_id"].type == pa.int64() and table["example_id"].to_pylist() == [10, 11]
    written = ingest(cfg, Lake.from_config(cfg.lake))
    assert sorted(w.values["vertical"] for w in written) == ["feed", "search"]


def test_globs_and_parquet_sources_are_read_in_sorted_order(tmp_path: Path) -> None:
    for day in ("06", "05"):
        write_csv(
            tmp_path / "in" / f"day{day}.csv",
            HEADER,
            [[f"2026-01-{day}T10:00:00", "u", "1", "1", "1"]],
        )
    pq.write_table(
        pa.table(
            {
                "timestamp": pa.array([dt.datetime(2026, 1, 7, 1)], pa.timestamp("ms")),
                "user": pa.array([5], pa.int32()),
                "item": ["9"],
                "price": pa.array([3], pa.int64()),
                "click": [True],
                "query": pa.array([None], pa.string()),
            }
        ),
        tmp_path / "in" / "extra.parquet",
    )
    sources = [
        {"path": str(tmp_path / "in" / "day*.csv"), "vertical": "feed"},
        {"path": str(tmp_path / "in" / "extra.parquet"), "vertical": "search"},
    ]
    table = read_sources(make_cfg(tmp_path, sources))
    assert table["example_id"].to_pylist() == ["feed:day05:1", "feed:day06:1", "search:extra:1"]
    assert table["user"][2].as_py() == hash_text(pa.array(["5"]))[0].as_py(), "its text"
    assert table["item"][2].as_py() == hash_text(pa.array(["search:9"]))[0].as_py()
    assert table["label"].to_pylist() == [1, 1, 1]
    assert table["query"].to_pylist() == [None, None, None]


# -------------------------------------------------------------------------------- bad inputs


def lake_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def assert_rejected(cfg: Config, *fragments: str) -> IngestError:
    """ingest raises IngestError naming every fragment, and the lake is exactly as before."""
    lake = Lake.from_config(cfg.lake)
    root = Path(cfg.lake.root)
    before = lake_files(root) if root.exists() else {}
    with pytest.raises(IngestError) as info:
        ingest(cfg, lake)
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))
    assert (lake_files(root) if root.exists() else {}) == before
    if not before:
        assert lake.partitions(IMPRESSIONS) == []
    return info.value


def bad_cfg(tmp_path: Path, header: list[str], rows: list[list[str]], **keys: Any) -> Config:
    """A good source first (which must not be written either), then the bad file."""
    bad = write_csv(tmp_path / "bad.csv", header, rows)
    return make_cfg(
        tmp_path, [good_source(tmp_path), {"path": str(bad), "vertical": "search"}], **keys
    )


def row(**changes: str) -> list[str]:
    values = dict(zip([*HEADER, "query"], [*GOOD[0], "q"], strict=True))
    values.update(changes)
    return list(values.values())


FULL = [*HEADER, "query"]


def test_missing_column_names_file_column_and_the_columns_present(tmp_path: Path) -> None:
    cfg = bad_cfg(tmp_path, HEADER, [GOOD[0]])  # search needs `query`
    assert_rejected(cfg, "bad.csv", "missing column(s) ['query']", "'timestamp', 'user'")


def test_text_in_a_dense_column_names_file_column_row_and_value(tmp_path: Path) -> None:
    cfg = bad_cfg(tmp_path, FULL, [row(), row(price="cheap")])
    assert_rejected(cfg, "bad.csv", "'price'", "row 2", "'cheap'", "numbers")


def test_label_2_is_rejected_with_file_column_row_and_value(tmp_path: Path) -> None:
    cfg = bad_cfg(tmp_path, FULL, [row(), row(), row(click="2")])
    assert_rejected(cfg, "bad.csv", "'click'", "row 3", "bad value 2", "0 or 1")


@pytest.mark.parametrize("label", ["", "NaN"])
def test_empty_or_nan_label_is_rejected(tmp_path: Path, label: str) -> None:
    cfg = bad_cfg(tmp_path, FULL, [row(click="1"), row(click=label)])
    assert_rejected(cfg, "bad.csv", "'click'", "row 2", "0 or 1")


def test_nan_float_label_is_rejected(tmp_path: Path) -> None:
    pq.write_table(
        pa.table(
            {
                "timestamp": ["2026-01-05T10:00:00"],
                "user": ["u"],
                "item": [1],
                "price": [1.0],
                "click": [float("nan")],
                "query": ["q"],
            }
        ),
        tmp_path / "bad.parquet",
    )
    cfg = make_cfg(
        tmp_path,
        [good_source(tmp_path), {"path": str(tmp_path / "bad.parquet"), "vertical": "search"}],
    )
    assert_rejected(cfg, "bad.parquet", "'click'", "row 1", "nan", "0 or 1")


@pytest.mark.parametrize("content", ["", ",".join(FULL) + "\n"], ids=["zero-bytes", "header-only"])
def test_empty_file_is_rejected_naming_it(tmp_path: Path, content: str) -> None:
    (tmp_path / "bad.csv").write_text(content)
    src = {"path": str(tmp_path / "bad.csv"), "vertical": "search"}
    cfg = make_cfg(tmp_path, [good_source(tmp_path), src])
    err = assert_rejected(cfg, str(tmp_path / "bad.csv"))
    assert "empty" in str(err) or "no rows" in str(err)


def test_a_row_longer_than_the_csv_block_names_file_line_and_limit(tmp_path: Path) -> None:
    huge = "x" * (40 << 20)  # a runaway cell: 40 MiB in one row
    cfg = bad_cfg(tmp_path, FULL, [row(), row(), row(query=huge)])
    assert_rejected(cfg, "bad.csv", "line 4 is longer than 16 MiB", "the most one CSV row")
    # a large cell below the limit is read (and hashed like any categorical value)
    cfg = bad_cfg(tmp_path, FULL, [row(), row(query="y" * (5 << 20))])
    assert read_sources(cfg).num_rows == 5


def test_unparseable_timestamp_names_file_column_row_and_value(tmp_path: Path) -> None:
    cfg = bad_cfg(tmp_path, FULL, [row(), row(timestamp="yesterday noon")])
    assert_rejected(cfg, "bad.csv", "'timestamp'", "row 2", "'yesterday noon'", "ISO-8601")


def test_epoch_in_the_wrong_unit_is_rejected_with_a_hint(tmp_path: Path) -> None:
    bad = write_csv(tmp_path / "bad.csv", FULL, [row(timestamp="1767607200000")])  # ms as s
    cfg = make_cfg(tmp_path, [{"path": str(bad), "vertical": "search"}])
    assert_rejected(cfg, "bad.csv", "1767607200000", "timestamp_unit 's'")


def test_duplicate_example_id_across_sources_names_value_and_both_places(tmp_path: Path) -> None:
    header = [*FULL, "id"]
    a = write_csv(tmp_path / "a.csv", header, [[*row(), "1"], [*row(), "2"]])
    b = write_csv(tmp_path / "b.csv", header, [[*row(), "3"], [*row(), "2"]])
    sources = [{"path": str(a), "vertical": "feed"}, {"path": str(b), "vertical": "search"}]
    cfg = make_cfg(tmp_path, sources, example_id_column="id")
    assert_rejected(cfg, "duplicate example_id 2", "a.csv row 2", "b.csv row 2")


def test_unknown_vertical_names_file_value_and_allowed_verticals(tmp_path: Path) -> None:
    header = [*FULL, "surface"]
    bad = write_csv(tmp_path / "bad.csv", header, [[*row(), "feed"], [*row(), "reels"]])
    cfg = make_cfg(tmp_path, [good_source(tmp_path), {"path": str(bad)}], vertical_column="surface")
    assert_rejected(cfg, "bad.csv", "'reels'", "row 2", "['feed', 'search']")


def test_missing_source_file_or_empty_glob_is_rejected_naming_the_path(tmp_path: Path) -> None:
    for path in (tmp_path / "nope.csv", tmp_path / "nope" / "*.csv"):
        cfg = make_cfg(tmp_path, [good_source(tmp_path), {"path": str(path), "vertical": "feed"}])
        assert_rejected(cfg, "ingest.sources[1].path", str(path))


def test_lookup_with_duplicate_keys_names_the_file_and_key(tmp_path: Path) -> None:
    lookup = write_csv(
        tmp_path / "items.csv", ["item", "brand"], [["7", "a"], ["8", "b"], ["7", "c"]]
    )
    src = {**good_source(tmp_path), "lookups": [{"path": str(lookup), "key": "item"}]}
    assert_rejected(make_cfg(tmp_path, [src]), "items.csv", "'item' = '7'", "rows [1, 3]")


def test_lookup_columns_are_left_joined_in_source_order(tmp_path: Path) -> None:
    header = ["timestamp", "user", "item", "click"]
    rows = [[g[0], g[1], g[2], g[4]] for g in GOOD] + [["2026-01-05T12:00:00Z", "u3", "99", "0"]]
    source = write_csv(tmp_path / "feed.csv", header, rows)
    lookup = write_csv(tmp_path / "items.csv", ["item", "price"], [["8", "4.5"], ["7", "3.0"]])
    src = {
        "path": str(source),
        "vertical": "feed",
        "lookups": [{"path": str(lookup), "key": "item"}],
    }
    table = read_sources(make_cfg(tmp_path, [src]))
    assert table["price"].to_pylist() == [3.0, 4.5, 3.0, None]


def test_bad_input_leaves_an_earlier_partition_unchanged(tmp_path: Path) -> None:
    good = make_cfg(tmp_path, [good_source(tmp_path)])
    ingest(good, Lake.from_config(good.lake))
    assert len(Lake.from_config(good.lake).partitions(IMPRESSIONS)) == 2
    rows = [row(timestamp="2026-01-05T10:00:00Z", click="1"), row(click="7")]
    bad = write_csv(tmp_path / "bad.csv", FULL, rows)
    cfg = make_cfg(tmp_path, [{"path": str(bad), "vertical": "feed"}])
    assert_rejected(cfg, "bad.csv", "row 2", "bad value 7")


# ------------------------------------------------------------------------- declared id types


def user_file(path: Path, *users: str) -> dict[str, Any]:
    """A feed source whose rows differ only in their user id."""
    rows = [[GOOD[0][0], user, *GOOD[0][2:]] for user in users]
    return {"path": str(write_csv(path, HEADER, rows)), "vertical": "feed"}


def user_ids(tmp_path: Path, sources: list[dict[str, Any]], id_type: str) -> list[int | None]:
    return read_sources(make_cfg(tmp_path, sources, id_types={"user": id_type}))["user"].to_pylist()


def test_one_text_id_in_one_file_is_an_error_under_int_and_no_split_under_string(
    tmp_path: Path,
) -> None:
    # the bug: once decided per file, "abc" in b.csv made that file's "11" a hash, a.csv's 11
    sources = [
        user_file(tmp_path / "a.csv", "11", "12"),
        user_file(tmp_path / "b.csv", "11", "abc"),
    ]
    cfg = make_cfg(tmp_path, sources, id_types={"user": "int"})
    assert_rejected(
        cfg, "b.csv", "column 'user'", "row 2", "bad value 'abc'", "ingest.id_types.user: string"
    )
    got = user_ids(tmp_path, sources, "string")
    eleven, twelve, abc = hash_text(pa.array(["11", "12", "abc"])).to_pylist()
    assert got == [eleven, twelve, eleven, abc], "the same raw id, the same lake id in every file"


def test_id_type_applies_to_every_categorical_and_id_types_overrides_it(tmp_path: Path) -> None:
    src = user_file(tmp_path / "a.csv", "7", "-8", "007")
    table = read_sources(make_cfg(tmp_path, [src], id_type="string", id_types={"user": "int"}))
    assert table["user"].to_pylist() == [7, -8, 7], "integer text is kept as the integer"
    assert table["item"].to_pylist() == hash_text(pa.array(["feed:7"] * 3)).to_pylist()
    cfg = make_cfg(tmp_path, [src], id_type="string", id_types={})
    assert (
        read_sources(cfg)["user"].to_pylist() == hash_text(pa.array(["7", "-8", "007"])).to_pylist()
    )


@pytest.mark.parametrize(
    "value",
    ["9223372036854775808", "-9223372036854775809", "99999999999999999999", "1e3", "11.0", "+5",
     " 7", "0x1f", "NA", "\u0661"],
)  # fmt: skip
def test_a_value_that_is_not_an_int64_is_an_error_under_int(tmp_path: Path, value: str) -> None:
    src = user_file(tmp_path / "ids.csv", "1", value)
    cfg = make_cfg(tmp_path, [src], id_types={"user": "int"})
    assert_rejected(cfg, "ids.csv", "'user'", "row 2", repr(value), "fits int64")
    assert user_ids(tmp_path, [src], "string") == hash_text(pa.array(["1", value])).to_pylist()


def test_the_int64_limits_are_integer_ids(tmp_path: Path) -> None:
    src = user_file(tmp_path / "ids.csv", "9223372036854775807", "-9223372036854775808", "")
    assert user_ids(tmp_path, [src], "int") == [2**63 - 1, -(2**63), None]


def _parquet_source(tmp_path: Path, user: pa.Array, name: str = "ids") -> dict[str, Any]:
    n = len(user)
    table = pa.table(
        {
            "timestamp": ["2026-01-05T10:00:00Z"] * n,
            "user": user,
            "item": pa.array([7] * n, pa.int64()),
            "price": [1.0] * n,
            "click": [0] * n,
        }
    )
    pq.write_table(table, tmp_path / f"{name}.parquet")
    return {"path": str(tmp_path / f"{name}.parquet"), "vertical": "feed"}


def test_integer_columns_are_kept_under_int_and_hashed_as_their_text_under_string(
    tmp_path: Path,
) -> None:
    ints = _parquet_source(tmp_path, pa.array([11, None, -3], pa.int32()))
    text = user_file(tmp_path / "text.csv", "11", "", "-3")
    assert user_ids(tmp_path, [ints, text], "int") == [11, None, -3] * 2
    as_text = hash_text(pa.array(["11", None, "-3"])).to_pylist()
    assert user_ids(tmp_path, [ints, text], "string") == as_text * 2, "int 11 and '11': one id"
    big = _parquet_source(tmp_path, pa.array([1, 2**64 - 1], pa.uint64()), "big")
    cfg = make_cfg(tmp_path, [big], id_types={"user": "int"})
    assert_rejected(cfg, "big.parquet", "'user'", "row 2", "18446744073709551615", "int64")
    assert (
        user_ids(tmp_path, [big], "string")
        == hash_text(pa.array(["1", "18446744073709551615"])).to_pylist()
    )


def test_float_columns_of_whole_numbers_are_integer_ids_under_both_types(tmp_path: Path) -> None:
    floats = _parquet_source(tmp_path, pa.array([11.0, float("nan"), None, -3.0]))
    assert user_ids(tmp_path, [floats], "int") == [11, None, None, -3]
    assert (
        user_ids(tmp_path, [floats], "string")
        == hash_text(pa.array(["11", None, None, "-3"])).to_pylist()
    )
    for i, bad in enumerate((1.5, float("inf"), 2.0**60)):
        src = _parquet_source(tmp_path, pa.array([1.0, bad]), f"bad{i}")
        for id_type in ("int", "string"):
            cfg = make_cfg(tmp_path, [src], id_types={"user": id_type})
            assert_rejected(cfg, f"bad{i}.parquet", "'user'", "row 2", repr(bad), "2**53")


def test_namespaced_ids_are_the_same_under_both_types(tmp_path: Path) -> None:
    src = user_file(tmp_path / "a.csv", "u", "u")
    ids = {
        t: read_sources(make_cfg(tmp_path, [src], id_types={"user": "string", "item": t}))["item"]
        for t in ("int", "string")
    }
    assert ids["int"].equals(ids["string"])
    assert ids["int"].to_pylist() == hash_text(pa.array(["feed:7", "feed:7"])).to_pylist()


def test_csv_text_such_as_na_or_null_is_an_id_not_a_null(tmp_path: Path) -> None:
    src = user_file(tmp_path / "a.csv", "NA", "null", "nan", "")
    got = user_ids(tmp_path, [src], "string")
    assert got == hash_text(pa.array(["NA", "null", "nan", None])).to_pylist()


def test_id_types_must_name_categorical_features(tmp_path: Path) -> None:
    for id_types, message in (
        ({"nope": "int"}, "ingest.id_types.nope: not a categorical feature"),
        ({"price": "string"}, "ingest.id_types.price: not a categorical feature"),
        ({"user": "float"}, "ingest.id_types.user = 'float' is not allowed"),
    ):
        with pytest.raises(ConfigError, match=re.escape(message)):
            make_cfg(tmp_path, [], id_types=id_types)
    with pytest.raises(ConfigError, match="ingest.id_type = 'text' is not allowed"):
        make_cfg(tmp_path, [], id_type="text")

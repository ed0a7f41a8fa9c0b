"""The lake on local disk and on a real S3 endpoint (moto's server over HTTP): round trips,
idempotent rewrites, crashes between staging and publish, identifiers, concurrency, bad files."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import boto3
import duckdb
import pyarrow as pa
import pytest

from exfm import ids
from exfm.errors import IdentifierError, LakeError
from exfm.lake import CHECKS, DAS, IMPRESSIONS, Dataset, Lake
from exfm.s3 import S3Store

P1 = {"ds": "2026-01-05", "vertical": "feed"}


def _table(n: int, gen: int = 0) -> pa.Table:
    return pa.table({"x": pa.array(range(n), pa.int64()), "gen": pa.array([gen] * n, pa.int32())})


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def any_lake(request: pytest.FixtureRequest, tmp_path: Path) -> Lake:
    if request.param == "local":
        return Lake(str(tmp_path / "lake"))
    return Lake(request.getfixturevalue("s3_root"))


def test_round_trip_adds_partition_columns(any_lake: Lake) -> None:
    info = any_lake.write_partition(IMPRESSIONS, P1, _table(5))
    assert info.rows == 5 and info.bytes > 0
    back = any_lake.read_partition(IMPRESSIONS, P1)
    assert back.column("x").to_pylist() == [0, 1, 2, 3, 4]
    assert set(back.column("ds").to_pylist()) == {"2026-01-05"}
    assert set(back.column("vertical").to_pylist()) == {"feed"}
    assert any_lake.has_partition(IMPRESSIONS, P1)


def test_rewrite_replaces_and_never_duplicates(any_lake: Lake) -> None:
    any_lake.write_partition(IMPRESSIONS, P1, _table(5, gen=1))
    any_lake.write_partition(IMPRESSIONS, P1, _table(3, gen=2))
    any_lake.write_partition(IMPRESSIONS, P1, _table(3, gen=2))
    back = any_lake.read_partition(IMPRESSIONS, P1)
    assert back.num_rows == 3
    assert set(back.column("gen").to_pylist()) == {2}
    assert any_lake.partitions(IMPRESSIONS) == [P1]


def test_range_reads_and_filters(any_lake: Lake) -> None:
    for day in ids.ds_range("2026-01-05", "2026-01-08"):
        for vertical in ("feed", "video"):
            any_lake.write_partition(IMPRESSIONS, {"ds": day, "vertical": vertical}, _table(2))
    got = any_lake.read(IMPRESSIONS, ds_start="2026-01-06", ds_end="2026-01-07", vertical="video")
    assert got.num_rows == 4
    assert sorted(set(got.column("ds").to_pylist())) == ["2026-01-06", "2026-01-07"]
    assert set(got.column("vertical").to_pylist()) == {"video"}
    assert len(any_lake.partitions(IMPRESSIONS, ds="2026-01-08")) == 2
    every = any_lake.partitions(IMPRESSIONS)
    for days in (
        ["2026-01-08", "2026-01-05", "2027-01-01"],
        ids.ds_range("2025-12-01", "2026-01-06"),
    ):
        # a few days are listed one prefix each, many in one listing: the same partitions
        expected = [p for p in every if p["ds"] in days]
        assert any_lake.partitions(IMPRESSIONS, ds=days) == expected
        assert any_lake.partitions(IMPRESSIONS, ds=days, vertical="feed") == [
            p for p in expected if p["vertical"] == "feed"
        ]
    con = duckdb.connect()
    rel = any_lake.relation(con, IMPRESSIONS, ds_start="2026-01-05", ds_end="2026-01-08")
    assert rel.aggregate("count(*)").fetchall() == [(16,)]
    with pytest.raises(
        LakeError, match=r"no partitions of .* match \{'ds': '2027-01-01..2027-01-02'"
    ):
        any_lake.read(IMPRESSIONS, ds_start="2027-01-01", ds_end="2027-01-02")
    with pytest.raises(LakeError, match="das holds no partitions yet"):
        any_lake.read(DAS)


def test_other_layouts(any_lake: Lake) -> None:
    any_lake.write_partition(DAS, {"fm_version": "fm-2026-01-04", "ds": "2026-01-05"}, _table(2))
    any_lake.write_partition(CHECKS, {"ds": "2026-01-05"}, _table(1))
    assert any_lake.partitions(DAS) == [{"fm_version": "fm-2026-01-04", "ds": "2026-01-05"}]
    assert any_lake.read(DAS, fm_version="fm-2026-01-04").column("fm_version")[0].as_py() == (
        "fm-2026-01-04"
    )
    assert any_lake.read(CHECKS, ds_start="2026-01-05").num_rows == 1


def test_objects_round_trip(any_lake: Lake) -> None:
    any_lake.put_bytes("registry/fm/ds=2026-01-05/model.pt", b"abc")
    any_lake.put_bytes("registry/fm/ds=2026-01-05/model.pt", b"abcd")
    assert any_lake.get_bytes("registry/fm/ds=2026-01-05/model.pt") == b"abcd"
    assert any_lake.exists("registry/fm/ds=2026-01-05/model.pt")
    assert any_lake.list_keys("registry/fm") == ["registry/fm/ds=2026-01-05/model.pt"]
    with pytest.raises(LakeError, match="does not exist"):
        any_lake.get_bytes("registry/fm/ds=2026-01-06/model.pt")
    with pytest.raises(LakeError, match="invalid object key"):
        any_lake.put_bytes("registry/../../etc/passwd", b"x")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"ds": "2026-01-05", "vertical": "../x"}, "invalid vertical '../x'"),
        ({"ds": "2024-13-40", "vertical": "feed"}, "invalid ds '2024-13-40'"),
        ({"ds": "2026-1-5", "vertical": "feed"}, "invalid ds '2026-1-5'"),
        ({"ds": "2026-01-05", "vertical": "Feed"}, "invalid vertical 'Feed'"),
        ({"ds": "2026-01-05", "vertical": "a/b"}, "invalid vertical 'a/b'"),
    ],
)
def test_identifiers_are_validated_before_any_io(
    tmp_path: Path, values: dict[str, str], message: str
) -> None:
    lake = Lake(str(tmp_path / "lake"))
    with pytest.raises(IdentifierError, match=message.replace("(", r"\(")):
        lake.write_partition(IMPRESSIONS, values, _table(1))
    assert not (tmp_path / "lake").exists() or not any((tmp_path / "lake").rglob("*.parquet"))


def test_identifier_patterns() -> None:
    with pytest.raises(IdentifierError):
        Dataset("../x", ("ds",))
    with pytest.raises(IdentifierError):
        ids.version("fm..1")
    with pytest.raises(LakeError, match="partitioned by"):
        IMPRESSIONS.rel_dir({"ds": "2026-01-05"})
    assert ids.ds_range("2026-02-27", "2026-03-01") == ["2026-02-27", "2026-02-28", "2026-03-01"]
    with pytest.raises(IdentifierError, match="empty ds range"):
        ids.ds_range("2026-03-01", "2026-02-27")


def test_a_table_must_not_carry_partition_columns(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    with pytest.raises(LakeError, match="partition values live in the path"):
        lake.write_partition(IMPRESSIONS, P1, pa.table({"ds": ["2026-01-05"]}))


def test_local_crash_between_staging_and_publish_keeps_the_previous_partition(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake = Lake(str(tmp_path / "lake"))
    lake.write_partition(IMPRESSIONS, P1, _table(4, gen=1))

    def crash(*_args: object) -> None:
        raise OSError("simulated crash before the rename")

    monkeypatch.setattr("exfm.stores.os.replace", crash)
    with pytest.raises(LakeError, match="simulated crash"):
        lake.write_partition(IMPRESSIONS, P1, _table(9, gen=2))
    monkeypatch.undo()
    back = lake.read_partition(IMPRESSIONS, P1)
    assert back.num_rows == 4 and set(back.column("gen").to_pylist()) == {1}
    assert list((tmp_path / "lake" / "impressions").rglob("*.parquet")) == [
        tmp_path / "lake" / "impressions" / "ds=2026-01-05" / "vertical=feed" / "part.parquet"
    ]


def test_local_hard_kill_leftovers_are_invisible_and_collected(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    lake.write_partition(IMPRESSIONS, P1, _table(4))
    leftover = tmp_path / "lake" / "_staging" / "20260101T000000Z-dead" / "part.parquet"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"half a parquet file")
    assert lake.read(IMPRESSIONS).num_rows == 4
    assert lake.gc(older_than_s=3600) == 0  # too young: might belong to a running writer
    assert lake.gc(older_than_s=0) == 1
    assert not leftover.exists()


def test_s3_crash_before_the_manifest_keeps_the_previous_partition(
    s3_root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake = Lake(s3_root)
    lake.write_partition(IMPRESSIONS, P1, _table(4, gen=1))

    def crash(*_args: object) -> None:
        raise LakeError("simulated crash before the manifest")

    monkeypatch.setattr(S3Store, "_put_manifest", crash)
    with pytest.raises(LakeError, match="simulated crash"):
        lake.write_partition(IMPRESSIONS, P1, _table(9, gen=2))
    monkeypatch.undo()
    back = lake.read_partition(IMPRESSIONS, P1)
    assert back.num_rows == 4 and set(back.column("gen").to_pylist()) == {1}
    staged = [k for k in lake.list_keys("impressions") if "/_writes/" in k]
    assert len(staged) == 2  # the published file and the orphan of the crashed write
    assert lake.gc(older_than_s=0) == 1
    assert lake.read_partition(IMPRESSIONS, P1).num_rows == 4


def test_s3_keeps_only_the_current_and_previous_generation(s3_root: str) -> None:
    lake = Lake(s3_root)
    for gen in range(4):
        lake.write_partition(IMPRESSIONS, P1, _table(2, gen=gen))
    staged = [k for k in lake.list_keys("impressions") if "/_writes/" in k]
    assert len(staged) == 2
    lake.delete_partition(IMPRESSIONS, P1)
    assert lake.list_keys("impressions") == []
    assert lake.partitions(IMPRESSIONS) == []


def test_corrupt_files_fail_with_the_path(tmp_path: Path, s3_root: str) -> None:
    local = Lake(str(tmp_path / "lake"))
    local.write_partition(IMPRESSIONS, P1, _table(4))
    part = tmp_path / "lake" / "impressions" / "ds=2026-01-05" / "vertical=feed" / "part.parquet"
    part.write_bytes(b"not parquet at all")
    with pytest.raises(LakeError, match="vertical=feed"):
        local.read(IMPRESSIONS)

    remote = Lake(s3_root)
    remote.write_partition(IMPRESSIONS, P1, _table(4))
    bucket, prefix = s3_root.removeprefix("s3://").split("/", 1)
    boto3.client("s3").put_object(
        Bucket=bucket,
        Key=f"{prefix}/impressions/ds=2026-01-05/vertical=feed/_manifest.json",
        Body=b"{broken",
    )
    with pytest.raises(LakeError, match=r"_manifest.json is corrupt"):
        remote.read(IMPRESSIONS)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_s3_fails_after_bounded_retries(
    s3_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{_closed_port()}")
    lake = Lake("s3://nobody-home/x", s3_max_attempts=2, s3_connect_timeout_s=0.5)
    started = time.monotonic()
    with pytest.raises(LakeError) as e:
        lake.write_partition(IMPRESSIONS, P1, _table(1))
    assert "did not answer after 2 attempts" in str(e.value)
    assert "s3://nobody-home/x/impressions/ds=2026-01-05/vertical=feed" in str(e.value)
    assert time.monotonic() - started < 30
    with pytest.raises(LakeError, match="did not answer"):
        lake.partitions(IMPRESSIONS)


def test_each_store_signs_with_the_credentials_of_the_environment_it_was_made_in(
    s3_root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # boto3's default session resolves credentials once per process: made with it, the second
    # store would sign with the first's key while its pyarrow filesystem used the new one
    first = S3Store(s3_root)
    assert first.client.list_objects_v2(Bucket=first.bucket)["KeyCount"] == 0
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "rotated")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "rotated-secret")
    second = S3Store(s3_root)
    assert second.client._request_signer._credentials.access_key == "rotated"
    assert first.client._request_signer._credentials.access_key == "testing"
    second.put_bytes("probe", b"x")  # moto accepts any key: the request itself goes through
    assert second.get_bytes("probe") == b"x"


def test_missing_bucket_is_named(s3_env: dict[str, str]) -> None:
    with pytest.raises(LakeError, match="bucket 'no-such-bucket' does not exist"):
        Lake("s3://no-such-bucket/x").write_partition(IMPRESSIONS, P1, _table(1))


def test_readers_never_see_a_partial_partition_while_a_writer_rewrites(any_lake: Lake) -> None:
    """Readers in threads read the partition over and over while it is rewritten with tables of
    different sizes: every read is one whole generation."""
    sizes = {gen: 1000 + 7919 * gen for gen in range(8)}
    any_lake.write_partition(IMPRESSIONS, P1, _table(sizes[0], gen=0))
    seen: list[tuple[int, set[int]]] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        try:
            while not stop.is_set():
                t = any_lake.read_partition(IMPRESSIONS, P1, columns=["gen"])
                seen.append((t.num_rows, set(t.column("gen").to_pylist())))
        except BaseException as e:  # collected and re-raised in the main thread
            errors.append(e)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for gen in range(1, 8):
        any_lake.write_partition(IMPRESSIONS, P1, _table(sizes[gen], gen=gen))
    stop.set()
    for t in threads:
        t.join()
    assert not errors, errors
    assert seen
    for rows, gens in seen:
        assert len(gens) == 1
        assert rows == sizes[next(iter(gens))]


def test_manifest_names_only_staged_files(s3_root: str) -> None:
    lake = Lake(s3_root)
    lake.write_partition(IMPRESSIONS, P1, _table(3))
    bucket, prefix = s3_root.removeprefix("s3://").split("/", 1)
    key = f"{prefix}/impressions/ds=2026-01-05/vertical=feed/_manifest.json"
    manifest = json.loads(boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())
    assert manifest["format"] == 1
    assert manifest["files"] == [f"_writes/{manifest['write_id']}/part.parquet"]


def test_content_ids_name_what_a_reader_reads(any_lake: Lake) -> None:
    assert any_lake.content_id(IMPRESSIONS, P1) is None
    first = any_lake.write_partition(IMPRESSIONS, P1, _table(5, gen=1))
    assert any_lake.content_id(IMPRESSIONS, P1) == first.write_id
    name = "impressions/ds=2026-01-05/vertical=feed"
    assert first.name == name and any_lake.content_ids(IMPRESSIONS) == {name: first.write_id}
    # the same content again, when asked: kept, same id, nothing written
    same = any_lake.write_partition(IMPRESSIONS, P1, _table(5, gen=1), keep_if_same=True)
    assert same.kept and same.write_id == first.write_id
    # other content, or other metadata, or not asked: a new id
    other = any_lake.write_partition(IMPRESSIONS, P1, _table(5, gen=2), keep_if_same=True)
    assert not other.kept and other.write_id != first.write_id
    tagged = any_lake.write_partition(
        IMPRESSIONS, P1, _table(5, gen=2), metadata={"exfm.source": "x"}, keep_if_same=True
    )
    assert not tagged.kept
    again = any_lake.write_partition(
        IMPRESSIONS, P1, _table(5, gen=2), metadata={"exfm.source": "x"}
    )
    assert again.write_id != tagged.write_id
    table, read = any_lake.read_with_ids(IMPRESSIONS, ds=["2026-01-05"])
    assert read == {name: again.write_id} and table.num_rows == 5
    assert any_lake.partition_metadata(IMPRESSIONS, P1)["exfm.write_id"] == again.write_id
    with pytest.raises(LakeError, match="no partitions"):
        any_lake.read_with_ids(IMPRESSIONS, ds=["2026-01-06"])


def test_read_with_ids_reads_again_when_a_writer_replaces_the_partition(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    lake.write_partition(IMPRESSIONS, P1, _table(5, gen=1))
    real_read = Lake.read
    calls = {"n": 0}

    def read_then_rewrite(self: Lake, *args: object, **kwargs: object) -> pa.Table:
        table = real_read(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 1:  # a writer lands new content right after this read
            self.write_partition(IMPRESSIONS, P1, _table(3, gen=2))
        return table

    lake.read = read_then_rewrite.__get__(lake)  # type: ignore[method-assign]
    table, read = lake.read_with_ids(IMPRESSIONS, ds=["2026-01-05"])
    assert calls["n"] == 2  # the first read no longer matched its ids: read again
    assert set(table.column("gen").to_pylist()) == {2}
    assert read == {"impressions/ds=2026-01-05/vertical=feed": lake.content_id(IMPRESSIONS, P1)}


def test_a_file_copied_in_by_hand_gets_its_sha256_as_content_id(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    lake = Lake(str(tmp_path / "lake"))
    folder = tmp_path / "lake" / "impressions" / "ds=2026-01-05" / "vertical=feed"
    folder.mkdir(parents=True)
    pq.write_table(_table(4), folder / "part.parquet")
    found = lake.content_id(IMPRESSIONS, P1)
    assert found is not None and found.startswith("sha256-") and len(found) == 7 + 64

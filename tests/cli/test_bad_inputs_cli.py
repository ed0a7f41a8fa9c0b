"""Bad inputs through the real command line, as a new user or an attacker types them: each is one
clear error on the first line of stderr, exit code 2, and the lake's content is what it was.

One small lake (two simulated days, checked) serves every case; each case runs `exfm` in a
subprocess with that lake's params file.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from exfm.lake import IMPRESSIONS, Lake
from tests.conftest import run_exfm, small_project

pytestmark = pytest.mark.slow

D1, D2 = "2026-01-05", "2026-01-06"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bad_inputs")
    params = small_project(root, "world.days=2")
    done = run_exfm("world", "generate", "--params", str(params))
    assert done.returncode == 0, done.stderr
    done = run_exfm("check", "--start", D1, "--end", D2, "--params", str(params))
    assert done.returncode == 0, done.stderr
    # third-party INFO chatter (Great Expectations' hundreds of lines) stays out
    assert "great_expectations" not in done.stderr, done.stderr[:2000]
    (root / "dup.yaml").write_text(params.read_text() + "world:\n  days: 3\n")
    # impressions of a day the lake has, one of whose user ids is text (user_id is declared int)
    header = "timestamp,label,user_id,ad_id,advertiser_id,category_id,context_id,position,hour,"
    header += "user_ctr_hist,ad_ctr_hist,user_log_views,ad_log_views\n"
    rows = [f"{D1}T10:00:00Z,0,{user},5,6,7,8,1,10,0.1,0.1,1.0,1.0\n" for user in ("11", "abc")]
    (root / "ids.csv").write_text(header + "".join(rows))
    return root


# (arguments, the start of the error's first line); {p}: the params file, {root}: the project
CASES = [
    # exfm sql is a read-only query tool
    (["sql", "COPY (SELECT 42 AS x) TO '{root}/lake/impressions/ds=2026-01-05/vertical=feed/"
      "part.parquet' (FORMAT parquet)"], "refused: COPY statement"),
    (["sql", "ATTACH '{root}/other.duckdb' (READ_WRITE)"], "refused: ATTACH statement"),
    (["sql", "INSTALL httpfs"], "refused: LOAD statement"),
    (["sql", "SET enable_external_access = true"], "refused: SET statement"),
    (["sql", "CREATE TABLE x AS SELECT 1"], "refused: CREATE statement"),
    (["sql", "DROP VIEW impressions"], "refused: DROP statement"),
    (["sql", "DELETE FROM impressions"], "refused: DELETE statement"),
    (["sql", "select 1; select 2"], "exfm sql runs one statement at a time"),
    (["sql", "select * from read_text('/proc/self/environ')"], "query failed: Permission Error"),
    (["sql", "select * from read_csv('/etc/passwd', sep = ':')"], "query failed: Permission"),
    (["sql", "select * from no_such_table"], "query failed: Catalog Error"),
    (["sql", "selec 1"], "query failed: Parser Error"),
    # the config
    (["config", "show", "--params", "{root}/missing.yaml"], "params file"),
    (["config", "show", "--params", "{root}/dup.yaml"], "params file"),
    (["config", "show", "--set", "world.days=0"], "world.days = 0 is out of range"),
    (["config", "show", "--set", "lake.compression=lz4"], "lake.compression = 'lz4' is not"),
    (["config", "show", "--set", "nope.x=1"], "unknown key nope"),
    (["config", "show", "--set", "world.days"], "override 'world.days' must look like"),
    (["config", "get", "world.nope"], "no config key 'world.nope'"),
    # days, verticals and ranges
    (["world", "generate", "--days", "100000000"],
     "--days 100000000: world.days = 100000000 is out of range"),
    (["world", "generate", "--days", "0"], "--days 0: world.days = 0 is out of range"),
    (["world", "generate", "--start-ds", "2026-13-01"], "--start-ds 2026-13-01: world.start_ds"),
    (["check", "--ds", "2026-13-01"], "invalid ds '2026-13-01'"),
    (["vm", "train", "--vertical", "../x", "--ds", D2], "unknown vertical '../x'"),
    (["vm", "train", "--vertical", "nope", "--ds", D2], "unknown vertical 'nope'"),
    (["das", "join", "--ds", D2, "--vertical", "nope"], "unknown vertical 'nope'"),
    (["pipeline", "vm", "--vertical", "nope"], "unknown vertical 'nope'"),
    (["das", "backfill", "--ds", "2026-13-01"], "invalid ds '2026-13-01'"),
    (["lake", "summary", "--start", "2026-13-01"], "invalid ds '2026-13-01'"),
    (["lineage", "2026-13-01"], "invalid ds '2026-13-01'"),
    (["evaluate", "--start", "2026-02-30"], "invalid ds '2026-02-30'"),
    (["check", "--start", D2, "--end", D1], "empty ds range: end 2026-01-05 is before start"),
    (["fm", "train", "--ds", "2099-01-01"], "ds=2099-01-01 was never checked"),
    (["fm", "train", "--ds", D2, "--nproc", "0"], "--nproc 0: give at least one process"),
    (["das", "stats", "--ds", D1], "no FM predictions for ds=2026-01-05"),
    (["lake", "ls", "nosuch"], "unknown dataset 'nosuch'"),
    (["lineage", "nosuch/thing"], "'nosuch/thing' is not an artifact name"),
    (["config", "show", "--set", "world.days=abc"], "world.days = 'abc' has the wrong type"),
    (["config", "show", "--set", "features.verticals=[]"], "features.verticals is empty"),
    (["config", "show", "--set", "checks.unchecked=maybe"], "checks.unchecked = 'maybe' is not"),
    (["config", "show", "--set", "world.verticals.feed.traffic_share=0.9"],
     "world.verticals.*.traffic_share sum to 1.4500"),
    (["sql", "UPDATE impressions SET label = 1"], "refused: UPDATE statement"),
    (["sql", "INSERT INTO impressions SELECT * FROM impressions"], "refused: INSERT statement"),
    (["sql", "COPY impressions TO '{root}/dump.csv'"], "refused: COPY statement"),
    (["sql", "EXPORT DATABASE '{root}/dump'"], "refused: EXPORT statement"),
    (["sql", "PRAGMA enable_profiling"], "refused: PRAGMA statement"),
    (["sql", "CALL pragma_version()"], "refused: CALL statement"),
    (["sql", "select * from glob('/*')"], "query failed: Permission Error"),
    # outputs that cannot be written
    (["report", "--out", "/dev/null/x"], "cannot write the drift reports to /dev/null/x"),
    (["report", "--out", "{root}/params.yaml"], "cannot write the drift reports to"),
    (["config", "show", "--log", "botocore"], "--log 'botocore': give LOGGER=LEVEL"),
    # ingest: ids of the declared type only
    (["ingest", "--set", "ingest.sources=[{{path: '{root}/ids.csv', vertical: search}}]"],
     "{root}/ids.csv, column 'user_id', row 2: bad value 'abc'; expected an integer id"),
    (["ingest", "--set", "ingest.id_types.position=string"],
     "ingest.id_types.position: not a categorical feature"),
    (["ingest", "--set", "ingest.id_type=text"], "ingest.id_type = 'text' is not allowed"),
]  # fmt: skip


@pytest.mark.parametrize(("args", "first_line"), CASES, ids=[" ".join(c[0])[:60] for c in CASES])
def test_a_bad_input_is_one_clear_error_and_changes_nothing(
    project: Path, args: list[str], first_line: str
) -> None:
    params = project / "params.yaml"
    lake = Lake(str(project / "lake"))
    before = lake.content_ids(IMPRESSIONS)
    argv = [a.format(root=project) for a in args]
    if "--params" not in argv:
        argv += ["--params", str(params)]
    done = run_exfm(*argv, timeout=120)
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("exfm: error: ")]
    assert lines, done.stderr[-2000:]
    expected = first_line.format(root=project)
    assert lines[0].removeprefix("exfm: error: ").startswith(expected), lines[0]
    assert lake.content_ids(IMPRESSIONS) == before
    assert not (project / "other.duckdb").exists() and not (project / "dump").exists()
    assert not (project / "dump.csv").exists()


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    for i in range(len(data) // 4, len(data) // 2, 7):  # pages, not the footer
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [_truncate, _flip], ids=["truncated", "bit-flipped"])
def test_a_corrupt_partition_is_named_and_a_check_that_cannot_run_is_not_a_pass(
    tmp_path: Path, damage: object
) -> None:
    lake_root = tmp_path / "lake"
    params = small_project(tmp_path)
    assert run_exfm("world", "generate", "--params", str(params)).returncode == 0
    checked = run_exfm(
        "check", "--start", "2026-01-05", "--end", "2026-01-07", "--params", str(params)
    )
    assert checked.returncode == 0, checked.stderr[-2000:]
    partition = lake_root / "impressions" / "ds=2026-01-07" / "vertical=feed"
    [file] = partition.glob("*.parquet")
    damage(file)  # type: ignore[operator]

    done = run_exfm("check", "--ds", "2026-01-07", "--params", str(params))
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith("exfm: error: ds=2026-01-07 cannot be checked: ")
    assert "ds=2026-01-07/vertical=feed" in line
    assert "its earlier check result was removed" in line
    assert not (lake_root / "checks" / "ds=2026-01-07" / "result.json").exists()
    assert (lake_root / "checks" / "ds=2026-01-06" / "result.json").exists()  # others kept

    done = run_exfm("fm", "train", "--ds", "2026-01-07", "--params", str(params))
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    done = run_exfm("sql", "select sum(label) from impressions", "--params", str(params))
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "ds=2026-01-07/vertical=feed" in done.stderr

"""Property tests (Hypothesis): random malformed inputs never produce a traceback or a write.

- the config loader (exfm/config.py): random params files and mappings, built from the schema's
  real sections and keys mutated with garbage, either load or raise ConfigError;
- ingest's id types (exfm/data/columns.py): random id columns, declared int or string, in CSV or
  parquet, either land with exactly the ids of the documented mapping (the module docstring of
  exfm/data/ingest.py), or raise IngestError naming the file, the column and the first bad row,
  with nothing written to the lake;
- the identifier checks (exfm/ids.py): random text is accepted exactly when it matches the
  documented pattern, otherwise IdentifierError.

Runs are reproducible (derandomize: the same examples on every run and machine) and leave nothing
in the repository: no example database, and Hypothesis' caches (and failure patches) go to a
folder in the system's temp directory instead of ./.hypothesis/.
"""

from __future__ import annotations

import copy
import csv
import datetime as dt
import math
import re
import string
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from exfm import ids
from exfm.config import Config, config_from_dict, load_config
from exfm.data.columns import hash_text
from exfm.data.ingest import ingest
from exfm.errors import ConfigError, IdentifierError, IngestError
from exfm.lake import IMPRESSIONS, Lake

set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "exfm-hypothesis")
PROPERTY = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# ------------------------------------------------------------------------------ config loader


def _leaf_keys(node: Any, where: str = "") -> list[str]:
    """Dotted keys of every leaf of the default params, inside mappings such as
    features.features.<name>.kind too."""
    if not isinstance(node, dict) or not node:
        return [where]
    return [k for name, v in node.items() for k in _leaf_keys(v, f"{where}.{name}".lstrip("."))]


def _at(node: Any, path: list[str]) -> Any:
    for part in path:
        node = node.get(part) if isinstance(node, dict) else None
    return node


# the default params (equal to the shipped file), their sections and leaf keys, garbage beside
PARAMS = config_from_dict({}).to_dict()
LEAF_KEYS = sorted(set(_leaf_keys(PARAMS)))
SECTIONS = sorted(Config.model_fields)
NAMES = st.one_of(
    st.sampled_from(SECTIONS + [k.rsplit(".", 1)[-1] for k in LEAF_KEYS]),
    st.sampled_from(["feed", "search", "user_id", "all", "nope", "", " ", "ds", "label"]),
    st.text(max_size=8),
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.dates(),
    st.sampled_from(["2026-01-05", "2026-13-40", "feed", "categorical", "int", "string", "s3://"]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(NAMES, inner, max_size=4)),
    max_leaves=12,
)


def similar(default: Any) -> st.SearchStrategy[Any]:
    """Values of the default's type, in and out of its allowed range."""
    if isinstance(default, bool):
        return st.booleans()
    if isinstance(default, int):
        return st.integers(-(2**40), 2**40) | st.integers(-3, default * 2 + 3)
    if isinstance(default, float):
        return st.floats() | st.floats(-2 * abs(default) - 1, 2 * abs(default) + 1)
    if isinstance(default, str):
        return st.sampled_from([default, "", "feed", "2026-01-05", "x/../y"]) | st.text()
    if isinstance(default, list):
        return st.lists(similar(default[0]) if default else SCALARS, max_size=4)
    return VALUES


@st.composite
def mutated_params(draw: st.DrawFn) -> dict[str, Any]:
    """The shipped params with a few keys (real or garbage, at any depth) set to values like
    their own or random ones, a few sections replaced or dropped."""
    raw: dict[Any, Any] = copy.deepcopy(PARAMS)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(LEAF_KEYS)).split(".")
        if draw(st.integers(0, 3)) == 0:  # a garbage key at some depth
            path = [*path[: draw(st.integers(0, len(path) - 1))], draw(NAMES)]
        value = draw(similar(_at(PARAMS, path)) | VALUES)
        node = raw
        for part in path[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[path[-1]] = value
    for section in draw(st.lists(st.sampled_from(SECTIONS), max_size=2)):
        if draw(st.integers(0, 3)) == 0:
            continue
        if draw(st.booleans()):
            raw.pop(section, None)
        else:
            raw[section] = draw(VALUES)
    return raw


def _loads_or_config_error(load: Any) -> None:
    try:
        cfg = load()
    except ConfigError as e:
        event("ConfigError")
        assert str(e), "a ConfigError says what was wrong"
    else:
        event("loaded")
        assert isinstance(cfg, Config)


@PROPERTY
@given(raw=mutated_params())
def test_a_mutated_params_file_loads_or_is_a_config_error(raw: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "params.yaml"
        path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
        _loads_or_config_error(lambda: load_config(path))
    _loads_or_config_error(lambda: config_from_dict(raw))


@PROPERTY
@given(
    raw=st.dictionaries(
        st.one_of(NAMES, st.integers(), st.none()), VALUES | st.sampled_from([{}]), max_size=5
    )
)
def test_a_random_mapping_loads_or_is_a_config_error(raw: dict[Any, Any]) -> None:
    _loads_or_config_error(lambda: config_from_dict(raw))


YAMLISH = st.lists(
    st.tuples(st.integers(0, 4), NAMES, st.sampled_from([":", ": ", ":: ", " - ", ""]), st.text()),
    max_size=8,
).map(lambda lines: "\n".join(f"{' ' * i}{k}{sep}{v}" for i, k, sep, v in lines))


@PROPERTY
@given(text=st.one_of(YAMLISH, st.text()), overrides=st.lists(st.text(max_size=30), max_size=3))
def test_random_yaml_text_and_overrides_load_or_are_a_config_error(
    text: str, overrides: list[str]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "params.yaml"
        path.write_text(text, encoding="utf-8")
        _loads_or_config_error(lambda: load_config(path))
        path.write_text("", encoding="utf-8")
        _loads_or_config_error(lambda: load_config(path, overrides))


def _flow(value: Any) -> str:
    """A value as YAML flow text, as typed after `--set key=`."""
    text = yaml.safe_dump(value, default_flow_style=True, width=2**16, allow_unicode=True)
    return text.removesuffix("\n").removesuffix("\n...").strip()


@PROPERTY
@given(key=st.sampled_from(LEAF_KEYS) | NAMES, data=st.data())
def test_a_random_override_of_a_real_key_loads_or_is_a_config_error(
    key: str, data: st.DataObject
) -> None:
    garbage = st.sampled_from(["[1, 2]", "{a: 1}", "[", "{", "!!python/object:os.system", ": x"])
    value = data.draw(similar(_at(PARAMS, key.split("."))).map(_flow) | garbage | st.text())
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "params.yaml"
        path.write_text("", encoding="utf-8")
        _loads_or_config_error(lambda: load_config(path, [f"{key}={value}"]))


# -------------------------------------------------------------------------------- ingest ids

BAD = object()  # a value the declared type refuses
_INT64 = range(-(2**63), 2**63)
_HEADER = ["timestamp", "user", "click"]
_TS = "2026-01-05T10:00:00Z"

# CSV text without line breaks (pyarrow's CSV reader takes none inside a cell: a file error)
CSV_TEXT = st.one_of(
    st.integers(min_value=-(2**64), max_value=2**64).map(str),
    st.sampled_from(
        ["9223372036854775807", "-9223372036854775808", "9223372036854775808", "007", "-0", "",
         "NA", "null", "nan", "1e3", "11.0", "+5", " 7", "0x1f", "\u0661", "\x00", '"', ","]
    ),
    st.text(st.characters(exclude_characters="\r\n"), max_size=10),
)  # fmt: skip


def _column(kind: pa.DataType, values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.tuples(st.just(kind), st.lists(st.none() | values, min_size=2, max_size=12))


PARQUET_COLUMNS = st.one_of(
    _column(pa.string(), st.text(max_size=10) | CSV_TEXT),
    _column(pa.int64(), st.integers(-(2**63), 2**63 - 1)),
    _column(pa.uint64(), st.integers(0, 2**64 - 1)),
    _column(
        pa.float64(),
        st.floats()
        | st.integers(-(2**54), 2**54).map(float)
        | st.sampled_from([2.0**53, -(2.0**53), 2.0**53 + 2, 0.5, -0.0]),
    ),
    _column(pa.bool_(), st.booleans()),
)


def _as_integer(value: Any) -> Any:
    """A raw value as the integer id it stands for (None: null; BAD: no integer)."""
    if value is None or isinstance(value, bool | int):
        return None if value is None else int(value)
    if isinstance(value, float):
        if math.isnan(value):
            return None
        whole = math.isfinite(value) and value == math.floor(value) and abs(value) <= 2.0**53
        return int(value) if whole else BAD
    return int(value) if re.fullmatch(r"-?[0-9]+", value) else BAD


def expected_id(value: Any, id_type: str, namespaced: bool) -> Any:
    """The documented mapping of one raw value onto its int64 id (None: null, BAD: an error)."""
    if value is None:
        return None
    if isinstance(value, str) and id_type == "string":
        text = value
    else:
        number = _as_integer(value)
        if number is None or number is BAD:
            return number
        if id_type == "int" and number not in _INT64:
            return BAD
        if id_type == "int" and not namespaced:
            return number
        text = str(number)
    return hash_text(pa.array([f"feed:{text}" if namespaced else text]))[0].as_py()


def _write(path: Path, fmt: str, column: tuple[pa.DataType, list[Any]]) -> Path:
    kind, values = column
    if fmt == "csv":
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(_HEADER)
            writer.writerows([_TS, v, 0] for v in values)
    else:
        n = len(values)
        table = pa.table({"timestamp": [_TS] * n, "user": pa.array(values, kind), "click": [0] * n})
        pq.write_table(table, path)
    return path


def _cfg(root: Path, sources: list[Path], id_type: str, namespaced: bool) -> Config:
    return config_from_dict(
        {
            "pipeline": {"source": "ingest"},
            "features": {
                "verticals": ["feed"],
                "features": {"user": {"kind": "categorical", "hash_buckets": 64}},
            },
            "lake": {"root": str(root / "lake"), "catalog": str(root / "c.duckdb")},
            "vm": {"features": ["user"]},
            "ingest": {
                "label_column": "click",
                "id_type": id_type,
                "namespace_by_vertical": ["user"] if namespaced else [],
                "sources": [{"path": str(p), "vertical": "feed"} for p in sources],
            },
        }
    )


@st.composite
def id_files(draw: st.DrawFn) -> tuple[str, list[tuple[pa.DataType, list[Any]]]]:
    """A format and two files' id columns of one type (each file at least one row)."""
    if draw(st.booleans()):
        values = draw(st.lists(CSV_TEXT, min_size=2, max_size=12))
        kind = pa.string()
        fmt = "csv"
    else:
        kind, values = draw(PARQUET_COLUMNS)
        fmt = "parquet"
    cut = draw(st.integers(1, len(values) - 1))
    return fmt, [(kind, values[:cut]), (kind, values[cut:])]


@PROPERTY
@given(files=id_files(), id_type=st.sampled_from(["int", "string"]), namespaced=st.booleans())
def test_ids_land_as_documented_or_the_first_bad_value_is_named_and_nothing_is_written(
    files: tuple[str, list[tuple[pa.DataType, list[Any]]]], id_type: str, namespaced: bool
) -> None:
    fmt, columns = files
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        paths = [
            _write(root / f"{stem}.{fmt}", fmt, c) for stem, c in zip("ab", columns, strict=True)
        ]
        cfg = _cfg(root, paths, id_type, namespaced)
        # what the reader sees: in CSV an empty cell is null
        seen = [[None if v == "" and fmt == "csv" else v for v in c[1]] for c in columns]
        expected = [[expected_id(v, id_type, namespaced) for v in vs] for vs in seen]
        bad = [(f, r) for f, ids_ in enumerate(expected) for r, e in enumerate(ids_) if e is BAD]
        lake = Lake.from_config(cfg.lake)
        event(f"{fmt} {columns[0][0]} {id_type}: {'IngestError' if bad else 'ingested'}")
        if bad:
            with pytest.raises(IngestError) as info:
                ingest(cfg, lake)
            f, r = bad[0]
            message = str(info.value)
            assert message.startswith(f"{paths[f]}, column 'user', row {r + 1}: "), message
            assert not [p for p in (root / "lake").rglob("*") if p.is_file()], "nothing written"
            return
        ingest(cfg, lake)
        table = lake.read(IMPRESSIONS)
        got = dict(zip(table["example_id"].to_pylist(), table["user"].to_pylist(), strict=True))
        want = {
            f"feed:{s}:{r + 1}": e
            for s, ids_ in zip("ab", expected, strict=True)
            for r, e in enumerate(ids_)
        }
        assert got == want
        assert table["user"].type == pa.int64()


# ------------------------------------------------------------------------------- identifiers

_LOWER, _DIGITS = set(string.ascii_lowercase), set(string.digits)
_LETTERS = set(string.ascii_letters)


def _shaped(value: str, first: set[str], rest: set[str], longest: int) -> bool:
    return (
        0 < len(value) <= longest
        and value[0] in first
        and set(value[1:]) <= rest
        and ".." not in value
    )


# each check and, written out apart from its regex, the documented pattern it enforces
DOCUMENTED = {
    ids.dataset: lambda v: _shaped(v, _LOWER, _LOWER | _DIGITS | {"_"}, 64),
    ids.partition_key: lambda v: _shaped(v, _LOWER, _LOWER | _DIGITS | {"_"}, 32),
    ids.vertical: lambda v: _shaped(v, _LOWER | _DIGITS, _LOWER | _DIGITS | {"_"}, 32),
    ids.version: lambda v: _shaped(
        v, _LETTERS | _DIGITS, _LETTERS | _DIGITS | {".", "_", "-"}, 128
    ),
}


def _is_day(v: str) -> bool:
    digits = len(v) == 10 and v[4] == v[7] == "-"
    digits = digits and set(v[:4] + v[5:7] + v[8:]) <= _DIGITS
    try:
        return digits and dt.date(int(v[:4]), int(v[5:7]), int(v[8:])).isoformat() == v
    except ValueError:
        return False


DOCUMENTED[ids.ds] = _is_day
IDENT_TEXT = st.one_of(
    st.text(max_size=12),
    st.text(st.sampled_from("az09_.-=/A \n\t\u0661"), max_size=12),
    st.from_regex(r"[a-z0-9][a-z0-9_.-]{0,8}\n?", fullmatch=True),
    st.dates().map(dt.date.isoformat),
    st.from_regex(r"[0-9]{4}-[0-9]{2}-[0-9]{2}\n?", fullmatch=True),
    st.text(st.sampled_from("ab_"), min_size=30, max_size=130),
)


@PROPERTY
@given(value=IDENT_TEXT | st.none() | st.integers() | st.binary(max_size=4))
def test_an_identifier_is_accepted_exactly_when_it_matches_its_documented_pattern(
    value: Any,
) -> None:
    for check, documented in DOCUMENTED.items():
        ok = isinstance(value, str) and documented(value)
        if ok:
            assert check(value) == value, (check.__name__, value)
        else:
            with pytest.raises(IdentifierError):
                check(value)


def _in_calendar(day: str, days: int) -> bool:
    return 1 <= dt.date.fromisoformat(day).toordinal() + days <= dt.date.max.toordinal()


@PROPERTY
@given(
    day=IDENT_TEXT,
    days=st.integers(-(10**10), 10**10) | st.integers(-400, 400),
    key=st.sampled_from(["ds", "vertical", "variant"]) | st.text(max_size=5),
)
def test_day_arithmetic_and_partition_values_return_or_raise_identifier_error(
    day: str, days: int, key: str
) -> None:
    if _is_day(day) and _in_calendar(day, days):
        later = ids.ds_add(day, days)
        assert (dt.date.fromisoformat(later) - dt.date.fromisoformat(day)).days == days
        if abs(days) <= 400:
            span = ids.ds_range(day, later) if days >= 0 else []
            assert len(span) == max(days + 1, 0) and span[:1] in ([day], [])
    else:
        with pytest.raises(IdentifierError):
            ids.ds_add(day, days)
    documented = {"ds": _is_day, "vertical": DOCUMENTED[ids.vertical]}.get(
        key, DOCUMENTED[ids.version]
    )
    if documented(day):
        assert ids.partition_value(key, day) == day
    else:
        with pytest.raises(IdentifierError):
            ids.partition_value(key, day)

"""The one typed configuration of the platform; the only module that reads params.yaml.

Reads: a params YAML file (default `params.yaml` in the working directory; the embedded defaults
below when there is none) and `--set section.key=value` overrides.
Owns: the frozen dataclass tree `Config` that every stage, DAG and test receives.

Loading is strict:
- an unknown key is an error naming `section.key` and the allowed keys;
- a wrong type or an out-of-range value is an error naming the value and what is allowed;
- a key that is absent takes its default (the defaults equal the shipped params.yaml; a test
  keeps the two identical).
Relative paths in the config (lake root, catalog, ingest sources) are relative to the working
directory, as for `make` and `dvc`.

Usage:
    cfg = load_config("params.yaml", overrides=["world.days=3"])
    cfg.world.days  # -> 3
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from exfm import ids
from exfm.errors import ConfigError, IdentifierError

DEFAULT_PARAMS = Path("params.yaml")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
# Columns every impression has besides its features; no feature may take these names.
RESERVED_COLUMNS = frozenset({"example_id", "ts", "ds", "vertical", "label", "true_ctr"})


def _opt(
    default: Any = dataclasses.MISSING,
    *,
    factory: Any = dataclasses.MISSING,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    doc: str = "",
) -> Any:
    """A dataclass field with an allowed range (checked at load) and a one-line description."""
    meta = {"ge": ge, "gt": gt, "le": le, "lt": lt, "doc": doc}
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


# ----------------------------------------------------------------------------------------- world


@dataclass(frozen=True)
class VerticalWorldConfig:
    """How one vertical's simulated traffic differs from the others."""

    traffic_share: float = _opt(0.25, gt=0, le=1, doc="share of the day's impressions")
    base_ctr: float = _opt(0.02, gt=0, lt=0.5, doc="mean click probability on an average day")
    affinity_weight: float = _opt(
        1.0, ge=0, le=5, doc="how much the shared user-ad affinity drives clicks here"
    )
    affinity_twist: float = _opt(
        0.4, ge=0, le=3, doc="size of this vertical's own twist of the shared affinity"
    )


def _default_world_verticals() -> dict[str, VerticalWorldConfig]:
    return {
        "feed": VerticalWorldConfig(0.45, 0.020, 1.0, 0.35),
        "stories": VerticalWorldConfig(0.25, 0.012, 0.8, 0.5),
        "search": VerticalWorldConfig(0.20, 0.035, 1.4, 0.6),
        "video": VerticalWorldConfig(0.10, 0.008, 0.9, 0.8),
    }


@dataclass(frozen=True)
class WorldConfig:
    """The simulated streaming ads world (exfm/data/world.py): the embedded default data source."""

    seed: int = _opt(20260105, ge=0, le=2**63 - 1, doc="seed of every random draw")
    start_ds: str = _opt("2026-01-05", doc="first simulated day (YYYY-MM-DD)")
    days: int = _opt(14, ge=1, le=3650, doc="number of days `world generate` writes")
    impressions_per_day: int = _opt(200_000, ge=100, le=50_000_000, doc="mean impressions a day")
    latent_dim: int = _opt(16, ge=1, le=256, doc="size of user/ad latent factors")
    n_users: int = _opt(100_000, ge=10, le=100_000_000, doc="active users on the first day")
    n_ads: int = _opt(10_000, ge=10, le=10_000_000, doc="active ads on the first day")
    n_advertisers: int = _opt(1_000, ge=1, le=1_000_000, doc="advertisers owning the ads")
    n_categories: int = _opt(40, ge=1, le=100_000, doc="ad categories")
    n_contexts: int = _opt(5_000, ge=1, le=10_000_000, doc="contexts (pages/queries) a vertical")
    n_devices: int = _opt(4, ge=1, le=1_000, doc="device types")
    n_positions: int = _opt(3, ge=1, le=50, doc="ad slots on a page")
    user_zipf: float = _opt(1.05, ge=0, le=3, doc="Zipf exponent of user activity")
    ad_zipf: float = _opt(1.1, ge=0, le=3, doc="Zipf exponent of ad popularity")
    user_arrival_rate: float = _opt(0.03, ge=0, le=1, doc="new users a day / active users")
    user_leave_rate: float = _opt(0.03, ge=0, lt=1, doc="users leaving a day / active users")
    ad_arrival_rate: float = _opt(0.08, ge=0, le=1, doc="new ads a day / active ads")
    ad_leave_rate: float = _opt(0.08, ge=0, lt=1, doc="ads leaving a day / active ads")
    latent_drift: float = _opt(
        0.1, ge=0, le=1, doc="daily innovation of the AR(1) drift of latent factors"
    )
    weekly_traffic_amplitude: float = _opt(0.15, ge=0, lt=1, doc="weekly swing of traffic")
    weekly_ctr_amplitude: float = _opt(0.1, ge=0, le=2, doc="weekly swing of the CTR logit")
    shock_ds: str | None = _opt(None, doc="day of a sudden shift (YYYY-MM-DD), or null for none")
    shock_strength: float = _opt(
        0.5, ge=0, le=1, doc="share of users and ads whose tastes are redrawn at the shock"
    )
    shock_ctr_shift: float = _opt(-0.3, ge=-5, le=5, doc="CTR logit shift from the shock on")
    auction_candidates: int = _opt(
        4, ge=1, le=64, doc="ads competing per impression (1: no auction selection bias)"
    )
    position_decay: float = _opt(0.35, ge=0, le=5, doc="CTR logit lost per slot below the top")
    counter_prior_views: float = _opt(
        20.0, gt=0, le=1e6, doc="prior weight smoothing the historical CTR counters"
    )
    verticals: dict[str, VerticalWorldConfig] = _opt(factory=_default_world_verticals)


# -------------------------------------------------------------------------------------- features


@dataclass(frozen=True)
class FeatureConfig:
    """One model input: its kind, hash size and the verticals that have it."""

    kind: Literal["categorical", "dense"] = _opt("categorical")
    hash_buckets: int = _opt(0, ge=0, le=2**31 - 1, doc="categorical only: embedding rows")
    only_verticals: tuple[str, ...] = _opt(
        factory=tuple, doc="verticals that have this feature; empty: every vertical"
    )


def _default_features() -> dict[str, FeatureConfig]:
    cat, dense = "categorical", "dense"
    return {
        "user_id": FeatureConfig(cat, 262_144),
        "ad_id": FeatureConfig(cat, 65_536),
        "advertiser_id": FeatureConfig(cat, 4_096),
        "category_id": FeatureConfig(cat, 256),
        "device_type": FeatureConfig(cat, 16, ("feed", "stories", "video")),
        "context_id": FeatureConfig(cat, 16_384, ("feed", "search")),
        "position": FeatureConfig(dense),
        "hour": FeatureConfig(dense),
        "user_ctr_hist": FeatureConfig(dense),
        "ad_ctr_hist": FeatureConfig(dense),
        "user_log_views": FeatureConfig(dense),
        "ad_log_views": FeatureConfig(dense, 0, ("feed", "stories", "search")),
    }


@dataclass(frozen=True)
class FeaturesConfig:
    """The feature spec: the verticals and every impression's features (exfm/data/schema.py)."""

    verticals: tuple[str, ...] = _opt(
        ("feed", "stories", "search", "video"), doc="the verticals, one VM each"
    )
    features: dict[str, FeatureConfig] = _opt(factory=_default_features)


# ------------------------------------------------------------------------------------------ lake


@dataclass(frozen=True)
class LakeConfig:
    """Where data lives (exfm/lake.py). S3 endpoint and credentials come from the environment."""

    root: str = _opt("data/lake", doc="a local folder or s3://bucket/prefix")
    catalog: str = _opt("data/exfm.duckdb", doc="DuckDB file holding views over the lake")
    compression: Literal["zstd", "snappy", "none"] = _opt("zstd")
    row_group_rows: int = _opt(131_072, ge=1_024, le=16_777_216, doc="parquet row-group size")
    s3_max_attempts: int = _opt(3, ge=1, le=20, doc="tries per S3 request before giving up")
    s3_connect_timeout_s: float = _opt(3.0, gt=0, le=600)
    s3_read_timeout_s: float = _opt(30.0, gt=0, le=3600)


# ---------------------------------------------------------------------------------------- ingest


@dataclass(frozen=True)
class IngestLookupConfig:
    """A side table (for instance item attributes) left-joined onto a source on one key column."""

    path: str = _opt("", doc="CSV or parquet file")
    key: str = _opt("", doc="column present in both files, unique in this one")


@dataclass(frozen=True)
class IngestSourceConfig:
    """One input file (or glob) of the user's impressions."""

    path: str = _opt("", doc="CSV or parquet file, or a glob of them")
    vertical: str | None = _opt(
        None, doc="the vertical of every row; null: read ingest.vertical_column"
    )
    lookups: tuple[IngestLookupConfig, ...] = _opt(factory=tuple)


@dataclass(frozen=True)
class IngestConfig:
    """Bring your own data (exfm/data/ingest.py): how source columns map onto the lake schema."""

    sources: tuple[IngestSourceConfig, ...] = _opt(factory=tuple)
    format: Literal["auto", "csv", "parquet"] = _opt("auto", doc="auto: by file extension")
    timestamp_column: str = _opt("timestamp", doc="ISO-8601 text or epoch numbers")
    timestamp_unit: Literal["s", "ms", "us"] = _opt("s", doc="unit of numeric timestamps")
    label_column: str = _opt("label", doc="0/1 click or conversion")
    vertical_column: str = _opt("", doc="column naming the vertical, for sources without one")
    example_id_column: str = _opt("", doc="unique id column; empty: '<vertical>:<file stem>:<row>'")
    columns: dict[str, str] = _opt(
        factory=dict, doc="feature name -> source column, where they differ"
    )
    namespace_by_vertical: tuple[str, ...] = _opt(
        factory=tuple, doc="categorical features whose ids mean different things per vertical"
    )


# ------------------------------------------------------------------------------------------ root


@dataclass(frozen=True)
class Config:
    """The whole configuration. Sections arrive with the issues that need them."""

    world: WorldConfig = field(default_factory=WorldConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    lake: LakeConfig = field(default_factory=LakeConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists, dicts, scalars) that dumps back to an equivalent params file."""
        return _to_plain(self)


# ----------------------------------------------------------------------------------------- loading


def load_config(params: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """Load `params` (default: ./params.yaml if present, else the embedded defaults), apply
    `section.key=value` overrides, and check every value. Raises ConfigError."""
    path = Path(params) if params is not None else DEFAULT_PARAMS
    raw = _read_yaml(path) if params is not None or path.exists() else {}
    raw = apply_overrides(raw, overrides)
    cfg = _build(Config, raw, "")
    _check_cross_fields(cfg)
    return cfg


def config_from_dict(raw: Mapping[str, Any]) -> Config:
    """Build and check a Config from plain data (the inverse of Config.to_dict)."""
    cfg = _build(Config, raw, "")
    _check_cross_fields(cfg)
    return cfg


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"params file {path} does not exist") from None
    except OSError as e:
        raise ConfigError(f"cannot read params file {path}: {e}") from e
    try:
        data = yaml.safe_load(text)
    except (yaml.YAMLError, ValueError) as e:
        raise ConfigError(f"params file {path} is not valid YAML: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"params file {path} must hold a mapping of sections, got {_kind(data)}")
    return data


def apply_overrides(raw: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return a copy of `raw` with each `a.b.c=value` applied (value parsed as a YAML scalar or
    flow collection). Keys absent from `raw` are filled from the defaults on the way down, so that
    `world.verticals.feed.base_ctr=0.03` changes one field and keeps the other verticals."""
    out: dict[str, Any] = _deep_copy(raw)
    defaults = Config().to_dict()
    for item in overrides:
        key, sep, text = item.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(parts):
            raise ConfigError(f"override {item!r} must look like section.key=value")
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except ValueError:  # YAML's date resolver on an impossible date such as 2024-13-40
            value = text.strip()
        except yaml.YAMLError as e:
            raise ConfigError(f"override {item!r}: value is not valid YAML: {e}") from e
        node, default_node = out, defaults
        for depth, part in enumerate(parts[:-1]):
            default_node = default_node.get(part) if isinstance(default_node, dict) else None
            if part not in node:
                node[part] = _deep_copy(default_node) if isinstance(default_node, dict) else {}
            if not isinstance(node[part], dict):
                where = ".".join(parts[: depth + 1])
                raise ConfigError(f"override {item!r}: {where} is a value, not a section")
            node = node[part]
        node[parts[-1]] = value
    return out


def _deep_copy(data: Any) -> Any:
    if isinstance(data, Mapping):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_deep_copy(v) for v in data]
    return data


def _build(cls: type, data: Any, where: str) -> Any:
    """Build dataclass `cls` from mapping `data`, strictly. `where` is the dotted path so far."""
    label = where or "the params file"
    if not isinstance(data, Mapping):
        raise ConfigError(f"{label} must be a mapping, got {_kind(data)}: {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            allowed = ", ".join(fields)
            raise ConfigError(f"unknown key {_join(where, str(key))}; allowed keys: {allowed}")
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            path = _join(where, name)
            value = _coerce(hints[name], data[name], path)
            _check_range(value, f.metadata, path)
            kwargs[name] = value
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, where: str) -> Any:
    """Check `value` against type `tp` and convert it (lists to tuples, dates to text)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        return _coerce(options[0], value, where)
    if origin is Literal:
        if value not in args:
            allowed = ", ".join(repr(a) for a in args)
            raise ConfigError(f"{where} = {value!r} is not allowed; allowed values: {allowed}")
        return value
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where} must be a list, got {_kind(value)}: {value!r}")
        return tuple(_coerce(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where} must be a mapping, got {_kind(value)}: {value!r}")
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ConfigError(f"{where} has a non-text key {k!r}")
            out[k] = _coerce(args[1], v, f"{where}.{k}")
        return out
    return _coerce_scalar(tp, value, where)


def _coerce_scalar(tp: Any, value: Any, where: str) -> Any:
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            if math.isnan(value):
                raise ConfigError(f"{where} = nan is not a number")
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, dt.date):  # YAML reads an unquoted 2026-01-05 as a date
            return value.isoformat()
    else:
        raise TypeError(f"config field {where} has an unsupported type {tp!r}")
    raise ConfigError(f"{where} = {value!r} has the wrong type: expected {tp.__name__}")


def _check_range(value: Any, meta: Mapping[str, Any], where: str) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return
    ge, gt, le, lt = meta.get("ge"), meta.get("gt"), meta.get("le"), meta.get("lt")
    ok = (
        (ge is None or value >= ge)
        and (gt is None or value > gt)
        and (le is None or value <= le)
        and (lt is None or value < lt)
    )
    if not ok:
        lo = f"[{ge}" if ge is not None else (f"({gt}" if gt is not None else "(-inf")
        hi = f"{le}]" if le is not None else (f"{lt})" if lt is not None else "inf)")
        raise ConfigError(f"{where} = {value!r} is out of range: allowed {lo}, {hi}")


def _check_cross_fields(cfg: Config) -> None:
    """Checks that involve more than one value."""
    verticals = cfg.features.verticals
    if not verticals:
        raise ConfigError("features.verticals is empty: name at least one vertical")
    for i, v in enumerate(verticals):
        try:
            ids.vertical(v)
        except IdentifierError as e:
            raise ConfigError(f"features.verticals[{i}]: {e}") from e
    if len(set(verticals)) != len(verticals):
        raise ConfigError(f"features.verticals has duplicates: {list(verticals)}")
    if not cfg.features.features:
        raise ConfigError("features.features is empty: name at least one feature")
    for name, feat in cfg.features.features.items():
        where = f"features.features.{name}"
        if not _NAME.match(name) or name in RESERVED_COLUMNS:
            raise ConfigError(
                f"{where}: {name!r} is not a valid feature name (expected {_NAME.pattern}, "
                f"not one of {sorted(RESERVED_COLUMNS)})"
            )
        if feat.kind == "categorical" and feat.hash_buckets < 2:
            raise ConfigError(
                f"{where}.hash_buckets = {feat.hash_buckets}: a categorical "
                "feature needs at least 2 buckets"
            )
        if feat.kind == "dense" and feat.hash_buckets != 0:
            raise ConfigError(
                f"{where}.hash_buckets = {feat.hash_buckets}: dense features "
                "are not hashed, leave it 0"
            )
        unknown = sorted(set(feat.only_verticals) - set(verticals))
        if unknown:
            raise ConfigError(
                f"{where}.only_verticals names unknown verticals {unknown}; "
                f"features.verticals: {list(verticals)}"
            )
    _check_world(cfg.world, verticals)
    _check_ingest(cfg.ingest, cfg.features)


def _check_world(world: WorldConfig, verticals: Sequence[str]) -> None:
    if set(world.verticals) != set(verticals):
        raise ConfigError(
            f"world.verticals has {sorted(world.verticals)} but features.verticals has "
            f"{sorted(verticals)}: the simulated verticals must be exactly the configured ones"
        )
    total = sum(v.traffic_share for v in world.verticals.values())
    if abs(total - 1.0) > 1e-3:
        raise ConfigError(f"world.verticals.*.traffic_share sum to {total:.4f}: they must sum to 1")
    _check_ds(world.start_ds, "world.start_ds")
    if world.shock_ds is not None:
        _check_ds(world.shock_ds, "world.shock_ds")


def _check_ingest(ingest: IngestConfig, features: FeaturesConfig) -> None:
    for i, src in enumerate(ingest.sources):
        where = f"ingest.sources[{i}]"
        if not src.path:
            raise ConfigError(f"{where}.path is empty")
        if src.vertical is None and not ingest.vertical_column:
            raise ConfigError(
                f"{where} has no vertical and ingest.vertical_column is empty: "
                "say which vertical its rows belong to"
            )
        if src.vertical is not None and src.vertical not in features.verticals:
            raise ConfigError(
                f"{where}.vertical = {src.vertical!r} is not one of "
                f"features.verticals {list(features.verticals)}"
            )
        for j, lk in enumerate(src.lookups):
            if not lk.path or not lk.key:
                raise ConfigError(f"{where}.lookups[{j}] needs both path and key")
    for name in ingest.columns:
        if name not in features.features:
            raise ConfigError(
                f"ingest.columns.{name}: no such feature; features: {sorted(features.features)}"
            )
    for name in ingest.namespace_by_vertical:
        feat = features.features.get(name)
        if feat is None or feat.kind != "categorical":
            raise ConfigError(
                f"ingest.namespace_by_vertical names {name!r}, which is not a categorical feature"
            )


def _check_ds(value: str, where: str) -> None:
    try:
        ids.ds(value)
    except IdentifierError as e:
        raise ConfigError(f"{where}: {e}") from e


def _to_plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {k: _to_plain(v) for k, v in obj.items()}
    if isinstance(obj, tuple | list):
        return [_to_plain(v) for v in obj]
    return obj


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _kind(value: Any) -> str:
    return type(value).__name__


def describe(cls: type = Config, where: str = "") -> list[tuple[str, str, str]]:
    """(key, default, doc) for every leaf key: used by `exfm config keys`."""
    rows = []
    defaults = cls()
    for f in dataclasses.fields(cls):
        path = _join(where, f.name)
        value = getattr(defaults, f.name)
        if dataclasses.is_dataclass(value):
            rows.extend(describe(type(value), path))
        else:
            rows.append((path, repr(_to_plain(value)), f.metadata.get("doc", "")))
    return rows

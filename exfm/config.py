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
from exfm.config_schema import (  # noqa: F401 - re-exported: import sections from here
    AirflowConfig,
    ChecksConfig,
    DASConfig,
    ExperimentConfig,
    FeatureConfig,
    FeaturesConfig,
    FMConfig,
    IngestConfig,
    IngestLookupConfig,
    IngestSourceConfig,
    LakeConfig,
    PipelineConfig,
    PublishConfig,
    TrainConfig,
    VerticalWorldConfig,
    VMConfig,
    VMVerticalConfig,
    WorldConfig,
)
from exfm.errors import ConfigError, IdentifierError
from exfm.variants import POOLED

DEFAULT_PARAMS = Path("params.yaml")
# The scope that pools every vertical in metrics, evaluations, drift and results: no vertical may
# take this name.
POOLED_SCOPE = POOLED  # reserved: a vertical may not be called so
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
# Columns every impression has besides its features; no feature may take these names.
RESERVED_COLUMNS = frozenset({"example_id", "ts", "ds", "vertical", "label", "true_ctr"})


# ------------------------------------------------------------------------------------------ root


@dataclass(frozen=True)
class Config:
    """The whole configuration. Sections arrive with the issues that need them."""

    world: WorldConfig = field(default_factory=WorldConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    lake: LakeConfig = field(default_factory=LakeConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    fm: FMConfig = field(default_factory=FMConfig)
    vm: VMConfig = field(default_factory=VMConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    publish: PublishConfig = field(default_factory=PublishConfig)
    das: DASConfig = field(default_factory=DASConfig)
    checks: ChecksConfig = field(default_factory=ChecksConfig)
    airflow: AirflowConfig = field(default_factory=AirflowConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    experiment: ExperimentConfig = field(default_factory=ExperimentConfig)

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
    return config_from_dict(raw)


def config_from_dict(raw: Mapping[str, Any]) -> Config:
    """Build and check a Config from plain data (the inverse of Config.to_dict)."""
    cfg = _build(Config, raw, "")
    _check_cross_fields(cfg)
    return _normalize(cfg)


def _normalize(cfg: Config) -> Config:
    """Fill what follows from other values: every vertical gets a vm.per_vertical entry (empty
    when params do not name it), so that each has its own key for `dvc` to track."""
    per = {v: cfg.vm.per_vertical.get(v, VMVerticalConfig()) for v in cfg.features.verticals}
    return dataclasses.replace(cfg, vm=dataclasses.replace(cfg.vm, per_vertical=per))


def resolve_paths(cfg: Config, base: str | Path) -> Config:
    """The same config with its relative paths made absolute against `base` (for processes whose
    working directory is not the project's, such as Airflow tasks)."""
    root = Path(base)

    def absolute(path: str) -> str:
        if not path or "://" in path or Path(path).is_absolute():
            return path
        return str((root / path).resolve())

    lake = dataclasses.replace(
        cfg.lake, root=absolute(cfg.lake.root), catalog=absolute(cfg.lake.catalog)
    )
    checks = dataclasses.replace(cfg.checks, report_dir=absolute(cfg.checks.report_dir))
    sources = tuple(
        dataclasses.replace(
            s,
            path=absolute(s.path),
            lookups=tuple(dataclasses.replace(lk, path=absolute(lk.path)) for lk in s.lookups),
        )
        for s in cfg.ingest.sources
    )
    ingest = dataclasses.replace(cfg.ingest, sources=sources)
    pipeline = dataclasses.replace(
        cfg.pipeline,
        state_dir=absolute(cfg.pipeline.state_dir),
        reports_dir=absolute(cfg.pipeline.reports_dir),
    )
    experiment = dataclasses.replace(
        cfg.experiment,
        dir=absolute(cfg.experiment.dir),
        reports_dir=absolute(cfg.experiment.reports_dir),
        obd_params=absolute(cfg.experiment.obd_params),
    )
    return dataclasses.replace(
        cfg, lake=lake, checks=checks, ingest=ingest, pipeline=pipeline, experiment=experiment
    )


def build_section(cls: type, data: Mapping[str, Any], where: str) -> Any:
    """Build one section dataclass from plain data, as strictly as a params file (used to
    rebuild a model's config stored in its snapshot)."""
    return _build(cls, data, where)


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
    if POOLED_SCOPE in verticals:
        raise ConfigError(
            f"features.verticals: {POOLED_SCOPE!r} is reserved (it names every vertical pooled "
            "together in metrics, evaluations, drift checks and results); give that vertical "
            "another name (configs/obd.yaml maps its campaign 'all' to 'all_items')"
        )
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
    _check_models(cfg)


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


def _check_models(cfg: Config) -> None:
    for where, widths in (("fm.deep_layers", cfg.fm.deep_layers), ("vm.hidden", cfg.vm.hidden)):
        if not widths or any(w < 1 or w > 65_536 for w in widths):
            raise ConfigError(f"{where} = {list(widths)}: give one or more widths in [1, 65536]")
    unknown = [f for f in cfg.vm.features if f not in cfg.features.features]
    if unknown:
        raise ConfigError(
            f"vm.features names unknown features {unknown}; features: "
            f"{sorted(cfg.features.features)}"
        )
    extra = sorted(set(cfg.vm.per_vertical) - set(cfg.features.verticals))
    if extra:
        raise ConfigError(
            f"vm.per_vertical names unknown verticals {extra}; "
            f"features.verticals: {list(cfg.features.verticals)}"
        )
    if len(set(cfg.vm.features)) != len(cfg.vm.features):
        raise ConfigError(f"vm.features has duplicates: {list(cfg.vm.features)}")
    _check_checks(cfg)
    for where, day in (
        ("airflow.start_date", cfg.airflow.start_date),
        ("airflow.end_date", cfg.airflow.end_date),
    ):
        if day is not None:
            _check_ds(day, where)
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", cfg.airflow.pool):
        raise ConfigError(f"airflow.pool = {cfg.airflow.pool!r} is not a valid pool name")
    if cfg.publish.min_calibration >= cfg.publish.max_calibration:
        raise ConfigError("publish.min_calibration must be below publish.max_calibration")


def _check_checks(cfg: Config) -> None:
    checks, feats = cfg.checks, cfg.features.features
    for where, pair in (
        ("checks.rows_ratio", checks.rows_ratio),
        ("checks.ctr_ratio", checks.ctr_ratio),
        *[(f"checks.dense_ranges.{k}", v) for k, v in checks.dense_ranges.items()],
    ):
        if len(pair) != 2 or pair[0] > pair[1]:
            raise ConfigError(f"{where} = {list(pair)}: give [low, high] with low <= high")
    for name in checks.dense_ranges:
        if name not in feats or feats[name].kind != "dense":
            raise ConfigError(
                f"checks.dense_ranges.{name}: not a dense feature of "
                f"features.features {sorted(feats)}"
            )
    for name in checks.id_features:
        if name not in feats or feats[name].kind != "categorical":
            raise ConfigError(
                f"checks.id_features names {name!r}, which is not a categorical "
                f"feature; features: {sorted(feats)}"
            )
    for metric in ("psi", "js", "ks", "label_shift", "churn", "fm_score_psi", "fm_calibration"):
        t = getattr(checks, metric)
        if t.warn > t.fail:
            raise ConfigError(
                f"checks.{metric}.warn = {t.warn} is above checks.{metric}.fail = {t.fail}"
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

"""The one typed configuration of the platform; the only module that reads params.yaml.

Reads: a params YAML file (default `params.yaml` in the working directory; the embedded defaults
below when there is none) and `--set section.key=value` overrides.
Owns: the frozen tree of pydantic models `Config` that every stage, DAG and test receives (the
sections are in exfm/config_schema.py; `exfm config schema` prints its JSON Schema).

Loading is strict (pydantic v2, strict mode; its errors are translated in one place, _explain):
- a key given twice in one YAML mapping is an error naming the key and both lines;
- an unknown key is an error naming `section.key` and the allowed keys;
- a wrong type or an out-of-range value is an error naming the value and what is allowed;
- a key that is absent takes its default (the defaults equal the shipped params.yaml; a test
  keeps the two identical). Defaults that name the simulated world's features (checks.dense_ranges,
  checks.id_features, vm.features) keep only the features configured, and the world section is
  checked against the features only when it is the data source (pipeline.source: world): a
  params file for ingested data says only what that data has.
Relative paths in the config (lake root, catalog, ingest sources) are relative to the working
directory, as for `make` and `dvc`.

Usage:
    cfg = load_config("params.yaml", overrides=["world.days=3"])
    cfg.world.days  # -> 3
"""

from __future__ import annotations

import datetime as dt
import re
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, Field, ValidationError
from pydantic.fields import FieldInfo

from exfm import ids
from exfm.config_schema import (  # noqa: F401 - re-exported: import sections from here
    AirflowConfig,
    ChecksConfig,
    DASConfig,
    ExperimentConfig,
    FeatureConfig,
    FeaturesConfig,
    FMConfig,
    HistoryConfig,
    IdType,
    IngestConfig,
    IngestLookupConfig,
    IngestSourceConfig,
    LakeConfig,
    PipelineConfig,
    PublishConfig,
    RegistryConfig,
    RobustnessConfig,
    TrainConfig,
    VerticalWorldConfig,
    VMConfig,
    VMVerticalConfig,
    WorldConfig,
    WorldShapeConfig,
    _Section,
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
_M = TypeVar("_M", bound=BaseModel)


# ------------------------------------------------------------------------------------------ root


class Config(_Section):
    """The whole configuration: one frozen section per part of the platform."""

    world: WorldConfig = Field(default_factory=WorldConfig)
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    lake: LakeConfig = Field(default_factory=LakeConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    fm: FMConfig = Field(default_factory=FMConfig)
    vm: VMConfig = Field(default_factory=VMConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    publish: PublishConfig = Field(default_factory=PublishConfig)
    registry: RegistryConfig = Field(default_factory=RegistryConfig)
    das: DASConfig = Field(default_factory=DASConfig)
    checks: ChecksConfig = Field(default_factory=ChecksConfig)
    airflow: AirflowConfig = Field(default_factory=AirflowConfig)
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)
    experiment: ExperimentConfig = Field(default_factory=ExperimentConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists, dicts, scalars) that dumps back to an equivalent params file."""
        return _to_plain(self)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a params file (`exfm config schema`), for editors and CI linters."""
    return Config.model_json_schema()


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
    cfg = _fit_defaults(_validate(Config, raw, ""))
    _check_cross_fields(cfg)
    return _normalize(cfg)


def _fit_defaults(cfg: Config) -> Config:
    """Defaults that name the simulated world's features, fitted to the features configured
    when the params file does not set them: a params file for other data (configs/obd.yaml)
    needs only what that data has. Values a file sets are checked as they are."""
    feats = cfg.features.features
    checks, vm = cfg.checks, cfg.vm
    if "dense_ranges" not in checks.model_fields_set:
        fitted = {k: v for k, v in checks.dense_ranges.items() if _kind_of(feats, k) == "dense"}
        checks = checks.model_copy(update={"dense_ranges": fitted})
    if "id_features" not in checks.model_fields_set:
        ids_ = tuple(f for f in checks.id_features if _kind_of(feats, f) == "categorical")
        checks = checks.model_copy(update={"id_features": ids_})
    if "features" not in vm.model_fields_set:
        own = tuple(f for f in vm.features if f in feats)
        if not own:
            raise ConfigError(
                f"vm.features: none of the default VM features {list(vm.features)} is in "
                f"features.features {sorted(feats)}; name the VM's features"
            )
        vm = vm.model_copy(update={"features": own})
    return cfg.model_copy(update={"checks": checks, "vm": vm})


def _kind_of(feats: Mapping[str, FeatureConfig], name: str) -> str | None:
    feat = feats.get(name)
    return feat.kind if feat is not None else None


def _normalize(cfg: Config) -> Config:
    """Fill what follows from other values: every vertical gets a vm.per_vertical entry (empty
    when params do not name it), so that each has its own key for `dvc` to track."""
    per = {v: cfg.vm.per_vertical.get(v, VMVerticalConfig()) for v in cfg.features.verticals}
    return cfg.model_copy(update={"vm": cfg.vm.model_copy(update={"per_vertical": per})})


def resolve_paths(cfg: Config, base: str | Path) -> Config:
    """The same config with its relative paths made absolute against `base` (for processes whose
    working directory is not the project's, such as Airflow tasks)."""
    root = Path(base)

    def absolute(path: str) -> str:
        if not path or "://" in path or Path(path).is_absolute():
            return path
        return str((root / path).resolve())

    def paths(section: _M, *names: str) -> _M:
        return section.model_copy(update={n: absolute(getattr(section, n)) for n in names})

    sources = tuple(
        paths(s, "path").model_copy(
            update={"lookups": tuple(paths(lk, "path") for lk in s.lookups)}
        )
        for s in cfg.ingest.sources
    )
    return cfg.model_copy(
        update={
            "lake": paths(cfg.lake, "root", "catalog"),
            "checks": paths(cfg.checks, "report_dir"),
            "ingest": cfg.ingest.model_copy(update={"sources": sources}),
            "pipeline": paths(cfg.pipeline, "state_dir", "reports_dir"),
            "experiment": paths(cfg.experiment, "dir", "reports_dir", "obd_params"),
        }
    )


def replace(section: _M, **changes: Any) -> _M:
    """A copy of a config (or one section) with `changes`, checked like a params file (cross-field
    checks aside): the validated counterpart of pydantic's model_copy(update=...)."""
    data = {name: getattr(section, name) for name in type(section).model_fields}
    return _validate(type(section), {**data, **changes}, "")


def check_flag(flag: str, value: Any, key: str) -> None:
    """A command-line flag that stands for a config key (`--days` for world.days) takes that
    key's type and range; a ConfigError says both."""
    section, _, name = key.partition(".")
    cls = Config.model_fields[section].annotation
    try:
        _validate(cls, {name: value}, section)
        if name.endswith("_ds") and value is not None:
            _check_ds(value, key)
    except ConfigError as e:
        raise ConfigError(f"{flag} {value}: {e}") from None


def build_section(cls: type[_M], data: Mapping[str, Any], where: str) -> _M:
    """Build one section from plain data, as strictly as a params file (used to rebuild a
    model's config stored in its snapshot)."""
    return _validate(cls, data, where)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"params file {path} does not exist") from None
    except OSError as e:
        raise ConfigError(f"cannot read params file {path}: {e}") from e
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except _DuplicateKey as e:
        raise ConfigError(f"params file {path}: {e}") from None
    except (yaml.YAMLError, ValueError) as e:
        raise ConfigError(f"params file {path} is not valid YAML: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"params file {path} must hold a mapping of sections, got {_kind(data)}")
    return data


class _DuplicateKey(ValueError):
    pass


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (PyYAML keeps the last one
    silently: `world:` written twice would lose the first section)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: the base class names it
                continue
            seen[key] = line
            if first is not None:
                raise _DuplicateKey(
                    f"key {key!r} is given twice in one mapping (lines {first} and {line}); "
                    "YAML would keep only the last one: say it once"
                )
        return super().construct_mapping(node, deep=deep)


def apply_overrides(raw: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return a copy of `raw` with each `a.b.c=value` applied (value parsed as a YAML scalar or
    flow collection). A mapping-valued key absent from `raw` is filled from the defaults on the way
    down, so that `world.verticals.feed.base_ctr=0.03` changes one field and keeps the other
    verticals; an absent section starts empty (its other keys keep their defaults, and stay
    unset for the defaults fitted to the features, see _fit_defaults)."""
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
        node, default_node, tp = out, defaults, _unwrap_optional(Config)
        for depth, part in enumerate(parts[:-1]):
            default_node = default_node.get(part) if isinstance(default_node, dict) else None
            _, tp = _walk(tp, (part,)) if tp is not None else (None, None)
            if part not in node:
                keep = isinstance(default_node, dict) and not _is_model(tp)
                node[part] = _deep_copy(default_node) if keep else {}
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


def _validate(cls: type[_M], data: Any, where: str) -> _M:
    """Build section (or root) `cls` from plain data, strictly; pydantic's errors become one
    ConfigError naming `section.key`, the value and what is allowed (see _explain)."""
    if not isinstance(data, Mapping):
        label = where or "the params file"
        raise ConfigError(f"{label} must be a mapping, got {_kind(data)}: {data!r}")
    try:
        return cls.model_validate(_prepare(data))
    except ValidationError as e:
        prefix = tuple(where.split(".")) if where else ()
        lines = [_explain(cls, err, data, prefix) for err in e.errors()]
        raise ConfigError("\n".join(dict.fromkeys(lines))) from None


def _prepare(data: Any) -> Any:
    """YAML's shapes onto the schema's: lists become tuples (the sections are frozen), dates
    become ISO text (YAML reads an unquoted 2026-01-05 as a date)."""
    if isinstance(data, Mapping):
        return {k: _prepare(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return tuple(_prepare(v) for v in data)
    if isinstance(data, dt.date) and not isinstance(data, dt.datetime):
        return data.isoformat()
    return data


_TYPE_NAMES = {"int_type": "int", "float_type": "float", "bool_type": "bool", "string_type": "str"}
_RANGE_ERRORS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}


def _explain(cls: type[BaseModel], err: Mapping[str, Any], data: Any, prefix: tuple) -> str:
    """One pydantic error as today's message: `section.key = value: what is allowed`."""
    loc = tuple(err["loc"])
    kind = err["type"]
    if kind == "string_type" and loc and loc[-1] == "[key]":
        return f"{_path(prefix + loc[:-2])} has a non-text key {loc[-2]!r}"
    path = _path(prefix + loc)
    value = _original(data, loc, err.get("input"))
    if kind == "extra_forbidden":
        _, parent = _walk(cls, loc[:-1])
        allowed = ", ".join(parent.model_fields) if _is_model(parent) else ""
        return f"unknown key {path}; allowed keys: {allowed}"
    if kind in _TYPE_NAMES:
        return f"{path} = {value!r} has the wrong type: expected {_TYPE_NAMES[kind]}"
    if kind == "finite_number":
        return f"{path} = {value!r} is not a finite number"
    if kind in _RANGE_ERRORS:
        info, _ = _walk(cls, loc)
        bounds: dict[str, Any] = {}
        for m in info.metadata if info is not None else ():
            for name in ("ge", "gt", "le", "lt"):
                if getattr(m, name, None) is not None:
                    bounds[name] = getattr(m, name)
        ge, gt, le, lt = (bounds.get(k) for k in ("ge", "gt", "le", "lt"))
        lo = f"[{ge}" if ge is not None else (f"({gt}" if gt is not None else "(-inf")
        hi = f"{le}]" if le is not None else (f"{lt})" if lt is not None else "inf)")
        return f"{path} = {value!r} is out of range: allowed {lo}, {hi}"
    if kind == "literal_error":
        _, tp = _walk(cls, loc)
        allowed = ", ".join(repr(a) for a in typing.get_args(tp))
        return f"{path} = {value!r} is not allowed; allowed values: {allowed}"
    if kind == "tuple_type":
        return f"{path} must be a list, got {_kind(value)}: {value!r}"
    if kind in ("dict_type", "model_type"):
        return f"{path} must be a mapping, got {_kind(value)}: {value!r}"
    return f"{path} = {value!r}: {err['msg']}"


def _walk(cls: Any, loc: Sequence[Any]) -> tuple[FieldInfo | None, Any]:
    """The last section field along `loc` and the type found at `loc` (None: not in the schema)."""
    info, tp = None, cls
    for part in loc:
        tp = _unwrap_optional(tp)
        if _is_model(tp):
            info = tp.model_fields.get(part) if isinstance(part, str) else None
            if info is None:
                return None, None
            tp = info.annotation
        elif typing.get_origin(tp) in (dict, tuple):
            tp = typing.get_args(tp)[-1 if typing.get_origin(tp) is dict else 0]
        else:
            return info, None
    return info, _unwrap_optional(tp)


def _unwrap_optional(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        return options[0] if len(options) == 1 else tp
    return tp


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _original(data: Any, loc: Sequence[Any], fallback: Any) -> Any:
    """The value at `loc` as the user wrote it (a list, not the tuple it became)."""
    node = data
    for part in loc:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return fallback
    return node


def _path(loc: Sequence[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


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
        if not _NAME.fullmatch(name) or name in RESERVED_COLUMNS:
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
    _check_world(cfg.world, verticals, against_features=cfg.pipeline.source == "world")
    _check_ingest(cfg.ingest, cfg.features)
    _check_models(cfg)


def _check_world(world: WorldConfig, verticals: Sequence[str], against_features: bool) -> None:
    """The world's own consistency; against the features only when it is the data source (an
    ingest params file need not describe a world: exfm/data/world.py checks again on use)."""
    if against_features and set(world.verticals) != set(verticals):
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
    for name in ingest.id_types:
        feat = features.features.get(name)
        if feat is None or feat.kind != "categorical":
            categorical = sorted(n for n, f in features.features.items() if f.kind == "categorical")
            raise ConfigError(
                f"ingest.id_types.{name}: not a categorical feature; categorical features: "
                f"{categorical}"
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
    _check_experiment(cfg)


def _check_experiment(cfg: Config) -> None:
    e = cfg.experiment
    for key in ("distill_weight", "label_scale", "aux_hidden", "sa_weight"):
        values = list(getattr(e.grid, key))
        low = 0 if key == "aux_hidden" else 0.0  # a width may be 0 (linear), a weight may not
        bad = any(v < 0 if key == "aux_hidden" else v <= low for v in values)
        if not values or bad or values != sorted(set(values)):
            kind = ">= 0" if key == "aux_hidden" else "> 0"
            raise ConfigError(
                f"experiment.grid.{key} = {values}: give one or more values {kind}, increasing"
            )
    if not e.cadences or any(c < 1 or c > 365 for c in e.cadences):
        raise ConfigError(
            f"experiment.cadences = {list(e.cadences)}: give one or more days in [1, 365]"
        )
    if not e.tune_worlds:
        raise ConfigError("experiment.tune_worlds is empty: give at least one tuning world")
    h = e.history
    for key in ("days_before", "quick_days_before"):
        values = list(getattr(h, key))
        if not values or any(v < 0 or v > 365 for v in values) or values != sorted(set(values)):
            raise ConfigError(
                f"experiment.history.{key} = {values}: give one or more days in [0, 365], "
                "increasing"
            )
    unknown = [s for s in h.sizes if s not in e.fm_sizes]
    if not h.sizes or unknown or len(set(h.sizes)) != len(h.sizes):
        raise ConfigError(
            f"experiment.history.sizes = {list(h.sizes)}: give distinct names of "
            f"experiment.fm_sizes {sorted(e.fm_sizes)}"
            + (f" ({unknown} are not)" if unknown else "")
        )
    r = e.robustness
    for key in ("base_ctr", "drift", "verticals", "fm_delay"):
        values = list(getattr(r, key))
        if not values or len(set(values)) != len(values):
            raise ConfigError(
                f"experiment.robustness.{key} = {values}: give one or more distinct values"
            )
        for v in values:
            try:
                WorldShapeConfig(**{key: v})
            except ValidationError as err:
                why = err.errors()[0]["msg"]
                raise ConfigError(f"experiment.robustness.{key}: {v!r}: {why}") from None


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
    for metric in (
        "psi",
        "js",
        "ks",
        "shift",
        "label_shift",
        "churn",
        "fm_score_psi",
        "fm_calibration",
    ):
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
    if isinstance(obj, BaseModel):
        return {name: _to_plain(getattr(obj, name)) for name in type(obj).model_fields}
    if isinstance(obj, Mapping):
        return {k: _to_plain(v) for k, v in obj.items()}
    if isinstance(obj, tuple | list):
        return [_to_plain(v) for v in obj]
    return obj


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _kind(value: Any) -> str:
    return type(value).__name__


def describe(defaults: BaseModel | None = None, where: str = "") -> list[tuple[str, str, str]]:
    """(key, default, doc) for every leaf key: used by `exfm config keys`. The defaults are those
    of the whole Config, section by section as its parent makes it: a section type's own
    defaults can differ (checks.js is a ThresholdConfig(warn=0.05, fail=0.25), whose class
    defaults are 0.1 and 0.5)."""
    defaults = Config() if defaults is None else defaults
    rows = []
    for name, info in type(defaults).model_fields.items():
        path = _join(where, name)
        value = getattr(defaults, name)
        if isinstance(value, BaseModel):
            rows.extend(describe(value, path))
        else:
            rows.append((path, repr(_to_plain(value)), info.description or ""))
    return rows

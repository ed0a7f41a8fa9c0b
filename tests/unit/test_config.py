"""Config strictness, overrides, and the params file staying identical to the defaults."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from exfm.config import Config, config_from_dict, load_config
from exfm.errors import ConfigError
from tests.conftest import REPO


def test_shipped_params_equal_the_embedded_defaults(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_config(REPO / "params.yaml") == load_config(empty)
    assert set(load_config(empty).vm.per_vertical) == set(Config().features.verticals)


def test_to_dict_round_trips() -> None:
    cfg = load_config(REPO / "params.yaml", ["world.days=5"])
    assert config_from_dict(cfg.to_dict()) == cfg


def test_config_is_frozen() -> None:
    cfg = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.world.days = 3  # type: ignore[misc]


def test_unknown_key_names_section_key_and_allowed_keys(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("world:\n  dayz: 3\n")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert "world.dayz" in str(e.value)
    assert "allowed keys: seed, start_ds, days" in str(e.value)


def test_unknown_section_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("wrold: {days: 3}\n")
    with pytest.raises(ConfigError, match="unknown key wrold; allowed keys: world, features"):
        load_config(path)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("world.days=1.5", "world.days = 1.5 has the wrong type: expected int"),
        ("world.days=true", "world.days = True has the wrong type: expected int"),
        ("world.days=0", "world.days = 0 is out of range: allowed [1, 3650]"),
        ("world.user_leave_rate=1.0", "user_leave_rate = 1.0 is out of range: allowed [0, 1)"),
        ("world.verticals.feed.base_ctr=-0.1", "verticals.feed.base_ctr = -0.1 is out of range"),
        ("lake.compression=lz4", "lake.compression = 'lz4' is not allowed; allowed values: 'zstd'"),
        ("world.start_ds=2024-13-40", "world.start_ds: invalid ds '2024-13-40'"),
        ("world.verticals.feed.traffic_share=0.5", "traffic_share sum to 1.0500"),
        ("features.verticals=[feed, feed]", "features.verticals has duplicates"),
        ("features.features.user_id.hash_buckets=1", "needs at least 2 buckets"),
        ("features.features.hour.hash_buckets=8", "dense features are not hashed"),
        ("features.features.hour.only_verticals=[nope]", "unknown verticals ['nope']"),
        ("world.days", "must look like section.key=value"),
        ("world.days.x=1", "world.days is a value, not a section"),
    ],
)
def test_bad_values_are_rejected_with_what_and_where(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(REPO / "params.yaml", [override])
    assert message in str(e.value)


def test_int_is_accepted_where_a_float_is_expected() -> None:
    cfg = load_config(REPO / "params.yaml", ["world.latent_drift=0"])
    assert cfg.world.latent_drift == 0.0
    assert isinstance(cfg.world.latent_drift, float)


def test_nested_override_changes_one_field_and_keeps_the_rest() -> None:
    cfg = load_config(REPO / "params.yaml", ["world.verticals.feed.base_ctr=0.03"])
    assert cfg.world.verticals["feed"].base_ctr == 0.03
    assert cfg.world.verticals["feed"].traffic_share == 0.45
    assert set(cfg.world.verticals) == {"feed", "stories", "search", "video"}


def test_override_fills_missing_sections_from_defaults(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("lake: {root: elsewhere}\n")
    cfg = load_config(path, ["world.verticals.video.affinity_twist=1.5"])
    assert cfg.lake.root == "elsewhere"
    assert cfg.world.verticals["video"].affinity_twist == 1.5
    assert cfg.world.verticals["feed"] == Config().world.verticals["feed"]


def test_another_params_file_is_used(tmp_path: Path) -> None:
    data = Config().to_dict()
    data["world"]["days"] = 2
    path = tmp_path / "other.yaml"
    path.write_text(yaml.safe_dump(data))
    assert load_config(path).world.days == 2


def test_missing_and_malformed_params_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("world: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad.yaml is not valid YAML"):
        load_config(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n")
    with pytest.raises(ConfigError, match="must hold a mapping of sections"):
        load_config(scalar)


def test_world_and_features_must_name_the_same_verticals() -> None:
    with pytest.raises(ConfigError, match="world.verticals has .* but features.verticals has"):
        load_config(
            REPO / "params.yaml",
            [
                "features.verticals=[feed, stories, search]",
                "features.features.device_type.only_verticals=[feed]",
            ],
        )


def test_the_pooled_scope_is_not_a_vertical_name() -> None:
    with pytest.raises(ConfigError, match="'all' is reserved"):
        load_config(
            REPO / "params.yaml",
            [
                "features.verticals=[all, feed]",
                "world.verticals={all: {traffic_share: 0.5}, feed: {traffic_share: 0.5}}",
            ],
        )

"""Config strictness, overrides, and the params file staying identical to the defaults (but the
tuned distillation values, which are the README's)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pydantic
import pytest
import yaml

from exfm.config import Config, config_from_dict, describe, json_schema, load_config
from exfm.errors import ConfigError
from tests.conftest import REPO

TUNED = ("distill_weight", "label_scale", "aux_hidden", "sa_weight")


def test_shipped_params_equal_the_embedded_defaults_but_the_tuned_values(tmp_path: Path) -> None:
    # the library's defaults keep the method neutral (w = alpha = SA weight = 1, the 16-wide
    # auxiliary head); params.yaml carries what `exfm experiment tune` chose (the next test)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    shipped, default = load_config(REPO / "params.yaml"), load_config(empty)
    neutral = shipped.vm.model_copy(update={k: getattr(default.vm, k) for k in TUNED})
    assert shipped.model_copy(update={"vm": neutral}) == default
    assert default.vm.aux_hidden == 16 and default.vm.grad_scale == 1.0
    assert all(getattr(default.vm, k) == 1.0 for k in TUNED if k != "aux_hidden")
    assert set(default.vm.per_vertical) == set(Config().features.verticals)


def test_the_vm_defaults_users_run_are_the_tuned_values_the_readme_shows() -> None:
    text = (REPO / "README.md").read_text()
    found = re.search(
        r"Chosen: distill_weight = (\d+(?:\.\d+)?), label_scale = (\d+(?:\.\d+)?), "
        r"aux_hidden = (\d+(?:\.\d+)?), sa_weight = (\d+(?:\.\d+)?)",
        text,
    )
    assert found, "README.md shows no tuned values (the results of `make results`)"
    chosen = dict(zip(TUNED, map(float, found.groups()), strict=True))
    vm = load_config(REPO / "params.yaml").vm
    assert {k: getattr(vm, k) for k in TUNED} == chosen


def test_to_dict_round_trips() -> None:
    cfg = load_config(REPO / "params.yaml", ["world.days=5"])
    assert config_from_dict(cfg.to_dict()) == cfg


def test_config_is_frozen() -> None:
    cfg = Config()
    with pytest.raises(pydantic.ValidationError, match="frozen"):
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
        ("world.days='3'", "world.days = '3' has the wrong type: expected int"),
        ("world.latent_drift=.nan", "world.latent_drift = nan is not a finite number"),
        ("airflow.catchup=1", "airflow.catchup = 1 has the wrong type: expected bool"),
        # a link a report follows: http(s) only, never javascript: or markup
        ("airflow.ui_url='javascript:alert(1)'", "airflow.ui_url = 'javascript:alert(1)'"),
        ("airflow.ui_url='http://x/\"><b>'", "should match pattern"),
        ("lake.root=3", "lake.root = 3 has the wrong type: expected str"),
        ("fm.deep_layers=64", "fm.deep_layers must be a list, got int: 64"),
        ("fm.deep_layers=[64, x]", "fm.deep_layers[1] = 'x' has the wrong type: expected int"),
        ("world.verticals=[feed]", "world.verticals must be a mapping, got list: ['feed']"),
        ("checks.psi=3", "checks.psi must be a mapping, got int: 3"),
        ("checks.psi.wran=3", "unknown key checks.psi.wran; allowed keys: warn, fail"),
        (
            "vm.per_vertical.feed.lr=2",
            "vm.per_vertical.feed.lr = 2 is out of range: allowed (0, 1]",
        ),
        (
            "vm.per_vertical.feed.variant=x",
            "allowed values: 'baseline', 'kd', 'ah', 'ah2', 'ah_sa'",
        ),
        ("features.features={1: {kind: dense}}", "features.features has a non-text key 1"),
        (
            "experiment.history.sizes=[xs, huge]",
            "experiment.history.sizes = ['xs', 'huge']: give distinct names of "
            "experiment.fm_sizes ['m', 's', 'xs'] (['huge'] are not)",
        ),
        (
            "experiment.history.days_before=[14, 0]",
            "experiment.history.days_before = [14, 0]: give one or more days in [0, 365], "
            "increasing",
        ),
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


def test_a_key_given_twice_is_refused_naming_both_lines(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("world:\n  days: 3\nlake: {root: x}\nworld:\n  days: 14\n")
    with pytest.raises(ConfigError, match=r"p.yaml: key 'world' is given twice .*lines 1 and 4"):
        load_config(path)
    path.write_text("world:\n  days: 3\n  seed: 1\n  days: 4\n")
    with pytest.raises(ConfigError, match=r"key 'days' is given twice .*lines 2 and 4"):
        load_config(path)
    path.write_text("features:\n  verticals: [feed, stories, search, video]\n")
    assert load_config(path).features.verticals == ("feed", "stories", "search", "video")


def test_every_error_is_reported_at_once(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("world: {days: 0, seed: -1}\nlake: {compression: lz4}\n")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    lines = str(e.value).splitlines()
    assert any(line.startswith("world.days = 0 is out of range") for line in lines)
    assert any(line.startswith("world.seed = -1 is out of range") for line in lines)
    assert any(line.startswith("lake.compression = 'lz4' is not allowed") for line in lines)


def test_an_ingest_params_file_says_only_what_its_data_has(tmp_path: Path) -> None:
    """No world section, no checks section, no vm.features: the defaults that name the world's
    features keep only those configured; the world is not checked against other data."""
    path = tmp_path / "mine.yaml"
    path.write_text(
        "pipeline: {source: ingest}\n"
        "features:\n"
        "  verticals: [shop, news]\n"
        "  features:\n"
        "    user_id: {kind: categorical, hash_buckets: 1024}\n"
        "    item_id: {kind: categorical, hash_buckets: 1024}\n"
        "    hour: {kind: dense}\n"
    )
    cfg = load_config(path)
    assert cfg.checks.dense_ranges == {"hour": (0.0, 24.0)}
    assert cfg.checks.id_features == ("user_id",)
    assert cfg.vm.features == ("user_id", "hour")
    assert set(cfg.vm.per_vertical) == {"shop", "news"}
    # What a file sets is checked as it is.
    with pytest.raises(ConfigError, match="checks.dense_ranges.position: not a dense feature"):
        load_config(path, ["checks.dense_ranges.position=[1, 5]"])
    with pytest.raises(ConfigError, match="vm.features names unknown features"):
        load_config(path, ["vm.features=[ad_id]"])
    # The world is the data source: then it must describe these verticals.
    with pytest.raises(ConfigError, match="world.verticals has .* but features.verticals has"):
        load_config(path, ["pipeline.source=world"])


def test_an_override_of_one_key_leaves_the_fitted_defaults_unset(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(
        "pipeline: {source: ingest}\n"
        "features:\n  verticals: [shop]\n  features:\n    ad_id: {kind: categorical, "
        "hash_buckets: 64}\n"
    )
    cfg = load_config(path, ["checks.top_k=5", "vm.lr=0.01"])
    assert cfg.checks.top_k == 5 and cfg.checks.dense_ranges == {}
    assert cfg.vm.features == ("ad_id",) and cfg.vm.lr == 0.01
    with pytest.raises(ConfigError, match="none of the default VM features .* name the VM's"):
        load_config(path, ["features.features={item_id: {kind: categorical, hash_buckets: 8}}"])


def test_config_keys_and_json_schema_come_from_the_models() -> None:
    keys = {key: doc for key, _, doc in describe()}
    assert keys["world.days"] == "number of days `world generate` writes"
    assert "checks.psi.warn" in keys and "vm.per_vertical" in keys
    assert keys["airflow.ui_url"].startswith("the Airflow UI's base URL for links from reports")
    assert Config().airflow.ui_url is None
    # the defaults are the Config's own, section by section: checks.js is made with warn 0.05,
    # not its type's 0.1 (`exfm config keys` printed the type's)
    defaults = {key: default for key, default, _ in describe()}
    assert defaults["checks.js.warn"] == "0.05" and defaults["checks.churn.fail"] == "0.9"
    plain = Config().model_dump(mode="json")
    for key, default in defaults.items():
        value: Any = plain
        for part in key.split("."):
            value = value[part]
        assert default == repr(value), key
    schema = json_schema()
    days = schema["$defs"]["WorldConfig"]["properties"]["days"]
    assert (days["minimum"], days["maximum"], days["default"]) == (1, 3650, 14)
    assert schema["additionalProperties"] is False
    json.dumps(schema)  # serializable as it is

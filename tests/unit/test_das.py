"""The Data Augmentation System: which FM scores a day (never one that trained on it), idempotent
and atomic backfills (local and S3), the training join's coverage, bad input, accounting."""

from __future__ import annotations

import hashlib

import pyarrow as pa
import pytest

from exfm import das
from exfm.config import Config, load_config, replace
from exfm.data.schema import FeatureSpec
from exfm.data.world import generate
from exfm.errors import ExfmError, RegistryError
from exfm.lake import DAS, IMPRESSIONS, Lake
from exfm.models.inputs import InputLayout, to_batch
from exfm.trainee import build_trainee
from exfm.training import train_day
from tests.conftest import REPO, SMALL_WORLD, TINY_MODELS

DAYS = ["2026-01-05", "2026-01-06", "2026-01-07", "2026-01-08"]
LENIENT = [
    "checks.unchecked=warn",  # these tests are about the DAS; the gate's own are in test_gate.py
    "publish.max_ne=100",
    "publish.max_ne_regression=10",
    "publish.min_calibration=0",
    "publish.max_calibration=100",
]


def das_cfg(root: str, *extra: str) -> Config:
    return load_config(
        REPO / "params.yaml",
        [*SMALL_WORLD, *TINY_MODELS, *LENIENT, "world.days=4", f"lake.root={root}", *extra],
    )


def fill(cfg: Config) -> Lake:
    """The world and an FM trained (and published) on each of its days."""
    lake = Lake.from_config(cfg.lake)
    generate(cfg, lake)
    spec = FeatureSpec.from_config(cfg.features)
    for ds in DAYS:
        train_day(cfg, lake, build_trainee(cfg, spec, "fm"), lake.read(IMPRESSIONS, ds=[ds]), ds)
    return lake


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Config, Lake]:
    cfg = das_cfg(str(tmp_path_factory.mktemp("das") / "lake"))
    return cfg, fill(cfg)


def _digest(lake: Lake, ds: str, version: str) -> str:
    t = lake.read(
        DAS, fm_version=[version], ds=[ds], columns=["example_id", "vertical", "fm_logit"]
    )
    t = t.sort_by("example_id")
    return hashlib.sha256(b"".join(c.to_string().encode() for c in t.columns)).hexdigest()


def test_each_day_is_scored_by_the_fm_live_before_it(filled: tuple[Config, Lake]) -> None:
    cfg, lake = filled
    results = das.backfill(cfg, lake, DAYS[1], DAYS[3])
    assert [r["fm_version"] for r in results] == ["fm-2026-01-05", "fm-2026-01-06", "fm-2026-01-07"]
    for r in results:
        assert das.version_day(r["fm_version"]) < r["ds"]  # never its own day: no leakage
        impressions = lake.read(IMPRESSIONS, ds=[r["ds"]], columns=["label"]).num_rows
        assert r["rows"] == impressions
    with pytest.raises(das.DASError) as e:
        das.backfill_day(cfg, lake, DAYS[0])
    assert "can score ds=2026-01-05" in str(e.value)
    assert "FM snapshots: ['2026-01-05', '2026-01-06', '2026-01-07', '2026-01-08']" in str(e.value)


def test_delay_scores_day_t_with_the_fm_of_t_minus_3(filled: tuple[Config, Lake]) -> None:
    cfg, lake = filled
    delayed = replace(cfg, das=replace(cfg.das, fm_delay_days=2))
    result = das.backfill_day(delayed, lake, DAYS[3], force=True)
    assert result["fm_version"] == "fm-2026-01-05"  # trained through 01-05, scores 01-08
    with pytest.raises(das.DASError, match="trained on 2026-01-04 or earlier can score"):
        das.backfill_day(delayed, lake, DAYS[2])
    for delay in range(4):
        c = replace(cfg, das=replace(cfg.das, fm_delay_days=delay))
        for ds in DAYS:
            try:
                meta = das.live_fm(c, das.Registry(lake), ds)
            except das.DASError:
                continue
            assert meta.ds <= das.ids.ds_add(ds, -1 - delay) < ds


def test_backfill_is_idempotent_and_versions_live_side_by_side(
    filled: tuple[Config, Lake],
) -> None:
    cfg, lake = filled
    das.backfill_day(cfg, lake, DAYS[3])
    before = _digest(lake, DAYS[3], "fm-2026-01-07")
    assert das.backfill_day(cfg, lake, DAYS[3])["skipped"] is True
    forced = das.backfill_day(cfg, lake, DAYS[3], force=True)
    assert forced["skipped"] is False
    assert _digest(lake, DAYS[3], "fm-2026-01-07") == before
    table = lake.read(DAS, fm_version=["fm-2026-01-07"], ds=[DAYS[3]])
    assert len(set(table.column("example_id").to_pylist())) == table.num_rows
    das.backfill_day(cfg, lake, DAYS[3], version="fm-2026-01-06")
    versions = [p["fm_version"] for p in lake.partitions(DAS, ds=DAYS[3])]
    assert {"fm-2026-01-06", "fm-2026-01-07"} <= set(versions)
    _, report = das.training_rows(cfg, lake, DAYS[3], "feed")
    assert report["fm_version"] == "fm-2026-01-07"  # the newest FM that scored the day
    _, older = das.training_rows(cfg, lake, DAYS[3], "feed", version="fm-2026-01-06")
    assert older["rows"] == report["rows"]


def test_a_chosen_fm_must_predate_the_day_and_be_published(
    filled: tuple[Config, Lake],
) -> None:
    cfg, lake = filled
    with pytest.raises(das.DASError, match="would leak that day's labels"):
        das.backfill_day(cfg, lake, DAYS[2], version="fm-2026-01-07")
    meta = das.Registry(lake).meta("fm", None, DAYS[0])
    das.Registry(lake).set_published(meta, False, "pulled by on-call")
    try:
        with pytest.raises(das.DASError, match="is not published \\(pulled by on-call\\)"):
            das.backfill_day(cfg, lake, DAYS[2], version="fm-2026-01-05")
    finally:
        das.Registry(lake).set_published(meta, True, "restored")
    with pytest.raises(das.DASError, match="invalid fm_version"):
        das.backfill_day(cfg, lake, DAYS[2], version="latest")


def test_join_keeps_rows_without_a_prediction_masked_and_enforces_coverage(
    filled: tuple[Config, Lake],
) -> None:
    cfg, lake = filled
    das.backfill_day(cfg, lake, DAYS[2])
    values = {"fm_version": "fm-2026-01-06", "ds": DAYS[2]}
    full = lake.read_partition(DAS, values).drop_columns(["fm_version", "ds"])
    try:
        lake.write_partition(DAS, values, full.take(list(range(0, full.num_rows, 2))))
        loose = replace(cfg, das=replace(cfg.das, min_coverage=0.2))
        table, report = das.training_rows(loose, lake, DAYS[2], "feed")
        impressions = lake.read(IMPRESSIONS, ds=[DAYS[2]], vertical=["feed"])
        assert table.num_rows == impressions.num_rows == report["rows"]
        assert 0 < report["coverage"] < 1
        batch = to_batch(
            table,
            InputLayout.for_vm(FeatureSpec.from_config(cfg.features), cfg.vm, "feed"),
            with_fm_logit=True,
        )
        assert int(batch.fm_mask.sum()) == report["with_prediction"]
        with pytest.raises(das.DASError, match=r"coverage .* < das.min_coverage 99.00%"):
            das.training_rows(cfg, lake, DAYS[2], "feed")
    finally:
        lake.write_partition(DAS, values, full)


def test_bad_input(filled: tuple[Config, Lake], tmp_path) -> None:
    cfg, lake = filled
    with pytest.raises(das.DASError, match=r"unknown vertical 'radio'; verticals: \['feed'"):
        das.training_rows(cfg, lake, DAYS[2], "radio")
    with pytest.raises(das.DASError, match="no FM predictions for ds=2026-01-05"):
        das.training_rows(cfg, lake, DAYS[0], "feed")
    other = replace(
        cfg,
        features=replace(
            cfg.features,
            features={
                **cfg.features.features,
                "user_id": replace(cfg.features.features["user_id"], hash_buckets=999),
            },
        ),
    )
    with pytest.raises(RegistryError, match="was trained on feature spec"):
        das.backfill_day(other, lake, DAYS[2], force=True)
    # a partition with a duplicate example id (written around the validation)
    dup_lake = Lake(str(tmp_path / "dup"))
    part = lake.read_partition(IMPRESSIONS, {"ds": DAYS[2], "vertical": "feed"})
    part = part.drop_columns(["ds", "vertical"])
    part = pa.concat_tables([part, part.slice(0, 1)])
    dup_lake.write_partition(IMPRESSIONS, {"ds": DAYS[2], "vertical": "feed"}, part)
    for key in lake.list_keys("registry/fm"):
        dup_lake.put_bytes(key, lake.get_bytes(key))
    with pytest.raises(das.DASError, match="holds example_id .* more than once"):
        das.backfill_day(cfg, dup_lake, DAYS[2])


def test_stats_account_for_every_vm_training(filled: tuple[Config, Lake]) -> None:
    cfg, lake = filled
    das.backfill_day(cfg, lake, DAYS[1])
    supplied = 0
    for vertical in ("feed", "search"):
        for consumer in ("vm_ah_sa", "vm_kd"):
            _, report = das.training_rows(cfg, lake, DAYS[1], vertical, consumer=consumer)
            supplied += report["rows"]
    stats = das.day_stats(lake, DAYS[1])
    assert stats["vm_trainings"] == 4
    assert stats["rows_supplied_to_vms"] == supplied
    assert stats["coverage"] == 1.0
    assert stats["amortization_factor"] == pytest.approx(3 * supplied / stats["fm_inferences"])
    assert stats["fm_flops_per_row"] > 0
    assert stats["fm_gflops_co_distillation"] == pytest.approx(
        3 * stats["fm_flops_per_row"] * supplied / 1e9
    )
    quantiles = list(stats["score_quantiles"].values())
    assert quantiles == sorted(quantiles) and 0 < quantiles[0] < quantiles[-1] < 1


def test_end_to_end_on_s3(s3_root: str) -> None:
    cfg = das_cfg(s3_root, "world.days=3")
    lake = Lake.from_config(cfg.lake)
    generate(cfg, lake)
    spec = FeatureSpec.from_config(cfg.features)
    for ds in DAYS[:2]:
        train_day(cfg, lake, build_trainee(cfg, spec, "fm"), lake.read(IMPRESSIONS, ds=[ds]), ds)
    assert das.backfill_day(cfg, lake, DAYS[1])["rows"] > 0
    assert das.backfill_day(cfg, lake, DAYS[1])["skipped"]
    table, report = das.training_rows(cfg, lake, DAYS[1], "search", consumer="vm_ah_sa")
    assert report["coverage"] == 1.0 and table.num_rows == report["rows"]
    assert das.day_stats(lake, DAYS[1])["vm_trainings"] == 1


def test_error_types_are_user_facing() -> None:
    assert issubclass(das.DASError, ExfmError)


def test_the_das_scores_with_the_configured_torch_threads(filled: tuple[Config, Lake]) -> None:
    """Every torch command sets its threads from train.threads (1 by default: processes share
    the cores; 0: one per CPU the process may use), the DAS's scoring too."""
    import os

    import torch

    from exfm.inference import use_threads

    cfg, lake = filled
    assert Config().train.threads == 1
    before = torch.get_num_threads()
    try:
        for threads in (2, 1):
            torch.set_num_threads(3)
            run = replace(cfg, train=replace(cfg.train, threads=threads))
            assert das.backfill_day(run, lake, DAYS[3], force=True)["skipped"] is False
            assert torch.get_num_threads() == threads
        every_cpu = replace(cfg, train=replace(cfg.train, threads=0))
        assert use_threads(every_cpu) == len(os.sched_getaffinity(0)) == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)

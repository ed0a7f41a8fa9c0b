"""A whole day on S3 (moto's HTTP server; endpoint and credentials only from the environment):
world -> checks -> FM -> DAS -> VMs -> report through the stage functions; then an S3 outage in
the middle of a day fails it cleanly, and the rerun after recovery completes it."""

from __future__ import annotations

import boto3
import pytest

from exfm import stages
from exfm.config import load_config
from exfm.data.world import generate
from exfm.errors import LakeError
from exfm.lake import DAS, EVALS, IMPRESSIONS, Lake
from exfm.registry import Registry
from tests.conftest import REPO, SMALL_WORLD, TINY_MODELS, free_port, moto_server

pytestmark = pytest.mark.slow

DAYS = ["2026-01-05", "2026-01-06", "2026-01-07"]


def _day(cfg, ds: str) -> None:
    """One day as the DAGs run it."""
    stages.check(cfg, ds)
    stages.train_fm(cfg, ds)
    if ds != DAYS[0]:
        stages.backfill_das(cfg, ds)
        for vertical in cfg.features.verticals:
            stages.train_vm(cfg, ds, vertical)
    stages.report(cfg, ds)


@pytest.mark.s3
def test_days_on_s3_and_an_outage_mid_day(
    s3_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    server = moto_server(port)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    boto3.client("s3").create_bucket(Bucket="exfm-day")
    overrides = [
        *SMALL_WORLD,
        *TINY_MODELS,
        "publish.max_ne=100",
        "lake.root=s3://exfm-day/lake",
        "lake.s3_max_attempts=2",
        "lake.s3_connect_timeout_s=0.5",
        "checks.reference_days=2",
    ]
    cfg = load_config(REPO / "params.yaml", overrides)
    lake = Lake.from_config(cfg.lake)
    try:
        generate(cfg, lake)
        for ds in DAYS[:2]:
            _day(cfg, ds)
        assert [p["ds"] for p in lake.partitions(DAS)] == [DAYS[1]]
        assert len(lake.partitions(EVALS, model="vm_ah_sa")) == 0  # the VMs started on day 2
        assert Registry(lake).latest_published("vm_ah_sa", "search", DAYS[1]).ds == DAYS[1]
        assert lake.exists(f"reports/drift/{DAYS[1]}.html")

        # the third day: S3 goes away while the FM's snapshot is being written
        real_save = Registry.save

        def save_then_outage(self, meta, payload, policy=None, base=None):
            server.stop()
            return real_save(self, meta, payload, policy, base)

        stages.check(cfg, DAYS[2])
        monkeypatch.setattr(Registry, "save", save_then_outage)
        with pytest.raises(LakeError, match="did not answer"):
            stages.train_fm(cfg, DAYS[2])
        monkeypatch.setattr(Registry, "save", real_save)
        server = moto_server(port)
        assert [m.ds for m in Registry(lake).history("fm", None)] == DAYS[:2]  # nothing half
        _day(cfg, DAYS[2])  # the rerun after recovery
        assert [m.ds for m in Registry(lake).history("fm", None)] == DAYS
        assert [p["ds"] for p in lake.partitions(DAS)] == DAYS[1:]
        assert len(lake.partitions(IMPRESSIONS)) == 12
        evals = lake.partitions(EVALS, model="vm_ah_sa", ds=DAYS[2])
        assert len(evals) == 4
        # lineage on S3: every artifact current, then a re-landed day makes its own stale
        assert stages.lineage(cfg, stale=True)["stale"] == []
        relanded = load_config(REPO / "params.yaml", [*overrides, "world.seed=99"])
        generate(relanded, lake, days=1, start_ds=DAYS[2])
        stale = {s["name"] for s in stages.lineage(cfg, stale=True)["stale"]}
        assert f"checks/ds={DAYS[2]}" in stale and f"registry/fm/ds={DAYS[2]}" in stale
        assert f"registry/vm_ah_sa/search/ds={DAYS[2]}" in stale
        assert not any(f"ds={DAYS[1]}" in name for name in stale)
    finally:
        server.stop()

"""Airflow tests: a private AIRFLOW_HOME and a tiny params file, set up before anything imports
airflow (Airflow reads its configuration at import time)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO

HOME = Path(tempfile.mkdtemp(prefix="exfm-airflow-"))
PARAMS = HOME / "params.yaml"
DAGS = REPO / "dags"
# a tiny world and tiny models; the lake lives beside the params file
PARAMS.write_text("""
world: {days: 2, impressions_per_day: 4000, n_users: 2000, n_ads: 300, n_advertisers: 40,
        n_contexts: 100}
fm: {embedding_dim: 8, vertical_dim: 4, cross_layers: 1, deep_layers: [32, 16]}
vm: {embedding_dim: 4, hidden: [16, 8], aux_hidden: 4, max_hash_buckets: 512}
publish: {max_ne: 100}
lake: {root: lake, catalog: exfm.duckdb}
airflow: {schedule: none, retries: 1, retry_delay_s: 1}
""")
ENV = {
    "AIRFLOW_HOME": str(HOME / "airflow"),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
    "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
    "EXFM_PARAMS": str(PARAMS),
}
os.environ.update(ENV)


@pytest.fixture(scope="session")
def airflow_db() -> Iterator[None]:
    from airflow.utils import db

    db.resetdb()
    yield


@pytest.fixture(scope="session")
def dagbag(airflow_db: None):
    from airflow.dag_processing.dagbag import BundleDagBag

    return BundleDagBag(dag_folder=str(DAGS), bundle_path=DAGS)

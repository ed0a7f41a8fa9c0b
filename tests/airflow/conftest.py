"""Airflow tests: a private AIRFLOW_HOME and a tiny params file, set up before anything imports
airflow (Airflow reads its configuration at import time)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, airflow_params

HOME = Path(tempfile.mkdtemp(prefix="exfm-airflow-"))
PARAMS = HOME / "params.yaml"
DAGS = REPO / "dags"
# a tiny world and tiny models; the lake lives beside the params file
PARAMS.write_text(airflow_params(retry_delay_s=1))
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

"""The ExFM console plugin (plugins/exfm_console.py) in-process, mounted as the API server mounts
it: every route behind Airflow's own authentication, the paths it refuses, a lake object's bytes
and content type, the 404 and 503 it names, the days and notes it reads from a run, and HTML
escaping. The browser path through the real UI is tests/e2e/test_airflow_standalone.py."""

from __future__ import annotations

import datetime as dt
import importlib.util
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

from exfm.config import load_config, resolve_paths
from exfm.lake import Lake
from tests.airflow.conftest import PARAMS
from tests.conftest import REPO, free_port

PLUGIN = REPO / "plugins" / "exfm_console.py"
CFG = resolve_paths(load_config(PARAMS), PARAMS.parent)  # as the plugin reads $EXFM_PARAMS


@pytest.fixture(scope="module")
def console() -> ModuleType:
    spec = importlib.util.spec_from_file_location("exfm_console", PLUGIN)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def client(console: ModuleType, airflow_db: None) -> Any:
    """A test client of an app with Airflow's auth manager and the console at /exfm; its
    `token` is an admin's."""
    from airflow.api_fastapi.app import init_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    app = FastAPI()
    manager = init_auth_manager(app)
    (plugin,) = [p for p in console.ExfmConsole().fastapi_apps if p["url_prefix"] == "/exfm"]
    app.mount(plugin["url_prefix"], plugin["app"])
    test_client = TestClient(app)
    test_client.token = manager.generate_jwt(SimpleAuthManagerUser(username="admin", role="admin"))
    return test_client


def get(client: Any, path: str, **headers: str) -> Any:
    return client.get(path, headers={"Authorization": f"Bearer {client.token}", **headers})


ROUTES = [
    "/exfm/",
    "/exfm/lake/reports/drift/index.html",
    "/exfm/results/results.html",
    "/exfm/run/exfm_fm_daily/manual__2026-01-05",
    "/exfm/day/2026-01-05",
]


@pytest.mark.parametrize("path", ROUTES)
def test_every_route_needs_a_logged_in_user(client: Any, path: str) -> None:
    refused = client.get(path)
    assert refused.status_code == 401 and "<html" not in refused.text
    forged = client.get(path, headers={"Authorization": "Bearer not-a-token"})
    assert forged.status_code == 403 and "<html" not in forged.text
    client.cookies.set("_token", client.token)  # the UI's cookie logs an iframe in
    try:
        assert client.get(path).status_code in (200, 404)
    finally:
        client.cookies.clear()


@pytest.mark.parametrize(
    "path",
    [
        "drift/../../params.yaml",
        "drift/%2e%2e/x.html",
        "drift//x.html",
        "drift/x.exe",
        "drift/.hidden.html",
        "drift/x.html%00.png",
        "a/b/c/d/e/f/g.html",
        "drift",
    ],
)
def test_paths_outside_the_reports_or_of_unknown_types_are_refused(client: Any, path: str) -> None:
    response = get(client, f"/exfm/lake/reports/{path}")
    assert response.status_code in (400, 404), response.text
    assert response.status_code == 404 or "refused path" in response.json()["detail"]
    assert get(client, f"/exfm/results/{path}").status_code in (400, 404)


def test_a_lake_report_is_served_with_its_type_and_a_missing_one_is_named(client: Any) -> None:
    lake = Lake.from_config(CFG.lake)
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"/>'
    lake.put_bytes("reports/console-test/chart.svg", svg)
    response = get(client, "/exfm/lake/reports/console-test/chart.svg")
    assert response.status_code == 200 and response.content == svg
    assert response.headers["content-type"] == "image/svg+xml"
    assert "script-src 'none'" in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"
    missing = get(client, "/exfm/lake/reports/console-test/nothing.html")
    assert missing.status_code == 404
    assert "reports/console-test/nothing.html does not exist" in missing.json()["detail"]


def test_an_unreachable_s3_lake_is_a_503_naming_it(
    client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(
        PARAMS.read_text().replace(
            "lake: {root: lake, catalog: exfm.duckdb}",
            "lake: {root: 's3://exfm-nowhere/lake', catalog: exfm.duckdb, s3_max_attempts: 1, "
            "s3_connect_timeout_s: 0.5}",
        )
    )
    monkeypatch.setenv("EXFM_PARAMS", str(params))
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nothing there
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    response = get(client, "/exfm/lake/reports/drift/index.html")
    assert response.status_code == 503
    assert "s3://exfm-nowhere/lake" in response.json()["detail"]


def test_results_are_read_from_the_experiments_reports_dir(client: Any) -> None:
    folder = Path(CFG.experiment.reports_dir)
    (folder / "plots").mkdir(parents=True, exist_ok=True)
    (folder / "plots" / "curve.csv").write_text("ds,ne\n2026-01-05,0.9\n")
    response = get(client, "/exfm/results/plots/curve.csv")
    assert response.status_code == 200 and response.text.startswith("ds,ne")
    assert response.headers["content-type"].startswith("text/csv")


def test_pages_of_runs_days_and_the_index(client: Any) -> None:
    index = get(client, "/exfm/")
    assert index.status_code == 200
    assert 'href="/exfm/lake/reports/drift/index.html"' in index.text
    assert "script-src 'none'" in index.headers["content-security-policy"]
    missing = get(client, "/exfm/run/exfm_fm_daily/manual__nothing")
    assert missing.status_code == 404 and "has no run" in missing.json()["detail"]
    bad_day = get(client, "/exfm/day/2026-13-45")
    assert bad_day.status_code == 400 and "YYYY-MM-DD" in bad_day.json()["detail"]
    day = get(client, "/exfm/day/2026-01-05")
    assert day.status_code == 200 and "drift/2026-01-05.html" in day.text


def _run(dag_id: str, **fields: Any) -> SimpleNamespace:
    defaults = {"run_id": "r1", "logical_date": None, "conf": {}, "note": None, "state": "success"}
    return SimpleNamespace(dag_id=dag_id, **{**defaults, **fields})


def test_the_days_of_a_run(console: ModuleType) -> None:
    days, utc = console.run_days, dt.UTC
    fm = _run("exfm_fm_daily", logical_date=dt.datetime(2026, 1, 6, tzinfo=utc))
    assert days(fm, None) == ["2026-01-06"]
    summary = {"days": ["2026-01-07", "2026-01-05", "not-a-day"], "note": "n"}
    assert days(_run("exfm_data_quality"), summary) == ["2026-01-05", "2026-01-07"]
    form = _run("exfm_das_backfill", conf={"start": "2026-01-05", "end": "2026-01-07"})
    assert days(form, {"trained": [], "not_trained": {}}) == [
        "2026-01-05",
        "2026-01-06",
        "2026-01-07",
    ]
    assert days(_run("exfm_vm_finetune", conf={"ds": "2026-01-08"}), None) == ["2026-01-08"]
    assert days(_run("exfm_das_backfill", conf={"start": "2026-13-45"}), None) == []
    assert days(_run("exfm_vm_finetune"), None) == []
    assert days(_run("exfm_vm_finetune", conf={"ds": "2026-01-08"}), {"days": 7}) == ["2026-01-08"]


def test_notes_and_ids_are_escaped(console: ModuleType) -> None:
    from starlette.requests import Request

    request = Request({"type": "http", "root_path": "/exfm", "headers": []})
    run = _run("exfm_das_backfill", run_id="manual__<b>")
    found = {(run.dag_id, run.run_id): {"days": ["2026-01-05"], "note": "<script>x</script>"}}
    html = console._run_rows(request, [run], found, True)
    assert "<script>" not in html and "&lt;script&gt;x&lt;/script&gt;" in html
    assert (
        "manual__&lt;b&gt;" in html and 'href="/exfm/run/exfm_das_backfill/manual__%3Cb%3E"' in html
    )
    assert console.run_note(run, None) == ""
    assert console.run_note(_run("exfm_fm_daily", note="a user's"), None) == "a user's"

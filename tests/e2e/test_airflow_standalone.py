"""End to end through the real Airflow, driven by a user's browser session: `make airflow` (API
server, scheduler, DAG processor, triggerer, LocalExecutor and the task log servers) on free local
ports in a temporary AIRFLOW_HOME, on a 2-day demo world on the daily schedule. Nothing of it
listens beyond 127.0.0.1, and what it writes under AIRFLOW_HOME (the admin password, the metadata
database, the task logs) is readable by this user only.

In headless Chromium (Debian's, offline: every request off 127.0.0.1 is refused): a logged-out
browser gets 401/403, not the ExFM console's pages; the user logs in through the UI's form with
the password `make airflow` printed, and unpauses the four DAGs with their toggles. The FM DAG
catches up over the 2 days; the Asset-triggered DAS, VM and data-quality DAGs follow on their own
(the VMs with one mapped task per vertical and variant), and each run's note is its summary's. The
user opens a day's run, its "ExFM" tab shows that day's drift report, the nav entry the console's
index; the DAS Trigger form refuses a malformed day and no run is made. Then Ctrl-C (SIGINT to
the terminal's foreground process group) stops every process and none is left behind. On a failed
browser step, a screenshot and the page's HTML are saved under the test's tmp_path."""

from __future__ import annotations

import contextlib
import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from playwright.sync_api import expect, sync_playwright

from exfm import das
from exfm.config import load_config, resolve_paths
from exfm.lake import DAS, IMPRESSIONS, Lake
from exfm.registry import Registry
from tests.conftest import airflow_demo_params
from tests.e2e import airflow_process as af
from tests.e2e.browser import CHROMIUM

# the 2-day demo takes ~4 min on 2 cores; pyproject's 600 s would leave little room
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

DAYS = ["2026-01-05", "2026-01-06"]  # the second has an FM before it: DAS and VMs
DAGS = ["exfm_das_backfill", "exfm_data_quality", "exfm_vm_finetune", "exfm_fm_daily"]
ACTIVE = {"queued", "running"}


@pytest.fixture
def standalone(tmp_path: Path) -> Iterator[tuple[af.Airflow, Any]]:
    """A running `make airflow` on the 2-day demo, DAGs paused; stopped with Ctrl-C (and checked)
    afterwards."""
    params = tmp_path / "params.yaml"
    params.write_text(airflow_demo_params(retry_delay_s=5, days=len(DAYS)))
    with af.running(tmp_path, params) as airflow:
        api, proc = airflow.api, airflow.proc
        # the UI and both task log servers listen, on 127.0.0.1 only, and nothing else does
        api.wait("the log servers", lambda: af.listening(proc) >= airflow.listeners, 60)
        assert af.listening(proc) == airflow.listeners
        for log_port in airflow.log_ports:  # Airflow's log server: a token is required
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(f"http://{af.LOOPBACK}:{log_port}/log/x", timeout=10)
            assert refused.value.code == 403
        for private in (airflow.password_file, airflow.home / "airflow.db"):
            assert af.mode(private) == 0o600, f"{private}: {af.mode(private):o}"
        yield airflow, resolve_paths(load_config(params), tmp_path)


@pytest.fixture
def browser() -> Iterator[Any]:
    """Debian's headless Chromium through Playwright (which never downloads a browser)."""
    assert Path(CHROMIUM).exists(), "headless Chromium is missing: `make test` installs it"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-background-networking", "--disable-component-update"],
        )
        yield chromium
        chromium.close()


class Session:
    """A browser context on the Airflow UI whose requests off the API server's origin are
    refused (and counted); `step` saves a screenshot and the HTML of a failed step."""

    def __init__(self, browser: Any, base: str, evidence: Path) -> None:
        self.base, self.evidence, self.refused = base, evidence, []
        self.context = browser.new_context(viewport={"width": 1400, "height": 1000})
        self.context.route("**/*", self._local_only)
        self.page = self.context.new_page()

    def _local_only(self, route: Any) -> None:
        if route.request.url.startswith(self.base + "/"):
            route.continue_()
        else:
            self.refused.append(route.request.url)
            route.abort()

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[Any]:
        try:
            yield self.page
        except Exception as e:
            shot, html = self.evidence / f"{name}.png", self.evidence / f"{name}.html"
            with contextlib.suppress(Exception):
                self.page.screenshot(path=shot, full_page=True)
            with contextlib.suppress(Exception):
                html.write_text(self.page.content())
            raise AssertionError(f"{name}: {e}\nscreenshot: {shot}\npage: {html}") from e


def test_a_users_session_runs_the_demo_and_reads_the_console(
    standalone: tuple[af.Airflow, Any], browser: Any, tmp_path: Path
) -> None:
    airflow, cfg = standalone
    api, base = airflow.api, airflow.api.base
    password = airflow.password()
    assert f"Airflow login: admin / {password}" in airflow.output()
    api.login(password)
    api.wait(
        "the DAGs to be parsed",
        lambda: {d["dag_id"] for d in api.call("GET", "/api/v2/dags")["dags"]} >= set(DAGS),
        180,
    )
    assert all(api.call("GET", f"/api/v2/dags/{d}")["is_paused"] for d in DAGS)

    # logged out: the console answers 401/403, never a page
    anonymous = Session(browser, base, tmp_path)
    for path in ("/exfm/lake/reports/drift/index.html", "/exfm/"):
        response = anonymous.page.goto(base + path)
        assert response.status in (401, 403), (path, response.status)
        assert "<html" not in response.text().lower()
    anonymous.context.close()

    user = Session(browser, base, tmp_path)
    with user.step("login") as page:
        page.goto(base + "/")
        page.fill("input[name=username]", "admin")
        page.fill("input[name=password]", password)
        page.click("button[type=submit]")
        page.wait_for_url(base + "/")
    with user.step("unpause") as page:
        page.goto(base + "/dags")
        for dag_id in DAGS:  # the consumers first, then the FM DAG that feeds them
            card = page.get_by_test_id("dag-card").filter(
                has=page.get_by_test_id("dag-id").filter(has_text=re.compile(f"^{dag_id}$"))
            )
            toggle = card.get_by_test_id("toggle-pause")
            toggle.click()
            expect(toggle).to_have_attribute("data-state", "checked")
    assert not any(api.call("GET", f"/api/v2/dags/{d}")["is_paused"] for d in DAGS)

    runs = _wait_for_the_demo(airflow, cfg)
    _check_the_chain(airflow, cfg, runs)

    fm_run = next(r for r in runs["exfm_fm_daily"] if r["logical_date"].startswith(DAYS[1]))
    with user.step("run-tab") as page:
        page.goto(f"{base}/dags/exfm_fm_daily/runs/{quote(fm_run['dag_run_id'], safe='')}")
        page.get_by_role("link", name="ExFM", exact=True).click()
        console = page.frame_locator("iframe[title=ExFM]")
        console.get_by_text(fm_run["note"].splitlines()[0]).wait_for()
        report = console.frame_locator(f"iframe[title='drift report {DAYS[1]}']")
        report.locator("h1").wait_for()
        assert DAYS[1] in report.locator("body").inner_text()
        to_day = report.get_by_role("link", name="this day in Airflow")
        assert to_day.get_attribute("href") == f"/exfm/day/{DAYS[1]}"
        # the console's page of the day: every DAG's run of it, linked to its page in the UI
        console.get_by_role("link", name="runs", exact=True).click()
        console.get_by_role("heading", name=f"ExFM: {DAYS[1]} in Airflow").wait_for()
        ui_run = f"/dags/exfm_fm_daily/runs/{quote(fm_run['dag_run_id'], safe='')}"
        assert (
            console.get_by_role("link", name=fm_run["dag_run_id"]).get_attribute("href") == ui_run
        )
    with user.step("nav") as page:
        page.get_by_role("link", name="ExFM reports").click()
        index = page.frame_locator("iframe[title='ExFM reports']")
        index.get_by_role("link", name="Data-drift reports (every day)").wait_for()
        text = index.locator("body").inner_text()
        assert all(dag_id in text for dag_id in DAGS), text

    backfills = len(api.runs("exfm_das_backfill"))
    with user.step("trigger-refused") as page:
        page.goto(f"{base}/dags/exfm_das_backfill")
        page.get_by_test_id("trigger-dag-button").first.click()
        dialog = page.get_by_role("dialog")
        start = dialog.locator("#element_start")
        start.click()
        start.press_sequentially("2026-13-45")  # a date field: what it makes of it is no date
        dialog.get_by_role("button", name="Trigger").click()
        dialog.get_by_text(re.compile("Invalid input for param start")).wait_for()
    assert len(api.runs("exfm_das_backfill")) == backfills, "the refused form made a run"
    assert not user.refused, f"requests off {base} were refused: {user.refused}"
    user.context.close()


def _wait_for_the_demo(airflow: af.Airflow, cfg: Any) -> dict[str, list[dict]]:
    """Until the FM DAG ran the 2 days and every run the Assets started has finished: the DAS
    scored the days after the first (the first has no FM yet), a VM of each vertical was trained
    on each, and each day has its drift report. No run may fail. Returns each DAG's runs."""
    api, lake = airflow.api, Lake.from_config(cfg.lake)
    registry, vm, verticals = Registry(lake), f"vm_{cfg.vm.variant}", cfg.features.verticals
    runs: dict[str, list[dict]] = {}

    def done() -> bool:
        airflow.note_processes()
        for dag_id in DAGS:
            runs[dag_id] = api.runs(dag_id)
            failed = [r["dag_run_id"] for r in runs[dag_id] if r["state"] == "failed"]
            assert not failed, f"{dag_id} failed: {failed}\n{af.tail(airflow)}"
        fm = [r for r in runs["exfm_fm_daily"] if r["state"] == "success"]
        vms = {(m.vertical, m.ds) for v in verticals for m in registry.history(vm, v)}
        return (
            len(fm) == len(DAYS)
            and sorted({p["ds"] for p in lake.partitions(DAS)}) == DAYS[1:]
            and vms >= {(v, d) for v in verticals for d in DAYS[1:]}
            and all(lake.exists(f"reports/drift/{d}.html") for d in DAYS)
            and not any(r["state"] in ACTIVE for rs in runs.values() for r in rs)
        )

    api.wait("the 2-day demo: FM days, then the DAS, VM and data-quality runs", done)
    return runs


def _check_the_chain(airflow: af.Airflow, cfg: Any, runs: dict[str, list[dict]]) -> None:
    """The Asset chain, over the 2 days; and each run's
    note is its summary's."""
    api, lake = airflow.api, Lake.from_config(cfg.lake)
    vm_runs = [r for r in runs["exfm_vm_finetune"] if r["state"] == "success"]
    assert vm_runs and all(r["run_type"] == "asset_triggered" for r in vm_runs)
    for run in vm_runs:
        run_path = f"/api/v2/dags/exfm_vm_finetune/dagRuns/{quote(run['dag_run_id'], safe='')}"
        tis = api.task_instances("exfm_vm_finetune", run["dag_run_id"])
        trains = [t for t in tis if t["task_id"] == "train_vm"]
        plan = api.call("GET", f"{run_path}/taskInstances/plan/xcomEntries/return_value")
        plan = json.loads(plan["value"]) if isinstance(plan["value"], str) else plan["value"]
        # one mapped training per planned VM, every vertical among them, all trained
        assert sorted(t["map_index"] for t in trains) == list(range(len(plan)))
        assert {item["vertical"] for item in plan} == set(cfg.features.verticals)
        assert {t["state"] for t in trains} == {"success"}
        # tasks record the host 127.0.0.1, where the API server asks the log server for a
        # running task's log
        assert {t["hostname"] for t in trains} == {af.LOOPBACK}
    parts = sorted(lake.partitions(DAS), key=lambda p: p["ds"])
    assert sorted(p["ds"] for p in parts) == DAYS[1:]
    assert all(das.version_day(p["fm_version"]) < p["ds"] for p in parts)

    # the Assets carried the content ids they announced, and the consumers used exactly those
    events = api.call("GET", "/api/v2/assets/events?limit=100")["asset_events"]
    checked = [e["extra"] for e in events if e["name"] == "exfm_impressions_checked"]
    assert sorted(e["ds"] for e in checked) == DAYS
    for extra in checked:
        day = extra["ds"]
        assert extra["impressions"] == {day: lake.content_ids(IMPRESSIONS, ds=[day])}
    scored = [e["extra"] for e in events if e["name"] == "exfm_das_scored"]
    announced = sorted(((d, c) for e in scored for d, c in e["das"].items()), key=lambda x: x[0])
    assert announced == [(p["ds"], {DAS.rel_dir(p): lake.content_id(DAS, p)}) for p in parts]
    for part in parts:
        for vertical in cfg.features.verticals:
            meta = Registry(lake).meta(f"vm_{cfg.vm.variant}", vertical, part["ds"])
            assert meta.inputs[DAS.rel_dir(part)] == lake.content_id(DAS, part)

    # the listener copied each FM day's summary note onto its run (the grid shows it), and the
    # console's page of a day lists every DAG's run of it (by their summaries' days)
    for run in runs["exfm_fm_daily"]:
        day = run["logical_date"][:10]
        assert run["note"] and day in run["note"], (run["dag_run_id"], run["note"])
    day_page = _console(api, f"/exfm/day/{DAYS[1]}")
    for dag_id in DAGS:
        covering = [r for r in runs[dag_id] if f">{r['dag_run_id']}<" in day_page]
        assert covering, f"/exfm/day/{DAYS[1]} lists no run of {dag_id}"

    # while tasks ran, nothing started listening elsewhere; every file under AIRFLOW_HOME (the task
    # logs included) is this user's only
    assert af.listening(airflow.proc) == airflow.listeners
    shared = [
        f"{af.mode(path):o} {path}"
        for path in [airflow.home, *airflow.home.rglob("*")]
        if not path.is_symlink() and af.mode(path) & 0o077
    ]
    assert not shared, shared
    assert any(airflow.home.glob("logs/dag_id=exfm_vm_finetune/**/*.log"))


def _console(api: af.Api, path: str) -> str:
    """A console page read with the API's token (the Bearer header, not the UI's cookie)."""
    request = urllib.request.Request(api.base + path)
    request.add_header("Authorization", f"Bearer {api.token}")
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read().decode()

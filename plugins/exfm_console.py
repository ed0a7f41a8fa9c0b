"""The ExFM console: an Airflow plugin that shows the reports and each run's summary in the UI.

Serves, read-only, under /exfm on the API server (a FastAPI app; every route needs a logged-in
Airflow user, through Airflow's own `get_user`: the Bearer header, or the UI's `_token` cookie):
    /exfm/                         the index: the reports and the latest runs of the exfm DAGs
    /exfm/lake/reports/<path>      a lake object under reports/ (drift, pipeline report)
    /exfm/results/<path>           the experiments' results page (experiment.reports_dir)
    /exfm/run/<dag_id>/<run_id>    one run: its days, its summary note, the day's drift report
    /exfm/day/<ds>                 every exfm run that covered the day (the drift report links here)
The UI shows it as the nav entry "ExFM reports" and as the tab "ExFM" of every run (iframes on the
same origin, so the UI's cookie logs them in). Runs come from the metadata database and their days
and notes from the XCom of each DAG's last task, `summary` ({"days": [...], "note": "..."}). The
listener below copies that note onto the run when it finishes, so the grid shows it.

Every Airflow process (the scheduler, each task) imports this module, and only the API server
needs the web app: the app and Airflow's API security code (~1.5 s to import) are built on first
use, and the lake (pyarrow) is imported by the routes that read it.
"""

from __future__ import annotations

import functools
import html
import logging
import os
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from airflow.listeners import hookimpl
from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.responses import HTMLResponse

from exfm import ids
from exfm.config import Config, load_config, resolve_paths
from exfm.errors import ExfmError, LakeError

log = logging.getLogger(__name__)
PROJECT = Path(__file__).resolve().parents[1]
PREFIX = "/exfm"
DAGS = ("exfm_fm_daily", "exfm_das_backfill", "exfm_data_quality", "exfm_vm_finetune")
SUMMARY_TASK = "summary"
RECENT_RUNS = 8  # per DAG on the index
SCANNED_RUNS = 2000  # the latest runs a day page looks through
MAX_NOTE = 1000  # dag_run_note.content is a String(1000)
TYPES = {
    "html": "text/html; charset=utf-8",
    "svg": "image/svg+xml",
    "css": "text/css; charset=utf-8",
    "json": "application/json",
    "csv": "text/csv; charset=utf-8",
    "png": "image/png",
}
# The pages and reports are static: no script runs, and only the UI (same origin) may frame them.
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'none'; style-src 'self' "
    "'unsafe-inline'; img-src 'self' data:; frame-ancestors 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def config() -> Config:
    """As the DAGs read it (dags/exfm_common.py): $EXFM_PARAMS, else the project's params.yaml,
    relative paths resolved against the file's folder."""
    params = Path(os.environ.get("EXFM_PARAMS") or PROJECT / "params.yaml")
    return resolve_paths(load_config(params), params.parent)


# ----------------------------------------------------------------------------------- files


def checked_path(path: str) -> tuple[str, str]:
    """(path, content type) of a requested file, or 400: '/'-joined segments of letters, digits,
    '.', '_', '-', '=' (no empty segment, so nothing absolute; no '..'), with a known extension."""
    segments = path.split("/")
    if len(segments) > 6 or not all(
        ids.OBJECT_SEGMENT.fullmatch(s) and ".." not in s for s in segments
    ):
        raise HTTPException(400, f"refused path {path!r}: expected a/b/name.ext, no '..'")
    extension = segments[-1].rpartition(".")[2].lower()
    if extension not in TYPES:
        raise HTTPException(400, f"refused path {path!r}: serves only {', '.join(TYPES)} files")
    return path, TYPES[extension]


def lake_report(path: str) -> Response:
    """The lake object reports/<path>: 404 when it is missing, 503 when the lake cannot be read."""
    from exfm.lake import Lake

    path, media_type = checked_path(path)
    key = f"reports/{path}"
    lake = Lake.from_config(config().lake)
    try:
        if not lake.exists(key):
            raise HTTPException(404, f"{lake.uri(key)} does not exist (not written yet?)")
        data = lake.get_bytes(key)
    except LakeError as e:
        raise HTTPException(503, f"the lake {lake.root} cannot be read: {e}") from e
    return Response(data, media_type=media_type, headers=HEADERS)


def results_file(path: str) -> Response:
    """A file of the experiments' results page, under experiment.reports_dir (local)."""
    path, media_type = checked_path(path)
    root = Path(config().experiment.reports_dir).resolve()
    file = (root / path).resolve()
    if not file.is_relative_to(root) or not file.is_file():
        raise HTTPException(404, f"{root / path} does not exist (run `make results` first)")
    return Response(file.read_bytes(), media_type=media_type, headers=HEADERS)


# ------------------------------------------------------------------------------------ runs


def summaries(session: Any, runs: list[Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """(dag_id, run_id) -> the return value of the run's `summary` task, where it is a dict."""
    from airflow.models.xcom import XCOM_RETURN_KEY, XComModel
    from sqlalchemy import select

    if not runs:
        return {}
    rows = session.scalars(
        select(XComModel).where(
            XComModel.dag_id.in_({r.dag_id for r in runs}),
            XComModel.run_id.in_({r.run_id for r in runs}),
            XComModel.task_id == SUMMARY_TASK,
            XComModel.key == XCOM_RETURN_KEY,
            XComModel.map_index == -1,
        )
    )
    found = {}
    for row in rows:
        value = XComModel.deserialize_value(row)
        if isinstance(value, dict):
            found[row.dag_id, row.run_id] = value
    return found


def run_days(run: Any, summary: dict[str, Any] | None) -> list[str]:
    """The days a run covers: its summary's `days`; else the FM DAG's logical date; else the
    Trigger form's `ds` or `start`..`end`. Malformed days are left out."""
    days = (summary or {}).get("days")
    days = days if isinstance(days, list) else None
    if not days and run.dag_id == "exfm_fm_daily" and run.logical_date:
        days = [run.logical_date.date().isoformat()]
    if not days:
        conf = run.conf or {}
        try:
            if conf.get("ds"):
                days = [ids.ds(conf["ds"])]
            elif conf.get("start"):
                days = ids.ds_range(conf["start"], conf.get("end") or conf["start"])[:400]
        except ExfmError:
            days = []
    return sorted({d for d in days or [] if _is_day(d)})


def _is_day(value: Any) -> bool:
    try:
        ids.ds(value)
    except ExfmError:
        return False
    return True


def run_note(run: Any, summary: dict[str, Any] | None) -> str:
    note = (summary or {}).get("note")
    return note if isinstance(note, str) and note else (run.note or "")


def recent_runs(session: Any, dag_ids: set[str], limit: int) -> list[Any]:
    from airflow.models.dagrun import DagRun
    from sqlalchemy import select

    order = DagRun.run_after.desc()
    query = select(DagRun).where(DagRun.dag_id.in_(dag_ids)).order_by(order).limit(limit)
    return list(session.scalars(query))


# ------------------------------------------------------------------------------------ pages


def _page(title: str, body: str) -> HTMLResponse:
    return HTMLResponse(
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}'
        "</title><style>body{font-family:system-ui,sans-serif;margin:16px;color:#222}"
        "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ddd;padding:3px 8px;"
        "text-align:left;vertical-align:top}th{background:#f4f4f4}pre{margin:0;white-space:pre-wrap}"
        "iframe{width:100%;height:70vh;border:1px solid #ddd}.muted{color:#777}h1{font-size:18px}"
        "</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>",
        headers=HEADERS,
    )


def _a(href: str, text: str) -> str:
    """A link. Inside the UI's iframe every link opens in that frame: its sandbox forbids
    navigating the window (no allow-top-navigation), so a target="_top" link would do nothing."""
    return f'<a href="{html.escape(href)}">{html.escape(text)}</a>'


def _bases(request: Request) -> tuple[str, str]:
    """(the console's base path, the UI's): /exfm and '' unless Airflow runs under a prefix."""
    base = request.scope.get("root_path", PREFIX).rstrip("/")
    return base, base.removesuffix(PREFIX)


def _run_rows(request: Request, runs: list[Any], found: dict, console_link: bool) -> str:
    base, ui = _bases(request)
    rows = []
    for run in runs:
        summary = found.get((run.dag_id, run.run_id))
        dag, run_id = quote(run.dag_id, safe=""), quote(run.run_id, safe="")
        href = f"{base}/run/{dag}/{run_id}" if console_link else f"{ui}/dags/{dag}/runs/{run_id}"
        link = _a(href, run.run_id)
        days = ", ".join(_a(f"{base}/day/{d}", d) for d in run_days(run, summary)) or "-"
        note = html.escape(run_note(run, summary))
        cells = [html.escape(run.dag_id), link, html.escape(str(run.state)), days]
        rows.append(f"<tr><td>{'</td><td>'.join(cells)}</td><td><pre>{note}</pre></td></tr>")
    head = "<tr><th>DAG</th><th>run</th><th>state</th><th>days</th><th>note</th></tr>"
    return f"<table>{head}{''.join(rows)}</table>" if rows else '<p class="muted">no runs</p>'


def index(request: Request, readable: ReadableDags) -> HTMLResponse:
    from airflow.utils.session import create_session

    base, _ = _bases(request)
    links = [
        _a(f"{base}/lake/reports/drift/index.html", "Data-drift reports (every day)"),
        _a(f"{base}/lake/reports/pipeline/index.html", "Pipeline report (NE per vertical)"),
        _a(f"{base}/results/results.html", "Experiments' results"),
    ]
    sections = []
    with create_session(scoped=False) as session:
        for dag_id in (d for d in DAGS if d in readable):
            runs = recent_runs(session, {dag_id}, RECENT_RUNS)
            found = summaries(session, runs)
            sections.append(
                f"<h2>{html.escape(dag_id)}</h2>{_run_rows(request, runs, found, True)}"
            )
    items = "".join(f"<li>{link}</li>" for link in links)
    return _page("ExFM reports", f"<ul>{items}</ul>{''.join(sections)}")


def run_page(request: Request, dag_id: str, run_id: str) -> HTMLResponse:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    base, ui = _bases(request)
    with create_session(scoped=False) as session:
        run = session.scalar(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id))
        if run is None:
            raise HTTPException(404, f"DAG {dag_id!r} has no run {run_id!r}")
        summary = summaries(session, [run]).get((dag_id, run_id))
        days, note, state = run_days(run, summary), run_note(run, summary), str(run.state)
    ui_run = f"{ui}/dags/{quote(dag_id, safe='')}/runs/{quote(run_id, safe='')}"
    parts = [
        f"<p>DAG <b>{html.escape(dag_id)}</b>, run {_a(ui_run, run_id)}: "
        f"<b>{html.escape(state)}</b></p>",
        f"<pre>{html.escape(note)}</pre>" if note else '<p class="muted">no summary yet</p>',
    ]
    if dag_id == "exfm_vm_finetune":
        parts.append(f"<p>{_a(f'{base}/lake/reports/pipeline/index.html', 'Pipeline report')}</p>")
    if days:
        links = " ".join(
            f"{_a(f'{base}/lake/reports/drift/{d}.html', d)} ({_a(f'{base}/day/{d}', 'runs')})"
            for d in days
        )
        parts.append(f"<p>Drift report of {links}</p>")
        src = html.escape(f"{base}/lake/reports/drift/{days[0]}.html")
        parts.append(f'<iframe src="{src}" title="drift report {days[0]}"></iframe>')
    else:
        parts.append('<p class="muted">this run names no day</p>')
    return _page(f"{dag_id}: {run_id}", "".join(parts))


def day_page(request: Request, ds: str, readable: ReadableDags) -> HTMLResponse:
    from airflow.utils.session import create_session

    if not _is_day(ds):
        raise HTTPException(400, f"refused day {ds!r}: expected YYYY-MM-DD, a real date")
    base, _ = _bases(request)
    with create_session(scoped=False) as session:
        runs = recent_runs(session, readable, SCANNED_RUNS)
        found = summaries(session, runs)
        covering = [r for r in runs if ds in run_days(r, found.get((r.dag_id, r.run_id)))]
        covering.sort(key=lambda r: (DAGS.index(r.dag_id), r.run_after))
        table = _run_rows(request, covering, found, False)
    drift = _a(f"{base}/lake/reports/drift/{ds}.html", f"the drift report of {ds}")
    return _page(f"ExFM: {ds} in Airflow", f"<p>{drift}</p>{table}")


# ------------------------------------------------------------------------------------- auth


async def readable_dags(request: Request) -> set[str]:
    """The exfm DAGs the logged-in user may read (Airflow's get_user: 401/403 when logged out)."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.core_api.security import bearer_scheme, get_user

    user = await get_user(request, None, await bearer_scheme(request))
    return get_auth_manager().get_authorized_dag_ids(user=user, method="GET") & set(DAGS)


ReadableDags = Annotated[set[str], Depends(readable_dags)]


def create_app() -> FastAPI:
    """The console's routes, each behind Airflow's authentication (and, for a run, the user's
    read access to its DAG's runs and XComs); no OpenAPI pages, no write route."""
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
    from airflow.api_fastapi.core_api.security import get_user, requires_access_dag

    app = FastAPI(
        title="ExFM console",
        dependencies=[Depends(get_user)],
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.add_api_route("/", index, methods=["GET"])
    app.add_api_route("/lake/reports/{path:path}", lake_report, methods=["GET"])
    app.add_api_route("/results/{path:path}", results_file, methods=["GET"])
    run_access = [
        Depends(requires_access_dag("GET", DagAccessEntity.RUN)),
        Depends(requires_access_dag("GET", DagAccessEntity.XCOM)),
    ]
    app.add_api_route(
        "/run/{dag_id}/{run_id:path}", run_page, methods=["GET"], dependencies=run_access
    )
    app.add_api_route("/day/{ds}", day_page, methods=["GET"])
    return app


# -------------------------------------------------------------------------------- run notes


class RunNotes:
    """Copies a finished exfm run's summary note onto the run (the grid and the run page show
    notes; a task cannot set its run's note in Airflow 3.3). It runs where the run's state
    changes, in the scheduler (or the API server when a user marks a run), inside that session's
    transaction: reading the XCom and setting the note there adds no second writer (SQLite would
    lock), and the caller commits. A note a user wrote (it has a user id) is never replaced."""

    @hookimpl
    def on_dag_run_success(self, dag_run: Any, msg: str) -> None:
        self.copy_note(dag_run)

    @hookimpl
    def on_dag_run_failed(self, dag_run: Any, msg: str) -> None:
        self.copy_note(dag_run)

    @staticmethod
    def copy_note(dag_run: Any) -> None:
        from sqlalchemy.orm import object_session

        if dag_run.dag_id not in DAGS:
            return
        session = object_session(dag_run)
        if session is None:
            log.warning("%s: no session, its note is not set", dag_run)
            return
        try:
            note = run_note_from(session, dag_run)
            if not note:
                return
            if dag_run.dag_run_note is None:
                dag_run.note = note
            elif dag_run.dag_run_note.user_id is None and dag_run.note != note:
                dag_run.dag_run_note.content = note
        except Exception:
            log.exception("%s: could not set its note from the summary", dag_run)


def run_note_from(session: Any, dag_run: Any) -> str:
    note = (summaries(session, [dag_run]).get((dag_run.dag_id, dag_run.run_id)) or {}).get("note")
    return note[:MAX_NOTE] if isinstance(note, str) else ""


# ----------------------------------------------------------------------------------- plugin


class ExfmConsole(AirflowPlugin):
    name = "exfm_console"
    # {DAG_ID} and {RUN_ID} are filled (URI-encoded) by the UI for a dag_run tab; a url_route
    # makes each an iframe inside the UI rather than an external link.
    external_views = [  # noqa: RUF012 - Airflow's plugin attributes are plain lists
        {
            "name": "ExFM reports",
            "href": f"{PREFIX}/",
            "destination": "nav",
            "url_route": "exfm-reports",
            "nav_top_level": True,
        },
        {
            "name": "ExFM",
            "href": f"{PREFIX}/run/{{DAG_ID}}/{{RUN_ID}}",
            "destination": "dag_run",
            "url_route": "exfm-run",
        },
    ]
    listeners = [RunNotes()]  # noqa: RUF012

    @functools.cached_property
    def fastapi_apps(self) -> list[dict[str, Any]]:
        """Built on first use: only the API server reads it (see the module's docstring)."""
        return [{"app": create_app(), "url_prefix": PREFIX, "name": "exfm_console"}]

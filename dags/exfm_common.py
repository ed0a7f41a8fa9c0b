"""Shared by the ExFM DAG files: the config, the Assets that chain the DAGs, default task
arguments, and how a task calls a stage.

Parse-time imports stay light (the Airflow SDK and exfm.config); a task imports exfm.stages, and
with it torch, DuckDB and Great Expectations, inside its body. Params come from $EXFM_PARAMS, else
the project's params.yaml; relative paths in them are resolved against that file's folder.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from pathlib import Path
from typing import Any

from airflow.sdk import Asset, Param

from exfm.config import Config, load_config, resolve_paths

log = logging.getLogger(__name__)
PROJECT = Path(__file__).resolve().parents[1]

# The chain: a checked day -> the DAS scores it (beside the FM training of that day) -> the VMs.
# Each event carries the content ids it announces (exfm/lineage.py): the checked impressions, the
# scored DAS partition, the published snapshot. A consumer compares them with the lake and skips a
# request about content that was replaced since (the newer content has its own event).
IMPRESSIONS_CHECKED = Asset(name="exfm_impressions_checked", uri="exfm://lake/impressions/checked")
FM_PUBLISHED = Asset(name="exfm_fm_published", uri="exfm://lake/registry/fm")
DAS_SCORED = Asset(name="exfm_das_scored", uri="exfm://lake/das")


def config() -> Config:
    params = Path(os.environ.get("EXFM_PARAMS") or PROJECT / "params.yaml")
    return resolve_paths(load_config(params), params.parent)


def utc(day: str) -> dt.datetime:
    return dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC)


def schedule_dates(cfg: Config) -> tuple[dt.datetime, dt.datetime | None]:
    """(start_date, end_date) of the daily DAG: demo mode covers exactly the simulated days."""
    start = cfg.airflow.start_date or cfg.world.start_ds
    end = cfg.airflow.end_date
    if end is None and cfg.airflow.mode == "demo":
        end = (utc(cfg.world.start_ds) + dt.timedelta(days=cfg.world.days - 1)).date().isoformat()
    return utc(start), (utc(end) if end else None)


def default_args(cfg: Config) -> dict[str, Any]:
    a = cfg.airflow
    return {
        "owner": a.owner,
        "retries": a.retries,
        "retry_delay": dt.timedelta(seconds=a.retry_delay_s),
        "retry_exponential_backoff": True,
        "max_retry_delay": dt.timedelta(seconds=a.max_retry_delay_s),
        "execution_timeout": dt.timedelta(minutes=a.execution_timeout_min),
    }


def on_assets(
    cfg: Config,
    dag_id: str,
    assets: list[Asset],
    tags: list[str],
    doc: str | None,
    in_order: bool = True,
) -> dict[str, Any]:
    """The arguments of a DAG that asset events trigger (and the Trigger form, with its params):
    it starts where the daily DAG starts, never catches up by itself (the events say which days
    to run), and shares the retry policy. `in_order`: one run at a time whatever
    airflow.max_active_runs says (`max_active_runs`)."""
    start, _ = schedule_dates(cfg)
    return {
        "dag_id": dag_id,
        "schedule": assets,
        "start_date": start,
        "catchup": False,
        "max_active_runs": max_active_runs(cfg, in_order),
        "default_args": default_args(cfg),
        "tags": ["exfm", *tags],
        "doc_md": doc,
    }


def max_active_runs(cfg: Config, in_order: bool) -> int:
    """Runs of one DAG in flight. A DAG whose day builds on the day before runs one at a time
    whatever airflow.max_active_runs says: the FM and each VM train day d from their snapshot of
    the day before (two days at once would both start from d-1 and fork the lineage), and the
    DAS scores in order so that the VM DAG, which its events start, sees the days in order. Only
    a DAG whose days are independent (exfm_data_quality) runs airflow.max_active_runs days at
    once."""
    return 1 if in_order else cfg.airflow.max_active_runs


def day_param(description: str) -> Param:
    """A day in a Trigger form, empty by default: Airflow validates every run's params, those of
    a run that an asset event starts (no form) too, so a required day would refuse those runs.
    `format: date` is checked (Airflow validates with jsonschema's FormatChecker: YYYY-MM-DD and
    a real date), so the form refuses a malformed day before a run exists."""
    return Param(None, type=["null", "string"], format="date", description=description)


def summarize(days: list[str], lines: list[str], **extra: Any) -> dict[str, Any]:
    """What every DAG's last task, `summary`, returns: the run's days and a short note (plain-text
    lines) that the ExFM console (plugins/exfm_console.py) shows on the run's tab; the note is
    logged too. `summary` is a teardown: it runs whatever happened before it, and the run's state
    stays that of its work (a failed check or training fails the run)."""
    note = "\n".join(lines)
    log.info("run summary:\n%s", note)
    return {"days": days, "note": note, **extra}


def fmt_ne(x: Any) -> str:
    return "-" if x is None else f"{x:.4f}"


def published(result: dict[str, Any]) -> str:
    """A snapshot's gate outcome, for a note."""
    if result.get("published"):
        return "published"
    return f"not published: {result.get('reason')}"


def run_stage(name: str, *args: Any, **kwargs: Any) -> Any:
    """Call exfm.stages.<name>(config, ...). A user-facing error other than a lake error (which
    may be a passing S3 outage) fails the task at once, without retries: a failed data check or
    a missing FM is not going to pass by retrying. A request about content the lake no longer
    holds (an outdated asset event: the newer content has its own) is skipped."""
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    from exfm import stages
    from exfm.errors import ExfmError, LakeError
    from exfm.lineage import StaleError

    try:
        result = getattr(stages, name)(config(), *args, **kwargs)
    except LakeError:
        raise
    except StaleError as e:
        raise AirflowSkipException(str(e)) from e
    except ExfmError as e:
        raise AirflowFailException(str(e)) from e
    log.info("%s %s -> %s", name, args, result)
    return result


def event_days(events: Any, asset: Asset, params: dict[str, Any] | None) -> list[str]:
    """The days to process: from the asset events that triggered the run (each carries its ds),
    else from the run's params (a manual trigger with the form)."""
    days: set[str] = set()
    for event in (events or {}).get(asset, []) if events else []:
        extra = getattr(event, "extra", None) or {}
        days |= {str(d) for d in extra.get("days") or []}
        if extra.get("ds"):
            days.add(str(extra["ds"]))
    if not days and params:
        days |= set(_param_days(params))
    return sorted(days)


def event_content(events: Any, asset: Asset, key: str) -> dict[str, Any]:
    """ds -> the content ids the triggering events announced under `key` (the newest event of a
    day wins)."""
    out: dict[str, Any] = {}
    for event in (events or {}).get(asset, []) if events else []:
        extra = getattr(event, "extra", None) or {}
        for ds, content in (extra.get(key) or {}).items():
            out[str(ds)] = content
    return out


def _param_days(params: dict[str, Any]) -> list[str]:
    """The days a manual trigger's form asks for: `ds`, or `start` to `end` (default: start).
    The form's schema refuses a malformed date before a run exists; what a schema cannot say
    (end before start, end without start) fails the task here at once, without retries, naming
    the field: retrying a user's input cannot help."""
    from airflow.sdk.exceptions import AirflowFailException

    from exfm import ids

    day = _form_day(params, "ds")
    if day:
        return [day]
    start, end = _form_day(params, "start"), _form_day(params, "end")
    if start is None:
        if end is not None:
            raise AirflowFailException(f"the form gives `end` ({end}) without `start`")
        return []
    if end is not None and end < start:
        raise AirflowFailException(f"the form's `end` ({end}) is before its `start` ({start})")
    return ids.ds_range(start, end or start)


def _form_day(params: dict[str, Any], field: str) -> str | None:
    from airflow.sdk.exceptions import AirflowFailException

    from exfm import ids
    from exfm.errors import ExfmError

    value = params.get(field)
    if value is None or value == "":
        return None
    try:
        return ids.ds(value)
    except ExfmError as e:
        raise AirflowFailException(f"the form's `{field}`: {e}") from e

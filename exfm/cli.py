"""The `exfm` command line.

Every command takes `--params FILE` (default ./params.yaml, else the embedded defaults) and any
number of `--set section.key=value` overrides. Errors a user can act on (ExfmError) print one line
`exfm: error: ...` and exit with status 2; progress goes to stderr, results to stdout.

    exfm world generate [--days N] [--start-ds D]   simulate traffic into the lake, print a summary
    exfm ingest                                     convert the ingest.sources files into the lake
    exfm lake summary [--start D] [--end D]         rows, CTR, users, ads per day and vertical
    exfm lake ls [DATASET]                          list partitions
    exfm lake gc                                    remove what interrupted writes left behind
    exfm fm train --ds D | --start D1 --end D2 [--nproc N]   train the FM, day by day
    exfm vm train --vertical V --ds D [--variant X] train one vertical model
    exfm das backfill --start D1 --end D2 [--force] score days with the live FM into the DAS
    exfm das join --ds D --vertical V               a VM's training rows: coverage, content ids
    exfm das stats --ds D                           coverage and cost accounting (JSON)
    exfm lineage ARTIFACT|DAY | --stale [--json]    what was made from what; what is stale
    exfm registry ls MODEL [--vertical V] | reindex  the snapshots; rebuild the indexes
    exfm pipeline STAGE [--vertical V]              one stage of dvc.yaml over every day
    exfm check --ds D | --start D1 --end D2         data-quality and drift checks (the gate)
    exfm report [--out DIR]                         rebuild the data-drift reports (HTML)
    exfm evaluate [--start D] [--end D]             NE, AUC, calibration per model and day
    exfm experiment NAME|all [--quick]              the ExFM results (reports/experiments/)
    exfm sql "select ..."                           query the lake's DuckDB views
    exfm config show | keys                         the resolved config, or every key with its doc
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from exfm.config import Config, check_flag, describe, json_schema, load_config
from exfm.errors import ExfmError
from exfm.experiments import ORDER as EXPERIMENT_ORDER
from exfm.variants import NAMES

log = logging.getLogger("exfm")


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--params", metavar="FILE", help="params YAML (default: ./params.yaml)")
    common.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config value (repeatable)",
    )
    common.add_argument(
        "-v", "--verbose", action="store_true", help="debug logging of exfm and data_checks"
    )
    common.add_argument(
        "--log",
        dest="loggers",
        action="append",
        default=[],
        metavar="LOGGER=LEVEL",
        help="the level of another library's logger, e.g. botocore=DEBUG (repeatable; they log "
        "at WARNING otherwise: some print credentials at DEBUG)",
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = argparse.ArgumentParser(
        prog="exfm",
        description="ExFM platform: foundation model, DAS, vertical models. "
        "Every command takes --params FILE and --set SECTION.KEY=VALUE (after the command).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    world = sub.add_parser("world", help="the simulated ads world")
    wsub = world.add_subparsers(dest="action", required=True, metavar="ACTION")
    gen = wsub.add_parser(
        "generate", help="generate days of traffic into the lake", parents=[common]
    )
    gen.add_argument("--days", type=int, help="days to generate (default: world.days)")
    gen.add_argument("--start-ds", help="first day (default: world.start_ds)")

    sub.add_parser("ingest", help="convert your CSV/parquet files into the lake", parents=[common])

    lake = sub.add_parser("lake", help="inspect and maintain the lake")
    lsub = lake.add_subparsers(dest="action", required=True, metavar="ACTION")
    summary = lsub.add_parser("summary", help="per-day, per-vertical summary", parents=[common])
    summary.add_argument("--start", help="first ds")
    summary.add_argument("--end", help="last ds")
    ls = lsub.add_parser("ls", help="list partitions", parents=[common])
    ls.add_argument("dataset", nargs="?", default="impressions")
    gc = lsub.add_parser("gc", help="remove leftovers of interrupted writes", parents=[common])
    gc.add_argument("--older-than-s", type=float, default=3600.0)

    fm = sub.add_parser("fm", help="the foundation model")
    fsub = fm.add_subparsers(dest="action", required=True, metavar="ACTION")
    ftrain = fsub.add_parser(
        "train", help="evaluate, train one pass and snapshot, per day", parents=[common]
    )
    _days(ftrain)
    ftrain.add_argument(
        "--nproc",
        type=int,
        default=1,
        help="processes (torchrun + DistributedDataParallel); 1: in process",
    )
    vm = sub.add_parser("vm", help="the vertical models")
    vsub = vm.add_subparsers(dest="action", required=True, metavar="ACTION")
    vtrain = vsub.add_parser("train", help="train one vertical's VM, per day", parents=[common])
    _days(vtrain)
    vtrain.add_argument("--vertical", required=True)
    vtrain.add_argument("--variant", choices=NAMES, help="default: vm.variant")
    vtrain.add_argument(
        "--fm-version",
        help="distill from these predictions (fm-YYYY-MM-DD; default: the newest current ones "
        "no newer than the live FM)",
    )
    das = sub.add_parser("das", help="the FM's stored predictions (Data Augmentation System)")
    dsub = das.add_subparsers(dest="action", required=True, metavar="ACTION")
    back = dsub.add_parser(
        "backfill", help="score days with the live (or a chosen) FM", parents=[common]
    )
    _days(back)
    back.add_argument("--fm-version", help="fm-YYYY-MM-DD (default: the FM live for each day)")
    back.add_argument("--force", action="store_true", help="re-score days already done")
    join = dsub.add_parser("join", help="a VM's training rows and their coverage", parents=[common])
    join.add_argument("--ds", required=True)
    join.add_argument("--vertical", required=True)
    join.add_argument("--fm-version")
    stats = dsub.add_parser(
        "stats", help="coverage and cost accounting of a day (JSON)", parents=[common]
    )
    stats.add_argument("--ds", required=True)
    stats.add_argument("--fm-version")
    pipe = sub.add_parser(
        "pipeline", help="one stage of the local pipeline (dvc.yaml)", parents=[common]
    )
    pipe.add_argument(
        "stage", choices=["land", "checks", "fm", "das", "vm", "evaluate", "report", "summary"]
    )
    pipe.add_argument("--vertical", help="the vertical (vm stage)")
    chk = sub.add_parser(
        "check", help="data-quality and drift checks of days (the gate)", parents=[common]
    )
    _days(chk)
    rep = sub.add_parser("report", help="rebuild the data-drift reports", parents=[common])
    rep.add_argument("--out", help="also write them to this local folder")
    ev = sub.add_parser(
        "evaluate", help="NE, AUC, calibration per model, vertical and day", parents=[common]
    )
    ev.add_argument("--start", help="first ds")
    ev.add_argument("--end", help="last ds")
    ev.add_argument("--model", action="append", help="fm, vm_baseline, vm_ah_sa... (repeatable)")

    exp = sub.add_parser(
        "experiment",
        help="the ExFM results: tune, ladder, freshness gap, scaling, FM history, amortization, "
        "OBD, robustness",
        parents=[common],
    )
    exp.add_argument(
        "name",
        choices=[*EXPERIMENT_ORDER, "all"],
        help="one experiment (in this order, each reads the ones before), or all of them",
    )
    exp.add_argument(
        "--quick", action="store_true", help="the small settings of experiment.quick (minutes)"
    )

    lin = sub.add_parser(
        "lineage",
        help="what an artifact was made from, what was made from it, what is stale",
        parents=[common],
    )
    lin.add_argument(
        "artifact",
        nargs="?",
        help="a day (YYYY-MM-DD), a partition (impressions/ds=D/vertical=V, das/..., checks/..., "
        "evals/...), or a snapshot (registry/fm/ds=D, fm@D, vm_ah_sa/feed@D)",
    )
    lin.add_argument("--stale", action="store_true", help="list every stale artifact")
    lin.add_argument("--json", action="store_true", help="print JSON")

    reg = sub.add_parser("registry", help="the model snapshots")
    rsub = reg.add_subparsers(dest="action", required=True, metavar="ACTION")
    rls = rsub.add_parser(
        "ls", help="every snapshot of a model: day, published, optimizer state", parents=[common]
    )
    rls.add_argument("model", help="fm, vm_baseline, vm_ah_sa...")
    rls.add_argument("--vertical", help="the vertical (VMs)")
    rsub.add_parser(
        "reindex", help="rebuild every index from the snapshots' meta.json", parents=[common]
    )

    sql = sub.add_parser("sql", help="run SQL over the lake (DuckDB)", parents=[common])
    sql.add_argument("query")
    sql.add_argument("--max-rows", type=int, default=100)
    sql.add_argument("--json", action="store_true", help="print rows as JSON lines")

    config = sub.add_parser("config", help="show the configuration")
    csub = config.add_subparsers(dest="action", required=True, metavar="ACTION")
    csub.add_parser("show", help="the resolved config as YAML", parents=[common])
    csub.add_parser("keys", help="every key, its default and meaning", parents=[common])
    csub.add_parser("schema", help="the JSON Schema of a params file", parents=[common])
    get = csub.add_parser("get", help="one resolved value (for scripts)", parents=[common])
    get.add_argument("key", help="section.key, for example airflow.pool_slots")
    return parser


def _days(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ds", help="the day")
    parser.add_argument("--start", help="first day of a range (with --end)")
    parser.add_argument("--end", help="last day of a range (with --start)")


def _selected_days(
    args: argparse.Namespace, cfg: Config | None = None, vertical: str | None = None
) -> list[str]:
    """--ds D, or the days of --start..--end; with `cfg`, a range keeps the days that have
    impressions (of `vertical`, if given) and says which it left out."""
    from exfm import ids

    if args.ds and not (args.start or args.end):
        return [ids.ds(args.ds)]
    if not (args.start and args.end and not args.ds):
        raise ExfmError("give either --ds D or both --start D1 and --end D2")
    days = ids.ds_range(args.start, args.end)
    if cfg is None:
        return days
    from exfm import stages

    present, absent = stages.present_days(cfg, days, vertical)
    what = "impressions" if vertical is None else f"impressions of {vertical}"
    if not present:
        raise ExfmError(f"no day of {args.start}..{args.end} has {what} in {cfg.lake.root}")
    if absent:
        log.warning(
            "%d of the %d days of %s..%s have no %s, skipped: %s",
            len(absent),
            len(days),
            args.start,
            args.end,
            what,
            _day_list(absent),
        )
    return present


def _day_list(days: Sequence[str]) -> str:
    """'2026-01-03, 2026-01-05..2026-01-09': consecutive days as runs."""
    from exfm import ids

    runs: list[list[str]] = []
    for ds in days:
        if runs and ids.ds_add(runs[-1][-1], 1) == ds:
            runs[-1].append(ds)
        else:
            runs.append([ds])
    return ", ".join(r[0] if len(r) == 1 else f"{r[0]}..{r[-1]}" for r in runs)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        setup_logging(args.verbose, args.loggers)
        cfg = load_config(args.params, args.overrides)
        return _dispatch(args, cfg)
    except ExfmError as e:
        print(f"exfm: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "exfm: interrupted; partitions already written are complete, rerun to resume",
            file=sys.stderr,
        )
        return 130


# the project's loggers: INFO, or DEBUG with -v; every other library's stays at WARNING
OWN_LOGGERS = ("exfm", "data_checks")
_HANDLER = "exfm-cli"


def setup_logging(verbose: bool, loggers: Sequence[str] = ()) -> None:
    """Log to stderr: the project's loggers at INFO (DEBUG when verbose), third-party ones at
    WARNING (botocore logs request signatures at DEBUG, Great Expectations hundreds of INFO
    lines) unless `loggers` names them (`NAME=LEVEL`)."""
    asked = {}
    for item in loggers:
        name, _, level = item.partition("=")
        if not name or level.upper() not in logging.getLevelNamesMapping():
            raise ExfmError(f"--log {item!r}: give LOGGER=LEVEL, e.g. botocore=DEBUG")
        asked[name] = level.upper()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    # a library may set its own logger's level (Great Expectations does): what passes the
    # handler is decided here, by name
    handler.addFilter(_ByName((*OWN_LOGGERS, *asked)))
    handler.set_name(_HANDLER)
    root = logging.getLogger()
    root.handlers[:] = [h for h in root.handlers if h.get_name() != _HANDLER] + [handler]
    root.setLevel(logging.WARNING)
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.INFO)
    for name, level in asked.items():
        logging.getLogger(name).setLevel(level)


class _ByName(logging.Filter):
    """Below WARNING, only the records of these loggers (and their children)."""

    def __init__(self, names: Sequence[str]) -> None:
        super().__init__()
        self.names = tuple(names)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        return any(record.name == n or record.name.startswith(n + ".") for n in self.names)


def _dispatch(args: argparse.Namespace, cfg: Config) -> int:
    if args.command == "config":
        return _config(args, cfg)
    if args.command == "experiment":
        return _experiment(args, cfg)
    from exfm import stages
    from exfm.lake import Lake  # imports pyarrow.dataset (~1.5 s): only for commands that use it

    lake = Lake.from_config(cfg.lake)
    if args.command == "world":
        if args.days is not None:
            check_flag("--days", args.days, "world.days")
        if args.start_ds is not None:
            check_flag("--start-ds", args.start_ds, "world.start_ds")
        days = stages.land_world(cfg, args.start_ds, args.days)
        return _print_summary(lake, days[0]["ds"], days[-1]["ds"])
    if args.command == "ingest":
        done = stages.ingest(cfg)
        print(
            f"ingested {done['rows']} rows into {done['partitions']} partitions of {done['where']}"
        )
        return _print_summary(lake, None, None)
    if args.command == "lake":
        return _lake(args, lake)
    if args.command in ("fm", "vm"):
        return _train(args, cfg)
    if args.command == "das":
        return _das(args, cfg)
    if args.command == "pipeline":
        return _pipeline(args, cfg)
    if args.command == "registry":
        return _registry(args, lake)
    if args.command == "lineage":
        return _lineage(args, cfg)
    if args.command == "check":
        days = _selected_days(args, cfg)
        with stages.Warm() as warm:  # the drift pages once, when the range ends
            for ds in days:
                print(json.dumps(stages.check(cfg, ds, warm if len(days) > 1 else None)))
        return 0
    if args.command == "report":
        uri = stages.reports(cfg, args.out)
        if not uri:
            raise ExfmError("no check results yet: run `exfm check --ds D` first")
        print(uri)
        return 0
    if args.command == "evaluate":
        table = stages.evaluate(cfg, args.start, args.end, args.model)
        print(format_table(table, max_rows=100_000))
        return 0
    if args.command == "sql":
        from exfm.catalog import Catalog

        table = Catalog(lake, cfg.lake.catalog).query(args.query)
        if args.json:
            for row in table.to_pylist():
                print(json.dumps(row, default=str))
        else:
            print(format_table(table, args.max_rows))
        return 0
    raise AssertionError(args.command)


def _train(args: argparse.Namespace, cfg: Config) -> int:
    from exfm import stages

    vertical = None if args.command == "fm" else args.vertical
    if vertical is not None:
        cfg.features.vertical(vertical)
    days = _selected_days(args, cfg, vertical)
    if vertical is not None and len(days) > 1:
        days = _scored_days(args, cfg, days)
    if args.command == "fm" and args.nproc != 1:
        from exfm.distributed import launch

        launch(days, args.nproc, args.params, args.overrides)
        return 0
    warm = stages.Warm()  # the model stays in memory from one day of the range to the next
    for ds in days:
        if args.command == "fm":
            result = stages.train_fm(cfg, ds, warm=warm)
        else:
            result = stages.train_vm(
                cfg, ds, args.vertical, args.variant, args.fm_version, warm=warm
            )
        print(json.dumps(result), flush=True)
    return 0


def _scored_days(args: argparse.Namespace, cfg: Config, days: list[str]) -> list[str]:
    """A distilling VM's range keeps the days that have FM predictions (the first days of a
    deployment have none: no FM was live yet) and names the others; stale predictions are
    not skipped, their day fails."""
    from exfm import variants
    from exfm.lake import DAS, Lake

    variant = args.variant or cfg.vm.for_vertical(args.vertical).variant
    if not variants.variant(variant).needs_fm:
        return days
    have = {p["ds"] for p in Lake.from_config(cfg.lake).partitions(DAS, ds=days)}
    if not have:
        raise ExfmError(
            f"no day of {days[0]}..{days[-1]} has FM predictions for {variant} to distill from: "
            f"run `exfm das backfill --start {days[0]} --end {days[-1]}` first"
        )
    missing = [d for d in days if d not in have]
    if missing:
        log.warning(
            "%d of the %d days have no FM predictions to distill from, skipped: %s",
            len(missing),
            len(days),
            _day_list(missing),
        )
    return [d for d in days if d in have]


def _experiment(args: argparse.Namespace, cfg: Config) -> int:
    from exfm.experiments import EXPERIMENTS, ORDER, Context

    if not args.verbose:  # one line per model-day is too much here: progress bars instead
        for name in ("exfm.training", "exfm.das", "exfm.data.world", "exfm.data.ingest"):
            logging.getLogger(name).setLevel(logging.WARNING)
    ctx = Context(cfg, args.quick)
    for name in ORDER if args.name == "all" else [args.name]:
        if name == "results":
            from exfm.experiments.results import write_results

            page = write_results(ctx)
            print(f"results: {page}")
        else:
            print(f"{name}: {EXPERIMENTS[name](ctx)}")
    return 0


def _pipeline(args: argparse.Namespace, cfg: Config) -> int:
    from exfm import pipeline

    if args.stage == "summary":
        from exfm.pipeline_report import summary_table

        print(summary_table(cfg))
        print(f"report: {Path(cfg.pipeline.reports_dir) / 'index.html'}")
        return 0
    if args.stage == "vm":
        if not args.vertical:
            raise ExfmError("the vm stage needs --vertical")
        path = pipeline.vm(cfg, args.vertical)
    else:
        path = getattr(pipeline, args.stage)(cfg)
    print(f"{args.stage}: {path}")
    return 0


def _das(args: argparse.Namespace, cfg: Config) -> int:
    from exfm import stages
    from exfm.progress import progress

    if args.action == "backfill":
        from exfm.das import NoLiveFM

        days = _selected_days(args, cfg)
        with stages.Warm() as warm:
            for ds in progress(
                days, desc="das backfill", unit="days", disable=None if len(days) > 1 else True
            ):
                try:
                    result = stages.backfill_das(cfg, ds, args.fm_version, args.force, warm=warm)
                except NoLiveFM as e:
                    if args.ds:  # the day asked for
                        raise
                    log.warning("das %s skipped: %s", ds, e)  # no FM before a range's first days
                    result = {"ds": ds, "skipped": True, "reason": str(e)}
                print(json.dumps(result), flush=True)
    elif args.action == "join":
        print(json.dumps(stages.das_join(cfg, args.ds, args.vertical, args.fm_version)))
    else:
        print(json.dumps(stages.das_stats(cfg, args.ds, args.fm_version), indent=1))
    return 0


def _registry(args: argparse.Namespace, lake: Any) -> int:
    from exfm import ids
    from exfm.registry import Registry

    registry = Registry(lake)
    if args.action == "reindex":
        for where, count in registry.reindex().items():
            print(f"{where}: {count} snapshots")
        return 0
    history = registry.history(ids.version(args.model), args.vertical)
    if not history:
        raise ExfmError(
            f"no snapshots of {args.model}{'/' + args.vertical if args.vertical else ''} in "
            f"{lake.uri('registry')}"
        )
    rows = [
        {
            "ds": m.ds,
            "published": m.published,
            "optimizer": m.resumable,
            "stored": "-" if m.pruned else f"delta over {m.delta_of}" if m.delta_of else "whole",
            "mb": round(m.stored_bytes / 1e6, 1),
            "sha256": m.sha256[:12],
            "note": m.pruned or m.publish_reason,
        }
        for m in history
    ]
    print(format_table(pa.Table.from_pylist(rows), max_rows=100_000))
    return 0


def _lineage(args: argparse.Namespace, cfg: Config) -> int:
    from exfm import stages
    from exfm.lineage import short

    if args.stale == bool(args.artifact):
        raise ExfmError("give either an artifact (or a day) or --stale")
    found = stages.lineage(cfg, args.artifact, args.stale)
    if args.json:
        print(json.dumps(found, indent=1))
        return 0
    if args.stale:
        for item in found["stale"]:
            print(f"STALE {item['name']}: {item['reasons'][0]}")
        print(f"({len(found['stale'])} stale of {found['artifacts']} artifacts)")
        return 0
    for item in found["artifacts"]:
        flag = "STALE" if item["stale"] else "current"
        print(f"{item['name']}  [{item['kind']}] id {short(item['content_id'])}  {flag}")
        for reason in item["reasons"]:
            print(f"  ! {reason}")
        if item["made_from"] is None:
            print("  made from: (no lineage record)")
        elif item["made_from"]:
            print("  made from:")
            for i in item["made_from"]:
                print(
                    f"    {i['status']:7} {i['name']}  {short(i['recorded'])}"
                    + (f" -> {short(i['current'])}" if i["current"] != i["recorded"] else "")
                )
        if item["made_into"]:
            print("  made into:")
            for i in item["made_into"]:
                print(f"    {'STALE' if i['stale'] else 'current':7} {i['name']}")
    return 0


def _print_summary(lake: Any, start: str | None, end: str | None) -> int:
    from exfm.data.impressions import summarize

    print(format_table(summarize(lake, start, end), max_rows=10_000))
    return 0


def _lake(args: argparse.Namespace, lake: Any) -> int:
    from exfm.lake import DATASETS

    if args.action == "summary":
        return _print_summary(lake, args.start, args.end)
    if args.action == "gc":
        print(f"removed {lake.gc(args.older_than_s)} leftovers under {lake.uri()}")
        return 0
    dataset = DATASETS.get(args.dataset)
    if dataset is None:
        raise ExfmError(f"unknown dataset {args.dataset!r}; datasets: {sorted(DATASETS)}")
    for values in lake.partitions(dataset):
        print("/".join(f"{k}={v}" for k, v in values.items()))
    return 0


def _config(args: argparse.Namespace, cfg: Config) -> int:
    if args.action == "show":
        import yaml

        print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
    elif args.action == "get":
        node: Any = cfg.to_dict()
        for part in args.key.split("."):
            if not isinstance(node, dict) or part not in node:
                raise ExfmError(f"no config key {args.key!r}; see `exfm config keys`")
            node = node[part]
        print(json.dumps(node) if isinstance(node, dict | list) else node)
    elif args.action == "schema":
        print(json.dumps(json_schema(), indent=1))
    else:
        for key, default, doc in describe():
            print(f"{key} = {default}" + (f"    # {doc}" if doc else ""))
    return 0


def format_table(table: pa.Table, max_rows: int = 100) -> str:
    """A plain-text grid of an Arrow table (right-aligned numbers), at most max_rows rows."""
    if table.num_columns == 0:
        return "(no result)"
    shown = table.slice(0, max_rows).to_pylist()
    names = table.column_names

    def cell(v: Any) -> str:
        if v is None:
            return "NULL"
        if isinstance(v, float):
            return f"{v:.6g}"
        return str(v)

    rows = [[cell(r[n]) for n in names] for r in shown]
    widths = [max([len(n)] + [len(r[i]) for r in rows]) for i, n in enumerate(names)]
    numeric = [
        pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)
        for t in table.schema.types
    ]

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ).rstrip()

    out = [line(names), line(["-" * w for w in widths])] + [line(r) for r in rows]
    if table.num_rows > max_rows:
        out.append(f"... {table.num_rows - max_rows} more rows")
    out.append(f"({table.num_rows} rows)")
    return "\n".join(out)


if __name__ == "__main__":
    raise SystemExit(main())

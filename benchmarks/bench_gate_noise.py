"""False failures of the daily gate on worlds without a shock, and its verdict on shocked days.

For each seed, the default world (params.yaml: 14 days of ~200k impressions in four verticals),
the same world with a tenth of its traffic (`small`: the video vertical has ~2,000 rows and ~16
clicks a day), and one with a tenth of its traffic and of its catalogue (`small_catalogue`: users,
ads, advertisers and contexts / 10) are generated without a shock, and every day
with a reference window (days 2..14) goes through the gate (`data_checks.gate.evaluate`: the
Great Expectations suite and the drift checks, graded as `exfm check` grades them, stored
nowhere). A failing day of such a world is a false failure.

The reference, measured on the same days: the rows and CTR bands without the sampling interval
(`checks.confidence = 0`, the ratio bands alone, as the gate was before it knew sample sizes),
with the gate's other checks unchanged. `ratio_to_reference` is failing days / the reference's.

Shocked days: the first `--shock-seeds` seeds are generated again with a shock on day 8 (a full
7-day window before it), once with the default shock (a share of tastes redrawn and the CTR level
shifted by `world.shock_ctr_shift`) and once with a strong one (every taste redrawn, CTR x e^-2);
the strong shock must fail at the default confidence on every world, the default one be flagged
(warn or fail) on the default world (a tenth of the traffic may leave its 26% CTR drop unclear).
The worlds `default` and `small` must have no failing day. `small_catalogue` is reported but not
held to that: with 400 ads a few carry much of the traffic, and one arriving or leaving moves the
mix of ads, advertisers and their counters (PSI 0.5-1.2): drift that is in the data.

    .venv/bin/python benchmarks/bench_gate_noise.py [--seeds 20] [--shock-seeds 3] [--jobs 2]
        [--worlds default small small_catalogue] [--days 14]

Prints one JSON object (and a line on stderr as each world is done); exits 1 when a world without
a shock has a failing day or a strong shock passes (the figures are still printed).
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from datetime import date, timedelta
from typing import Any

import pyarrow as pa
from harness import REPO, emit, parser

from data_checks.gate import evaluate
from data_checks.suite import Bands
from exfm.config import Config, load_config
from exfm.data.world import generate
from exfm.lake import IMPRESSIONS, Lake

SEED = 20260105
WORLDS = {
    "default": [],
    # the default world's traffic at a tenth: video has ~2,000 rows and ~16 clicks a day
    "small": ["world.impressions_per_day=20000"],
    # ... and its catalogue at a tenth too (users, ads, advertisers, contexts): a few ads carry
    # much of the traffic, so one leaving moves the mix of ads, advertisers and their counters
    # for real; reported, not held to zero failures (the drift it fails on is in the data)
    "small_catalogue": [
        "world.impressions_per_day=20000",
        "world.n_users=2000",
        "world.n_ads=400",
        "world.n_advertisers=100",
        "world.n_contexts=500",
    ],
}
HELD = ("default", "small")  # worlds that must have no failing day
SHOCKS = {
    "default_shock": [],
    "strong_shock": ["world.shock_strength=1", "world.shock_ctr_shift=-2"],
}
SHOCK_DAY = 8
RATIO_CHECKS = ("expect_table_row_count_to_be_between", "expect_column_mean_to_be_between")


def _config(root: str, seed: int, *overrides: str) -> Config:
    return load_config(
        REPO / "params.yaml",
        [
            f"lake.root={root}/lake",
            f"lake.catalog={root}/catalog.duckdb",
            f"world.seed={seed}",
            *overrides,
        ],
    )


def _counts(lake: Lake) -> dict[tuple[str, str], tuple[int, int]]:
    """(ds, vertical) -> (rows, clicks) of the lake's impressions."""
    table = lake.read(IMPRESSIONS, columns=["ds", "vertical", "label"])
    table = table.set_column(2, "label", table.column("label").cast(pa.int64()))
    grouped = table.group_by(["ds", "vertical"]).aggregate([("label", "count"), ("label", "sum")])
    columns = [
        grouped.column(c).to_pylist() for c in ("ds", "vertical", "label_count", "label_sum")
    ]
    return {(str(d), str(v)): (int(n), int(k or 0)) for d, v, n, k in zip(*columns, strict=True)}


def _ratio_only(cfg: Config, counts: dict, ds: str, reference: list[str], vertical: str) -> bool:
    """Whether the rows or CTR of (ds, vertical) fall outside the ratio bands alone."""
    ref = [counts.get((d, vertical), (0, 0)) for d in reference]
    bands = Bands(len(reference), sum(n for n, _ in ref), sum(k for _, k in ref))
    rows, clicks = counts.get((ds, vertical), (0, 0))
    plain = cfg.checks.model_copy(update={"confidence": 0.0})
    row_bounds, ctr_bounds = bands.row_bounds(plain), bands.ctr_bounds(rows, plain)
    if row_bounds and not row_bounds[0] <= rows <= row_bounds[1]:
        return True
    return bool(rows and ctr_bounds and not ctr_bounds[0] <= clicks / rows <= ctr_bounds[1])


def _world(task: tuple[str, int, list[str]]) -> dict[str, Any]:
    """Generate one world without a shock and gate each day with a reference window."""
    name, seed, extra = task
    with tempfile.TemporaryDirectory() as tmp:
        cfg = _config(tmp, seed, *WORLDS[name], *extra)
        lake = Lake.from_config(cfg.lake)
        start = time.perf_counter()
        generate(cfg, lake)
        generate_s = time.perf_counter() - start
        counts = _counts(lake)
        days = sorted({d for d, _ in counts})
        out: dict[str, Any] = {"world": name, "seed": seed, "days": 0, "failing": [], "ref": []}
        start = time.perf_counter()
        for ds in days[1:]:
            result = evaluate(cfg, lake, ds)
            out["days"] += 1
            failed = [r for r in result if r.status == "fail"]
            if failed:
                out["failing"].append({"ds": ds, "checks": [r.describe() for r in failed]})
            others = [r for r in failed if r.check not in RATIO_CHECKS]
            verticals = sorted({v for d, v in counts if d in result.reference_days})
            ratio = [v for v in verticals if _ratio_only(cfg, counts, ds, result.reference_days, v)]
            if others or ratio:
                out["ref"].append({"ds": ds, "ratio_bands": ratio, "other_checks": len(others)})
        out["generate_s"], out["check_s"] = generate_s, time.perf_counter() - start
        out["rows"] = sum(n for n, _ in counts.values())
        return out


def _shock(task: tuple[str, str, int]) -> dict[str, Any]:
    """The gate's verdict on the shocked day of one world."""
    name, shock, seed = task
    with tempfile.TemporaryDirectory() as tmp:
        start_ds = date.fromisoformat(load_config(REPO / "params.yaml").world.start_ds)
        shock_ds = (start_ds + timedelta(days=SHOCK_DAY - 1)).isoformat()
        cfg = _config(
            tmp,
            seed,
            *WORLDS[name],
            f"world.days={SHOCK_DAY}",
            f"world.shock_ds={shock_ds}",
            *SHOCKS[shock],
        )
        lake = Lake.from_config(cfg.lake)
        generate(cfg, lake)
        result = evaluate(cfg, lake, shock_ds)
        flagged = Counter(r.check for r in result if r.status == result.status != "pass")
        return {"world": name, "shock": shock, "seed": seed, "status": result.status, **flagged}


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--shock-seeds", type=int, default=3)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--worlds", nargs="+", choices=list(WORLDS), default=list(WORLDS))
    p.add_argument("--days", type=int, help="days of the worlds without a shock (world.days)")
    args = p.parse_args()
    extra = [f"world.days={args.days}"] if args.days else []
    seeds = [SEED + i for i in range(args.seeds)]
    started = time.perf_counter()
    tasks = [(_world, (w, s, extra)) for w in args.worlds for s in seeds]
    tasks += [
        (_shock, (w, k, s)) for w in args.worlds for k in SHOCKS for s in seeds[: args.shock_seeds]
    ]
    done: list[dict[str, Any]] = []
    with ProcessPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(fn, task) for fn, task in tasks]
        for future in as_completed(futures):
            done.append(future.result())
            r = done[-1]
            what = (
                f"{r['days']} days, {len(r['failing'])} failing"
                if "days" in r
                else f"{r['shock']}: {r['status']}"
            )
            print(
                f"[{len(done)}/{len(tasks)} {time.perf_counter() - started:.0f} s] "
                f"{r['world']} world, seed {r['seed']}: {what}",
                file=sys.stderr,
                flush=True,
            )
    runs = sorted((r for r in done if "days" in r), key=lambda r: (r["world"], r["seed"]))
    shocked = sorted(
        (r for r in done if "shock" in r), key=lambda r: (r["world"], r["shock"], r["seed"])
    )
    cfg = load_config(REPO / "params.yaml")
    result: dict[str, Any] = {
        "benchmark": "gate_noise",
        "confidence": cfg.checks.confidence,
        "rows_ratio": list(cfg.checks.rows_ratio),
        "ctr_ratio": list(cfg.checks.ctr_ratio),
        "seconds": round(time.perf_counter() - started, 1),
        "worlds": {},
    }
    ok = True
    for name in args.worlds:
        mine = [r for r in runs if r["world"] == name]
        days = sum(r["days"] for r in mine)
        failing = sum(len(r["failing"]) for r in mine)
        reference = sum(len(r["ref"]) for r in mine)
        ok &= failing == 0 or name not in HELD
        result["worlds"][name] = {
            "seeds": len(mine),
            "rows_per_world": round(sum(r["rows"] for r in mine) / len(mine)),
            "days_checked": days,
            "failing_days": failing,
            "false_failure_rate": round(failing / days, 4),
            "reference": "the ratio bands alone (checks.confidence = 0)",
            "reference_failing_days": reference,
            "reference_false_failure_rate": round(reference / days, 4),
            "ratio_to_reference": round(failing / reference, 3) if reference else None,
            "failing": [{"seed": r["seed"], **f} for r in mine for f in r["failing"]],
            "reference_failing": [{"seed": r["seed"], **f} for r in mine for f in r["ref"]],
            "generate_s": round(sum(r["generate_s"] for r in mine), 1),
            "check_s": round(sum(r["check_s"] for r in mine), 1),
        }
    for s in shocked:
        ok &= s["shock"] != "strong_shock" or s["status"] == "fail"
        ok &= s["status"] != "pass" or s["world"] != "default"
    result["shocked_days"] = shocked
    emit(result)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

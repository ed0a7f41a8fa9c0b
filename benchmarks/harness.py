"""What the benchmark scripts share: the command line, the simulated world's config, the
figure-against-reference record, the machine description and the JSON output.

The scripts run as `python benchmarks/bench_x.py`, so this folder is on sys.path and they import
it as `from harness import ...`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path
from typing import Any

from exfm.config import Config, load_config

REPO = Path(__file__).resolve().parents[1]


def parser(doc: str, rows: int | None = None) -> argparse.ArgumentParser:
    """A parser described by the first line of `doc`, with `--rows` (default `rows`) unless
    `rows` is None; the script adds its other flags."""
    out = argparse.ArgumentParser(description=doc.splitlines()[0])
    if rows is not None:
        out.add_argument("--rows", type=int, default=rows)
    return out


def world_config(rows: int, *overrides: str, root: str | None = None) -> Config:
    """params.yaml with a flat week of `rows` impressions a day (the lake under `root` when
    given), then `overrides`."""
    lake = [f"lake.root={root}/lake"] if root is not None else []
    return load_config(
        REPO / "params.yaml",
        [
            *lake,
            f"world.impressions_per_day={rows}",
            "world.weekly_traffic_amplitude=0",
            *overrides,
        ],
    )


def against(
    seconds: float,
    rows: int,
    reference: str,
    reference_seconds: float,
    digits: int = 2,
    **extra: Any,
) -> dict[str, Any]:
    """A timed figure over `rows` rows with the reference measured in the same run: seconds,
    rows/s, `extra`, the reference and its seconds, and seconds / reference seconds."""
    return {
        "seconds": round(seconds, 3),
        "rows_per_s": round(rows / seconds),
        **extra,
        "reference": reference,
        "reference_seconds": round(reference_seconds, 3),
        "ratio_to_reference": round(seconds / reference_seconds, digits),
    }


def machine() -> dict[str, Any]:
    """The machine and the versions that the figures depend on."""
    import duckdb
    import numpy
    import pyarrow
    import torch

    return {
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "pyarrow": pyarrow.__version__,
        "duckdb": duckdb.__version__,
    }


def emit(result: dict[str, Any]) -> None:
    """Print `result` with the machine as one JSON object."""
    print(json.dumps({**result, "machine": machine()}, indent=2))

"""Distributed training of the foundation model: `exfm fm train --ds D --nproc N` launches N
processes with torchrun; each wraps the FM in DistributedDataParallel (gloo on CPU, NCCL on GPU,
one GPU per process) and trains on its shard of the day, so one optimizer step covers
N x train.batch_size rows. Rank 0 alone evaluates, applies the gate and writes the snapshot, which
is the same file as a single-process run's and loads anywhere (exfm/registry.py). Each rank runs
`exfm.stages.train_fm` (the gate, the read with content ids, the trainer), like every other path.

Multi-node: run `python -m torch.distributed.run --nnodes ... --rdzv-endpoint ... -m
exfm.distributed --ds D` on every node, with the lake on S3 (every rank reads the day from it).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import Sequence

from exfm.errors import ExfmError


def launch(days: Sequence[str], nproc: int, params: str | None, overrides: Sequence[str]) -> None:
    """Run the distributed FM training of `days` (in order) on `nproc` local processes."""
    if nproc < 1:
        raise ExfmError(f"--nproc {nproc}: give at least one process")
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        "exfm.distributed",
        *days,
    ]
    if params:
        command += ["--params", params]
    for item in overrides:
        command += ["--set", item]
    result = subprocess.run(command, check=False)
    if result.returncode != 0:
        raise ExfmError(
            f"distributed FM training failed (exit {result.returncode}); "
            "the log above names the failing rank"
        )


def main(argv: Sequence[str] | None = None) -> int:
    """One rank of a torchrun launch (see `launch`)."""
    import torch
    import torch.distributed

    from exfm import stages
    from exfm.config import load_config
    from exfm.inference import device_of
    from exfm.ranks import Dist

    parser = argparse.ArgumentParser(prog="exfm.distributed")
    parser.add_argument("days", nargs="+")
    parser.add_argument("--params")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args(argv)
    cfg = load_config(args.params, args.overrides)
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    if device_of(cfg).type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))  # one GPU per process
        backend = "nccl"
    else:
        backend = "gloo"
    torch.distributed.init_process_group(backend, timeout=dt.timedelta(minutes=30))
    try:
        warm = stages.Warm()  # the model stays in memory across the days
        for ds in args.days:  # the same stage as a single process: the gate, then train_day
            result = stages.train_fm(cfg, ds, Dist(rank, world), warm=warm)
            if result is not None:
                print(json.dumps({**result, "processes": world}), flush=True)
    finally:
        torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

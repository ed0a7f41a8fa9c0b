"""Training and serving throughput of the default FM and VM, with their cost ratio.

Prints one JSON object: per model, parameters, forward FLOPs per example (torch's FlopCounterMode),
training rows/s (one optimizer step per batch of train.batch_size, the trainer's own step) and
inference rows/s (batches of train.eval_batch_size), the achieved GFLOP/s of training (3x forward
FLOPs per row) and inference, compared with a float32 matmul peak measured in the same run (the
reference), and the serving latency (median of repeated calls) at batch 1 and 512.
The inputs are a simulated day (exfm/data/world.py), converted once like the trainer does.

    .venv/bin/python benchmarks/bench_train.py [--rows 65536]
"""

from __future__ import annotations

import statistics
import time

import pyarrow as pa
import torch
from harness import emit, parser, world_config

from exfm.data.schema import FeatureSpec
from exfm.data.world import World
from exfm.inference import predict
from exfm.models.inputs import batches, to_batch
from exfm.models.layers import count_parameters, flops_per_example
from exfm.trainee import build_trainee


def matmul_peak_gflops(n: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def latency_ms(fn, repeats: int = 50) -> float:
    with torch.no_grad():
        fn()
        return statistics.median(_timed(fn) for _ in range(repeats)) * 1e3


def bench(cfg, spec, kind: str, table: pa.Table, peak: float) -> dict:
    vertical = None if kind == "fm" else "feed"
    trainee = build_trainee(cfg, spec, kind, vertical, "baseline" if kind == "vm" else None)
    if kind == "vm":
        table = table.filter(pa.compute.equal(table.column("vertical"), "feed"))
    data = to_batch(table, trainee.layout)
    n = len(data)
    sample = data.take(slice(0, 64))
    if kind == "fm":
        served = trainee.model
        args = (sample.cat, sample.dense, sample.vertical)
    else:
        served = trainee.model.serving_module()
        args = (sample.cat, sample.dense)
    flops = flops_per_example(served, *args)
    trainee.model.train()
    steps = batches(n, cfg.train.batch_size, torch.randperm(n))
    start = time.perf_counter()
    for index in steps:
        trainee.step(data.take(index))
    train_s = time.perf_counter() - start
    trainee.model.eval()
    cpu = torch.device("cpu")
    infer_s = _timed(lambda: predict(trainee.logits, data, cfg.train.eval_batch_size, cpu))

    def serve(size: int):
        b = data.take(slice(0, size))
        if kind == "fm":
            return lambda: served(b.cat, b.dense, b.vertical)
        return lambda: served(b.cat, b.dense)

    train_gflops = 3 * flops * n / train_s / 1e9
    infer_gflops = flops * n / infer_s / 1e9
    return {
        "rows": n,
        "parameters": count_parameters(trainee.model),
        "served_parameters": count_parameters(served),
        "flops_per_example": flops,
        "train_rows_per_s": round(n / train_s),
        "inference_rows_per_s": round(n / infer_s),
        "train_gflops_per_s": round(train_gflops, 2),
        "inference_gflops_per_s": round(infer_gflops, 2),
        "train_fraction_of_matmul_peak": round(train_gflops / peak, 4),
        "inference_fraction_of_matmul_peak": round(infer_gflops / peak, 4),
        "serving_latency_ms": {
            "batch_1": round(latency_ms(serve(1)), 3),
            "batch_512": round(latency_ms(serve(512)), 3),
        },
    }


def main() -> None:
    args = parser(__doc__, 65_536).parse_args()
    cfg = world_config(args.rows)
    spec = FeatureSpec.from_config(cfg.features)
    table = World(cfg.world, spec).step()[0]
    peak = matmul_peak_gflops()
    fm = bench(cfg, spec, "fm", table, peak)
    vm = bench(cfg, spec, "vm", table, peak)
    emit(
        {
            "benchmark": "train",
            "fm": fm,
            "vm_feed": vm,
            "ratios": {
                "fm_over_vm_flops_per_example": round(
                    fm["flops_per_example"] / vm["flops_per_example"], 1
                ),
                "fm_over_vm_parameters": round(fm["parameters"] / vm["parameters"], 1),
                "fm_over_vm_serving_latency_batch_512": round(
                    fm["serving_latency_ms"]["batch_512"] / vm["serving_latency_ms"]["batch_512"],
                    1,
                ),
            },
            "reference": {"matmul_peak_gflops_per_s": round(peak, 1), "matmul": "2048x2048 fp32"},
        }
    )


if __name__ == "__main__":
    main()

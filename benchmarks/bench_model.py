"""Encoder throughput of the SegCLR presets: views per second and FLOPs per view.

Prints one JSON document. On the CPU it times fp32 inference, in the default and
in channels-last 3D memory layout, on ``--threads`` threads; with CUDA present it
also times bf16 autocast + channels-last and reports the fraction of a peak.
Figures are medians over ``--repeats`` timed batches after a warm-up batch.

    python benchmarks/bench_model.py --presets lite tiny
    python benchmarks/bench_model.py --presets paper lite --peak-tflops 989
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from contextlib import nullcontext

import torch

from napari_segclr.model import PRESETS, SegclrModel, count_flops, get_preset

CPU_BATCH = {"paper": 2, "lite": 16, "tiny": 64}
CUDA_BATCH = {"paper": 32, "lite": 256, "tiny": 1024}


def time_embedding(
    model: SegclrModel,
    views: torch.Tensor,
    *,
    repeats: int,
    autocast: torch.autocast | None = None,
) -> dict[str, float]:
    """Median and best views per second of ``model.embed`` over ``repeats`` batches."""
    synchronize = torch.cuda.synchronize if views.is_cuda else (lambda: None)
    seconds = []
    with torch.inference_mode(), autocast or nullcontext():
        for i in range(repeats + 1):
            synchronize()
            start = time.perf_counter()
            model.embed(views)
            synchronize()
            if i:  # the first batch builds kernels and caches
                seconds.append(time.perf_counter() - start)
    return {
        "views_per_s": views.shape[0] / statistics.median(seconds),
        "views_per_s_best": views.shape[0] / min(seconds),
    }


def bench_preset(name: str, args: argparse.Namespace) -> dict:
    config = get_preset(name)
    flops = count_flops(config)
    model = SegclrModel(config).eval()
    batch = args.batch_size or CPU_BATCH[name]
    views = torch.rand(batch, config.in_channels, *config.view_shape)
    result: dict = {
        "preset": name,
        "view_shape": list(config.view_shape),
        "voxel_size_nm": list(config.voxel_size_nm),
        "field_of_view_um": [round(f / 1000, 2) for f in config.field_of_view_nm],
        "gflops_per_view": round(flops / 1e9, 4),
        "parameters_millions": round(sum(p.numel() for p in model.parameters()) / 1e6, 3),
        "cpu": {"threads": torch.get_num_threads(), "batch": batch},
    }
    for layout, memory_format in (
        ("contiguous", torch.contiguous_format),
        ("channels_last_3d", torch.channels_last_3d),
    ):
        rates = time_embedding(
            model.to(memory_format=memory_format),
            views.contiguous(memory_format=memory_format),
            repeats=args.repeats,
        )
        result["cpu"][layout] = {
            **{k: round(v, 2) for k, v in rates.items()},
            "gflops_per_s": round(rates["views_per_s"] * flops / 1e9, 1),
        }
    if torch.cuda.is_available() and not args.no_cuda:
        batch = args.cuda_batch_size or CUDA_BATCH[name]
        model = model.cuda().to(memory_format=torch.channels_last_3d)
        views = torch.rand(batch, config.in_channels, *config.view_shape, device="cuda")
        rates = time_embedding(
            model,
            views.contiguous(memory_format=torch.channels_last_3d),
            repeats=args.repeats,
            autocast=torch.autocast("cuda", dtype=torch.bfloat16),
        )
        rate = rates["views_per_s"]
        result["cuda"] = {
            "device": torch.cuda.get_device_name(),
            "batch": batch,
            "mode": "bf16 autocast, channels_last_3d",
            **{k: round(v, 1) for k, v in rates.items()},
            "tflops_per_s": round(rate * flops / 1e12, 2),
            "fraction_of_peak": round(rate * flops / 1e12 / args.peak_tflops, 4),
            "peak_tflops": args.peak_tflops,
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["lite", "tiny"], choices=list(PRESETS))
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for torch")
    parser.add_argument("--repeats", type=int, default=5, help="timed batches per figure")
    parser.add_argument("--batch-size", type=int, help="CPU batch (default: per preset)")
    parser.add_argument("--cuda-batch-size", type=int, help="CUDA batch (default: per preset)")
    parser.add_argument(
        "--peak-tflops",
        type=float,
        default=989.0,
        help="device peak for the fraction (default: H100 SXM dense bf16)",
    )
    parser.add_argument("--no-cuda", action="store_true", help="time the CPU only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    report = {
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        # The cores may be shared: a load above the thread count means contended timings.
        "load_average_1min": round(os.getloadavg()[0], 2),
        "flop_count": "conv + linear multiply-adds × 2 (torch FlopCounterMode), one view",
        "presets": [bench_preset(name, args) for name in args.presets],
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

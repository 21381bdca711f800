"""Speed of SegCLR embedding per preset: view extraction, the encoder, and both together.

Prints one JSON document. Run from the repository root:

    python benchmarks/bench_segclr_speed.py                          # tiny, lite, paper
    python benchmarks/bench_segclr_speed.py --presets paper --cuda-workers 16

A synthetic neuropil (``--extent-um`` at ``--voxel-size``, 4.1 × 8.2 × 8.2 µm at
32 nm by default) is rendered into memory once, so that extraction is timed
alone, not rendering. View centres are skeleton nodes drawn at random (again
after all are used) and visited in the loader's spatial order. For each preset:

- ``extraction``: views/s of ``extract_views`` on the calling thread, float32
  views (what the CPU encoder takes) and uint8 views (what travels to a GPU);
- ``encoder``: views/s of ``model.embed`` on views extracted beforehand
  (``torch.inference_mode``, channels-last 3D; fp32 on the CPU);
- ``end_to_end``: views/s of ``embed_views`` (what ``embed`` runs), its loader's
  ``--workers`` background threads feeding the encoder, from the first batch
  asked for to the last embedding back on the host;
- FLOPs per view (``count_flops``: 2 per multiply-add of convolutions and
  linear layers).

CPU figures are the median and the best of ``--cpu-repeats`` runs: the cores
may be shared, and the load average is printed at the start and the end.

With CUDA (unless ``--no-cuda``), the same under bf16 autocast and channels-last
3D on the device (``cudnn.benchmark`` on), with ``--cuda-workers`` extraction
threads: the encoder alone on views already on the device, the loader alone
(its consumer idle: the most the extraction can feed) and both together, each
with its TFLOP/s and the fraction of ``--peak-tflops``; views travel to the
device as ``embed`` sends them (uint8, from page-locked memory). The weights are random:
speed does not depend on them. Targets are printed beside the figures: ``lite``
end to end on 2 CPU cores and ``paper`` on an H100 / H200.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext

import numpy as np
import torch
from _common import report_header

from napari_segclr.embed import device_view_loader, embed_views
from napari_segclr.io import Dataset, Volume
from napari_segclr.model import PRESETS, SegclrModel, count_flops
from napari_segclr.synthetic import Neuropil, NeuropilConfig, render_all
from napari_segclr.views import ViewPoints, ViewSpec, extract_views, spatial_order

#: Views timed per preset, and views per batch, on the CPU and on CUDA.
CPU_VIEWS = {"tiny": 512, "lite": 192, "paper": 12}
CPU_BATCH = {"tiny": 64, "lite": 16, "paper": 4}
CUDA_BATCH = {"tiny": 1024, "lite": 256, "paper": 64}
#: What the figures are held to: (preset, device, views/s end to end).
TARGETS = (
    ("lite", "cpu", 20.0, "lite end to end on 2 CPU cores"),
    ("paper", "cuda", 3000.0, "paper end to end on an H100 / H200 (about 30 % of bf16 peak)"),
)


def neuropil_points(args: argparse.Namespace) -> tuple[Dataset, ViewPoints, str]:
    """The rendered volumes, the skeleton nodes that lie on their segment, and a description."""
    extent = np.asarray(args.extent_um) * 1000.0
    shape = tuple(int(s) for s in np.maximum(np.round(extent / args.voxel_size), 1))
    config = NeuropilConfig(shape=shape, voxel_size=args.voxel_size, seed=args.seed)
    neuropil = Neuropil(config)
    crop = render_all(neuropil)
    nodes = neuropil.nodes()
    centres = nodes[["z_nm", "y_nm", "x_nm"]].to_numpy()
    ids = nodes["segment_id"].to_numpy(np.uint64)
    voxel = np.clip(np.round(centres / args.voxel_size), 0, np.asarray(shape) - 1).astype(int)
    on_segment = crop.segmentation[tuple(voxel.T)] == ids
    dataset = Dataset(
        Volume(crop.em, args.voxel_size),
        Volume(crop.segmentation, args.voxel_size, kind="labels"),
    )
    points = ViewPoints(ids[on_segment], np.flatnonzero(on_segment), centres[on_segment])
    return (
        dataset,
        points,
        f"synthetic neuropil seed {args.seed}, {shape} at {args.voxel_size:g} nm",
    )


def draw(points: ViewPoints, n: int, rng: np.random.Generator) -> ViewPoints:
    """``n`` points at random: each once before any twice."""
    rounds = -(-n // len(points))
    order = np.concatenate([rng.permutation(len(points)) for _ in range(rounds)])[:n]
    return points[order]


def rate(views: int, seconds: float) -> float:
    return round(views / seconds, 1)


def repeated(measure: Callable[[], float], times: int) -> dict[str, float]:
    """Median and best of ``times`` measurements (shared cores make single ones noisy)."""
    rates = [measure() for _ in range(times)]
    return {"median": round(statistics.median(rates), 1), "best": max(rates)}


def extraction(
    dataset: Dataset, points: ViewPoints, spec: ViewSpec, batch_size: int, dtype: str
) -> float:
    """Views/s of ``extract_views`` on this thread, batches of nearby points."""
    order = spatial_order(points.centers_nm, spec)
    batches = [points[order[i : i + batch_size]] for i in range(0, len(points), batch_size)]
    first = batches[0]
    extract_views(dataset, first.segment_ids, first.centers_nm, spec, dtype=dtype)  # warm-up
    start = time.perf_counter()
    for batch in batches:
        extract_views(dataset, batch.segment_ids, batch.centers_nm, spec, dtype=dtype)
    return rate(len(points), time.perf_counter() - start)


def encoder(
    model: SegclrModel,
    views: torch.Tensor,
    *,
    batch_size: int,
    repeats: int,
    autocast: Callable[[], object],
    synchronize: Callable[[], None],
) -> float:
    """Views/s of ``model.embed`` over ``repeats`` passes through ``views``, after a warm-up."""
    batches = [
        views[i : i + batch_size].contiguous(memory_format=torch.channels_last_3d)
        for i in range(0, len(views), batch_size)
    ]
    with torch.inference_mode(), autocast():
        model.embed(batches[0])  # builds kernels and caches
        synchronize()
        start = time.perf_counter()
        for _ in range(repeats):
            for batch in batches:
                model.embed(batch)
        synchronize()
    return rate(repeats * len(views), time.perf_counter() - start)


def end_to_end(
    dataset: Dataset,
    points: ViewPoints,
    model: SegclrModel,
    *,
    batch_size: int,
    workers: int,
    device: torch.device,
) -> float:
    """Views/s of ``embed_views`` (the product's loop): views cut, embedded on ``device``
    and their embeddings back on the host."""
    start = time.perf_counter()
    for _ in embed_views(
        dataset, model, points, batch_size=batch_size, device=device, workers=workers
    ):
        pass
    return rate(len(points), time.perf_counter() - start)


def loader_alone(
    dataset: Dataset,
    points: ViewPoints,
    spec: ViewSpec,
    *,
    batch_size: int,
    workers: int,
    device: torch.device,
) -> float:
    """Views/s of the loader ``embed_views`` uses for ``device``, its consumer idle: the
    most the extraction can feed."""
    loader = device_view_loader(
        dataset, points, spec, device, batch_size=batch_size, workers=workers
    )
    start = time.perf_counter()
    for _ in loader:
        pass
    return rate(len(points), time.perf_counter() - start)


def bench_preset(name: str, dataset: Dataset, points: ViewPoints, args: argparse.Namespace) -> dict:
    """The CPU (and CUDA) figures of one preset."""
    config = PRESETS[name]
    spec = ViewSpec.from_config(config)
    flops = count_flops(config)
    rng = np.random.default_rng(args.seed)
    model = SegclrModel(config).eval().to(memory_format=torch.channels_last_3d)
    n = args.views or CPU_VIEWS[name]
    batch = args.batch_size or CPU_BATCH[name]
    timed = draw(points, n, rng)
    result: dict = {
        "preset": name,
        "view_shape": list(config.view_shape),
        "voxel_size_nm": list(config.voxel_size_nm),
        "gflops_per_view": round(flops / 1e9, 4),
        "parameters_millions": round(sum(p.numel() for p in model.parameters()) / 1e6, 3),
    }
    views = torch.from_numpy(extract_views(dataset, timed.segment_ids, timed.centers_nm, spec))
    cpu = torch.device("cpu")
    encoder_rate = repeated(
        lambda: encoder(
            model,
            views,
            batch_size=batch,
            repeats=1,
            autocast=nullcontext,
            synchronize=lambda: None,
        ),
        args.cpu_repeats,
    )
    result["cpu"] = {
        "views": n,
        "batch": batch,
        "torch_threads": torch.get_num_threads(),
        "extraction_views_per_s": repeated(
            lambda: extraction(dataset, timed, spec, batch, "float32"), args.cpu_repeats
        ),
        "extraction_uint8_views_per_s": repeated(
            lambda: extraction(dataset, timed, spec, batch, "uint8"), args.cpu_repeats
        ),
        "encoder_views_per_s": encoder_rate,
        "encoder_gflops_per_s": round(encoder_rate["median"] * flops / 1e9, 1),
        "end_to_end_workers": args.workers,
        "end_to_end_views_per_s": repeated(
            lambda: end_to_end(
                dataset, timed, model, batch_size=batch, workers=args.workers, device=cpu
            ),
            args.cpu_repeats,
        ),
    }
    if torch.cuda.is_available() and not args.no_cuda:
        result["cuda"] = bench_cuda(model, dataset, points, spec, flops, args, rng)
    return result


def bench_cuda(
    model: SegclrModel,
    dataset: Dataset,
    points: ViewPoints,
    spec: ViewSpec,
    flops: float,
    args: argparse.Namespace,
    rng: np.random.Generator,
) -> dict:
    """bf16 autocast + channels-last figures on the CUDA device, with their share of the peak."""
    name = next(n for n, c in PRESETS.items() if c == model.config)
    device = torch.device("cuda")
    # Fixed view shapes: let cuDNN pick its fastest 3D convolution kernels once.
    torch.backends.cudnn.benchmark = True
    model = model.to(device)
    batch = args.cuda_batch_size or CUDA_BATCH[name]

    def bf16() -> torch.autocast:
        return torch.autocast("cuda", dtype=torch.bfloat16)

    sample = draw(points, min(batch, len(points)), rng)
    views = torch.from_numpy(extract_views(dataset, sample.segment_ids, sample.centers_nm, spec))
    views = views.to(device)[torch.arange(batch) % len(views)]  # one batch of real views
    alone = encoder(
        model,
        views,
        batch_size=batch,
        repeats=args.repeats,
        autocast=bf16,
        synchronize=torch.cuda.synchronize,
    )
    del views
    timed = draw(points, args.cuda_views, rng)
    common = {"batch_size": batch, "workers": args.cuda_workers, "device": device}
    feed = loader_alone(dataset, timed, spec, **common)
    both = end_to_end(dataset, timed, model, **common)

    def share(views_per_s: float) -> dict:
        tflops = views_per_s * flops / 1e12
        return {
            "views_per_s": views_per_s,
            "tflops_per_s": float(f"{tflops:.3g}"),
            "fraction_of_peak": float(f"{tflops / args.peak_tflops:.3g}"),
        }

    return {
        "device": torch.cuda.get_device_name(),
        "mode": "bf16 autocast, channels_last_3d, cudnn.benchmark",
        "batch": batch,
        "peak_tflops": args.peak_tflops,
        "encoder": share(alone),
        "extraction_workers": args.cuda_workers,
        "end_to_end_views": args.cuda_views,
        "loader_alone_views_per_s": feed,
        "end_to_end": share(both),
    }


def targets(presets: list[dict]) -> list[dict]:
    """Each target beside the figure it is about (None where not measured here)."""
    rows = []
    by_name = {p["preset"]: p for p in presets}
    for name, device, goal, what in TARGETS:
        figures = by_name.get(name, {})
        if device == "cpu":
            measured = figures.get("cpu", {}).get("end_to_end_views_per_s", {}).get("median")
        else:
            measured = figures.get("cuda", {}).get("end_to_end", {}).get("views_per_s")
        met = None if measured is None else measured >= goal
        rows.append(
            {"target": what, "views_per_s_at_least": goal, "measured": measured, "met": met}
        )
    return rows


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--presets", nargs="+", default=["tiny", "lite", "paper"], choices=list(PRESETS))
    p.add_argument("--views", type=int, help="CPU views per preset (default: 512 / 192 / 12)")
    p.add_argument("--batch-size", type=int, help="CPU batch (default: 64 / 16 / 4)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    p.add_argument("--workers", type=int, default=1, help="CPU end-to-end loader threads")
    p.add_argument(
        "--cpu-repeats", type=int, default=3, help="runs per CPU figure: median and best"
    )
    p.add_argument("--voxel-size", type=float, default=32.0, help="nm of the rendered volume")
    p.add_argument(
        "--extent-um",
        type=float,
        nargs=3,
        default=(4.096, 8.192, 8.192),
        help="rendered volume (z, y, x) in µm (default 4.096 8.192 8.192)",
    )
    p.add_argument("--seed", type=int, default=0, help="neuropil and sampling seed")
    p.add_argument("--no-cuda", action="store_true", help="time the CPU only")
    p.add_argument("--cuda-batch-size", type=int, help="CUDA batch (default: 1024 / 256 / 64)")
    p.add_argument("--cuda-views", type=int, default=4096, help="CUDA end-to-end views")
    p.add_argument(
        "--cuda-workers",
        type=int,
        default=max(1, (os.cpu_count() or 2) - 1),
        help="CUDA extraction threads (default: CPU count - 1)",
    )
    p.add_argument("--repeats", type=int, default=10, help="CUDA encoder passes over a batch")
    p.add_argument(
        "--peak-tflops",
        type=float,
        default=989.0,
        help="device peak for the fraction (default 989: H100 SXM dense bf16)",
    )
    args = p.parse_args(argv)
    counts = ("views", "batch_size", "cuda_batch_size", "cuda_views", "repeats", "cpu_repeats")
    for name in (*counts, "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the benchmark, print its JSON report and return it."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    report: dict = {
        **report_header("SegCLR embedding speed per preset"),
        "torch": torch.__version__,
        "flop_count": "conv + linear multiply-adds x 2 (torch FlopCounterMode), one view",
    }
    dataset, points, report["volume"] = neuropil_points(args)
    report["presets"] = [bench_preset(name, dataset, points, args) for name in args.presets]
    report["targets"] = targets(report["presets"])
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["load_average_1min_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()

"""Benchmark view extraction: views per second per preset, alone and behind an encoder.

Prints one JSON object. Run from the repository root:

    python benchmarks/bench_views.py [--presets tiny lite paper] [--views 384] [--encoder]

The volume is a synthetic neuropil (128³ voxels of 64 nm, 8.2 µm on a side; a
random uint8 + labels volume where the synthetic package is missing), rendered
once into memory so that the figures are extraction alone, not rendering. Its
EM is also given at 32 nm (each voxel repeated) with the segmentation at 64 nm:
the common case of a segmentation coarser than the EM. Views are centred on
randomly chosen skeleton nodes of the whole volume (sparser than embedding every
node, so crops are shared less than in a full run).

For each preset and case: views/s of ``extract_views`` in batches of 32 on the
calling thread (``snap`` on, the default, and off), views/s through a
``ViewLoader`` with one and two worker threads and a consumer that does
nothing, and EM voxels read per view with and without grouping. ``--encoder`` adds the
end-to-end rate of the "lite" encoder (fp32, ``--torch-threads`` threads)
consuming the loader's batches, with and without the background worker.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

from napari_segclr.io import Dataset, Volume
from napari_segclr.io.counting import ReadCounter
from napari_segclr.model.presets import PRESETS
from napari_segclr.views import ViewLoader, ViewPoints, ViewSpec, extract_views, spatial_order

BATCH = 32
SHAPE = (128, 128, 128)
VOXEL = 64.0


def neuropil() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    """EM, segmentation, node segment ids and node centres (nm) of the test volume."""
    try:
        from napari_segclr.synthetic import Neuropil, NeuropilConfig
    except ImportError:
        return random_volume()
    synthetic = Neuropil(NeuropilConfig(shape=SHAPE, voxel_size=VOXEL, seed=0))
    volumes = synthetic.volumes()
    whole = tuple(slice(0, n) for n in SHAPE)
    em, seg = volumes["em"].read(whole), volumes["segmentation"].read(whole)
    nodes = synthetic.nodes()
    centers = nodes[["z_nm", "y_nm", "x_nm"]].to_numpy()
    return em, seg, nodes["segment_id"].to_numpy(np.uint64), centers, "synthetic neuropil, seed 0"


def random_volume() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    rng = np.random.default_rng(0)
    em = rng.integers(0, 256, SHAPE, dtype=np.uint8)
    blocks = rng.integers(1, 2**60, (8, 8, 8), dtype=np.uint64)
    seg = blocks.repeat(16, 0).repeat(16, 1).repeat(16, 2)
    index = rng.integers(0, SHAPE[0], size=(4000, 3))
    centers = index * VOXEL
    return em, seg, seg[tuple(index.T)], centers, "random uint8 EM, 8³ box labels"


def rate(n: int, seconds: float) -> float:
    return round(n / seconds, 1)


def extraction(dataset: Dataset, points: ViewPoints, spec: ViewSpec, *, snap: bool) -> float:
    """Views/s of ``extract_views`` on this thread, batches of nearby points."""
    order = spatial_order(points.centers_nm, spec)
    # Warm up: the first touch of fresh memory is slow on virtual machines.
    warm = points[order[:BATCH]]
    extract_views(dataset, warm.segment_ids, warm.centers_nm, spec, snap=snap)
    start = time.perf_counter()
    for first in range(0, len(order), BATCH):
        batch = points[order[first : first + BATCH]]
        extract_views(dataset, batch.segment_ids, batch.centers_nm, spec, snap=snap)
    return rate(len(points), time.perf_counter() - start)


def through_loader(dataset: Dataset, points: ViewPoints, spec: ViewSpec, workers: int) -> float:
    """Views/s through a ``ViewLoader`` with background workers, the consumer idle."""
    for _ in ViewLoader(dataset, points[:BATCH], spec, batch_size=BATCH, workers=workers):
        pass  # warm up, as for ``extraction``
    loader = ViewLoader(dataset, points, spec, batch_size=BATCH, workers=workers)
    start = time.perf_counter()
    n = sum(len(batch) for _, batch in loader)
    return rate(n, time.perf_counter() - start)


def voxels_read(dataset: Dataset, points: ViewPoints, spec: ViewSpec) -> dict:
    """EM voxels read per view, with the default grouping and with one read per view."""
    counts = {}
    for name, group_nm in (("grouped", None), ("one_read_per_view", 0.0)):
        em = dataset.em
        array = ReadCounter(np.asarray(em.array))
        counted = Dataset(Volume(array, em.voxel_size, em.offset), dataset.segmentation)
        order = spatial_order(points.centers_nm, spec)
        for first in range(0, len(order), BATCH):
            batch = points[order[first : first + BATCH]]
            extract_views(counted, batch.segment_ids, batch.centers_nm, spec, group_nm=group_nm)
        counts[name] = round(array.voxels_read / len(points))
    return counts


def end_to_end(dataset: Dataset, points: ViewPoints, threads: int) -> dict:
    """Views/s of the lite encoder fed by the loader, inline and with one background worker."""
    import torch

    from napari_segclr.model import SegclrModel

    torch.set_num_threads(threads)
    config = PRESETS["lite"]
    model = SegclrModel(config).eval()
    result = {"torch_threads": threads, "batch_size": 16}
    with torch.inference_mode():
        model.embed(torch.zeros(2, *(config.in_channels, *config.view_shape)))
        for workers, key in ((0, "inline"), (1, "background_worker")):
            loader = ViewLoader(dataset, points, config, batch_size=16, workers=workers)
            start = time.perf_counter()
            for views, _ in loader:
                model.embed(torch.from_numpy(views))
            result[f"{key}_views_per_s"] = rate(len(points), time.perf_counter() - start)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "lite", "paper"])
    parser.add_argument("--views", type=int, default=384, help="views per figure")
    parser.add_argument("--paper-views", type=int, default=96, help="views per paper figure")
    parser.add_argument("--encoder", action="store_true", help="also time lite end to end")
    parser.add_argument("--torch-threads", type=int, default=1)
    args = parser.parse_args()

    em, seg, node_ids, centers, volume = neuropil()
    seg_volume = Volume(seg, VOXEL, kind="labels")
    # The EM at 32 nm: a 32 nm voxel's centre sits a quarter of a 64 nm voxel inside it.
    em_32 = Volume(em.repeat(2, 0).repeat(2, 1).repeat(2, 2), VOXEL / 2, offset=(-VOXEL / 4,) * 3)
    cases = {
        "em 64 nm, seg 64 nm": Dataset(Volume(em, VOXEL), seg_volume),
        "em 32 nm, seg 64 nm": Dataset(em_32, seg_volume),
    }
    rng = np.random.default_rng(0)
    pick = rng.choice(len(centers), size=min(args.views, len(centers)), replace=False)
    points = ViewPoints(node_ids[pick], pick, centers[pick])

    report = {
        "machine": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        # The cores may be shared: a load above 1 means contended timings.
        "load_average_1min": round(os.getloadavg()[0], 2),
        "volume": f"{volume}, {SHAPE} voxels of {VOXEL:g} nm",
        "views_per_figure": len(points),
        "batch_size": BATCH,
        "presets": {},
    }
    for name in args.presets:
        spec = ViewSpec.from_config(PRESETS[name])
        n = len(points)
        if name == "paper":
            n = min(n, args.paper_views)
        subset = points[:n]
        figures = {"views": n, "view": f"{spec.shape[0]}³ at {spec.voxel_size_nm[0]:g} nm"}
        for case, dataset in cases.items():
            figures[case] = {
                "snapped_views_per_s": extraction(dataset, subset, spec, snap=True),
                "unsnapped_views_per_s": extraction(dataset, subset, spec, snap=False),
                "loader_1_worker_views_per_s": through_loader(dataset, subset, spec, 1),
                "loader_2_workers_views_per_s": through_loader(dataset, subset, spec, 2),
            }
        mixed = figures["em 32 nm, seg 64 nm"]
        mixed["em_voxels_read_per_view"] = voxels_read(cases["em 32 nm, seg 64 nm"], subset, spec)
        report["presets"][name] = figures
    if args.encoder:
        report["lite_end_to_end"] = end_to_end(
            cases["em 32 nm, seg 64 nm"], points, args.torch_threads
        )
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

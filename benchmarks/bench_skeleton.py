"""Benchmark skeletonisation: one clicked fragment, and a whole real volume in chunks.

Prints one JSON object. Run from the repository root:

    python benchmarks/bench_skeleton.py [--chunk 128] [--overlap-nm 300] [--one-shot]

1. A synthetic branching neurite (about 11 µm of cable, 150 nm radius, at
   32 × 32 × 40 nm, among parallel neighbours) skeletonised from a click with
   ``skeletonize_segment``: time, voxels read, cable length against the truth.
2. The FIB-25 ground truth (160 × 250 × 250 at 10 nm, about 450 bodies)
   skeletonised with ``skeletonize_volume``: time and nodes per second; with
   ``--one-shot`` also ``skeletonize_labels`` on the whole array for comparison.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np

from napari_segclr.io.counting import ReadCounter
from napari_segclr.io.volume import Volume
from napari_segclr.skeleton import (
    resample,
    skeletonize_labels,
    skeletonize_segment,
    skeletonize_volume,
)

FIB25 = Path(__file__).resolve().parents[1].parent / "shared/data/fib25/sample2_labels_z000-159.tif"
VOXEL = np.array([40.0, 32.0, 32.0])


def paint_capsules(labels: np.ndarray, polyline: np.ndarray, radius: float, label: int) -> None:
    """Paint voxels within ``radius`` nm of a polyline (nm, z y x), box by box."""
    shape = np.array(labels.shape)
    for a, b in itertools.pairwise(polyline):
        lo = np.clip(np.floor((np.minimum(a, b) - radius) / VOXEL), 0, shape).astype(int)
        hi = np.clip(np.ceil((np.maximum(a, b) + radius) / VOXEL) + 1, 0, shape).astype(int)
        axes = np.ix_(
            *[np.arange(s, e) * v - p for s, e, v, p in zip(lo, hi, VOXEL, a, strict=True)]
        )
        ab = b - a
        t = np.clip(sum(x * d for x, d in zip(axes, ab, strict=True)) / (ab @ ab), 0, 1)
        near = sum((x - t * d) ** 2 for x, d in zip(axes, ab, strict=True)) <= radius**2
        labels[tuple(map(slice, lo, hi))][near] = label


def clicked_fragment() -> dict:
    rng = np.random.default_rng(0)
    labels = np.zeros((200, 256, 256), dtype=np.uint64)  # 8 × 8.2 × 8.2 µm
    trunk = np.array([[4000, 1000, 700], [4200, 3000, 2500], [3800, 5000, 4500]])
    branches = [
        np.array([trunk[1], [3000, 2000, 4500]]),
        np.array([[4000, 4000, 3500], [5500, 6500, 3500]]),
    ]
    for line in [trunk, *branches]:
        paint_capsules(labels, line.astype(float), 150.0, 2**60 + 1)
    for k in range(6):  # neighbours, so the window sees a dense-ish crop
        start = rng.uniform([500, 500, 500], [7500, 7500, 7500])
        paint_capsules(
            labels, np.array([start, start + np.array([0.0, 0.0, 6000.0])]), 120.0, 10 + k
        )
    truth = sum(np.linalg.norm(np.diff(line, axis=0), axis=1).sum() for line in [trunk, *branches])

    lazy = ReadCounter(labels)
    seg = Volume(lazy, tuple(VOXEL), kind="labels")
    seed = tuple(np.rint(trunk[1] / VOXEL).astype(int))
    t0 = time.perf_counter()
    skel = skeletonize_segment(seg, 2**60 + 1, seed_voxel=seed)
    seconds = time.perf_counter() - t0
    return {
        "voxel_size_nm": VOXEL.tolist(),
        "volume_shape": list(labels.shape),
        "true_cable_um": round(truth / 1000, 2),
        "cable_um": round(skel.cable_length / 1000, 2),
        "cable_um_resampled_500nm": round(resample(skel, 500.0).cable_length / 1000, 2),
        "nodes": len(skel),
        "branch_points": int(np.sum(skel.degrees >= 3)),
        "truncated": skel.truncated,
        "voxels_read_fraction": round(lazy.voxels_read / labels.size, 3),
        "seconds": round(seconds, 2),
    }


def whole_volume(chunk: int, overlap_nm: float, one_shot: bool) -> dict:
    import tifffile

    labels = tifffile.imread(FIB25)
    seg = Volume(labels, (10.0, 10.0, 10.0), kind="labels", source=FIB25.name)
    t0 = time.perf_counter()
    skeletons = skeletonize_volume(seg, chunk_shape=chunk, overlap_nm=overlap_nm)
    seconds = time.perf_counter() - t0
    nodes = sum(len(s) for s in skeletons.values())
    result = {
        "volume_shape": list(labels.shape),
        "chunk_shape": [chunk] * 3,
        "overlap_nm": overlap_nm,
        "segments": len(skeletons),
        "pieces": sum(len(s.roots) for s in skeletons.values()),
        "nodes": nodes,
        "cable_mm": round(sum(s.cable_length for s in skeletons.values()) / 1e6, 3),
        "seconds": round(seconds, 1),
        "nodes_per_second": round(nodes / seconds, 1),
    }
    if one_shot:
        t0 = time.perf_counter()
        whole = skeletonize_labels(labels, voxel_size=10.0)
        seconds = time.perf_counter() - t0
        result["one_shot"] = {
            "segments": len(whole),
            "pieces": sum(len(s.roots) for s in whole.values()),
            "nodes": sum(len(s) for s in whole.values()),
            "cable_mm": round(sum(s.cable_length for s in whole.values()) / 1e6, 3),
            "seconds": round(seconds, 1),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunk", type=int, default=128, help="chunk side in voxels")
    parser.add_argument("--overlap-nm", type=float, default=300.0, help="chunk halo in nm")
    parser.add_argument("--one-shot", action="store_true", help="also skeletonise in one go")
    args = parser.parse_args()
    report = {"clicked_fragment": clicked_fragment()}
    if FIB25.is_file():
        report["fib25_volume"] = whole_volume(args.chunk, args.overlap_nm, args.one_shot)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

"""Render throughput of the synthetic neuropil: one 256³ crop at 32 nm, cold and warm.

Run on one core for the reference figure::

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 taskset -c 0 \
        python benchmarks/bench_render.py --repeats 3

Prints one JSON object: seconds per render (cold: fresh volume, tiles grown;
warm: tiles cached), voxels per second and peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time

from napari_segclr.synthetic import Neuropil, NeuropilConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="crop edge in voxels")
    parser.add_argument("--voxel-size", type=float, default=32.0, help="nm")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    n = args.size
    cold, warm = [], []
    for r in range(args.repeats):
        config = NeuropilConfig(shape=(4 * n,) * 3, voxel_size=args.voxel_size, seed=args.seed + r)
        neuropil = Neuropil(config)
        box = (slice(n, 2 * n),) * 3
        t0 = time.perf_counter()
        neuropil.render(box)
        cold.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        neuropil.render(box)
        warm.append(time.perf_counter() - t0)
    voxels = n**3
    print(
        json.dumps(
            {
                "crop": [n, n, n],
                "voxel_size_nm": args.voxel_size,
                "cold_s": [round(t, 3) for t in cold],
                "warm_s": [round(t, 3) for t in warm],
                "median_cold_s": round(statistics.median(cold), 3),
                "median_warm_s": round(statistics.median(warm), 3),
                "voxels_per_s_cold": round(voxels / statistics.median(cold)),
                "voxels_per_s_warm": round(voxels / statistics.median(warm)),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            }
        )
    )


if __name__ == "__main__":
    main()

"""Render throughput of the synthetic neuropil: one 256³ crop at 32 nm, cold and warm.

Run on one core for the reference figure::

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 taskset -c 0 \
        python benchmarks/bench_render.py --repeats 3

Prints one JSON object: seconds per render (cold: fresh volume, tiles grown;
warm: tiles cached), wall clock and CPU time of this process (the CPU time
is steadier on a machine shared with other jobs), voxels per second and peak
resident memory. The first cold render also pays for the process's first use
of its memory.
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
    times = {"cold": [], "warm": [], "cold_cpu": [], "warm_cpu": []}
    for r in range(args.repeats):
        config = NeuropilConfig(shape=(4 * n,) * 3, voxel_size=args.voxel_size, seed=args.seed + r)
        neuropil = Neuropil(config)
        box = (slice(n, 2 * n),) * 3
        for kind in ("cold", "warm"):
            t0, c0 = time.perf_counter(), time.process_time()
            neuropil.render(box)
            times[kind].append(time.perf_counter() - t0)
            times[f"{kind}_cpu"].append(time.process_time() - c0)
    voxels = n**3
    median = {k: statistics.median(v) for k, v in times.items()}
    print(
        json.dumps(
            {
                "crop": [n, n, n],
                "voxel_size_nm": args.voxel_size,
                **{f"{k}_s": [round(t, 3) for t in v] for k, v in times.items()},
                **{f"median_{k}_s": round(v, 3) for k, v in median.items()},
                "voxels_per_s_cold": round(voxels / median["cold"]),
                "voxels_per_s_warm": round(voxels / median["warm"]),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            }
        )
    )


if __name__ == "__main__":
    main()

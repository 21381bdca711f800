"""SegCLR embedding on Dask: throughput per worker count, cost against volume size, test bed.

Prints one JSON document. Run from the repository root:

    python benchmarks/bench_cluster.py                           # small, 1 and 2 workers
    python benchmarks/bench_cluster.py --voxel-size 32 --sizes 128 256 512 --workers 1 4 16
    python benchmarks/bench_cluster.py --gpu-workers 8           # 8 CPU workers, one GPU
    python benchmarks/bench_cluster.py --testbed 2048 --somata 4 # neurons of a 2048³ volume

Data: a synthetic neuropil given to the workers as its ``NeuropilConfig``; each
worker renders the chunks its views need, never the whole volume. Skeletons
are the neuropil's ground-truth nodes, planned on the workers. The model is a
``--preset`` network with random weights (speed does not depend on them).
Clusters are local worker processes (``--threads``: threads of this process),
started before the clock runs; each is warmed up by a small job first.

- ``workers``: views/s for each of ``--workers`` worker counts on one volume
  (``--sizes``' largest), the speed-up over the first count, and
  ``busy_workers``: the seconds spent in partition tasks over the wall-clock
  seconds (how many workers were busy on average; below the worker count when
  the cores are shared or partitions run out);
- ``sizes``: for cubes of ``--sizes`` voxels on the most workers: rows stored,
  seconds (planning + embedding), seconds per row, and a least-squares line
  seconds = fixed + per_row × rows over the sizes (cost linear in the nodes:
  the seconds per row stay flat as the fixed cost is amortised);
- ``gpu`` (with CUDA and ``--gpu-workers N``): N worker processes sharing the
  GPU, each cutting views on the CPU and running the network on the GPU;
- ``testbed`` (``--testbed EDGE``, instead of the above): a cube of EDGE³
  voxels at 32 nm; the neurons of the ``--somata`` somata nearest its centre
  are embedded whole, across the volume, on the most ``--workers``; with the
  workers' peak memory, which stays that of a few chunks however large the
  volume.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from distributed import Client, LocalCluster

from napari_segclr.cluster import LEDGER, embed_distributed, local_client
from napari_segclr.model import SegclrModel, get_preset
from napari_segclr.synthetic import Neuropil, NeuropilConfig
from napari_segclr.synthetic.cell_types import CELL_TYPES

WARM_UP = (8, 16, 16)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = SegclrModel(get_preset(args.preset)).eval()
    report: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "load_average_start": os.getloadavg(),
        },
        "settings": {
            key: getattr(args, key)
            for key in (
                "preset",
                "voxel_size",
                "spacing_nm",
                "batch_size",
                "partition",
                "chunk_nm",
                "seed",
            )
        }
        | {"cluster": "threads" if args.threads else "processes"},
    }
    if args.testbed:
        report["testbed"] = testbed(args, model)
        report["machine"]["load_average_end"] = os.getloadavg()
        print(json.dumps(report, indent=2))
        return report
    largest = max(args.sizes)
    runs = []
    for n in args.workers:
        with cluster(n, threads=args.threads) as client:
            runs.append(measure(client, model, config(args, largest), args, device="cpu"))
    first = runs[0]["views_per_s"]
    report["workers"] = [
        {"workers": n, **run, "speed_up": run["views_per_s"] / first if first else None}
        for n, run in zip(args.workers, runs, strict=True)
    ]
    with cluster(max(args.workers), threads=args.threads) as client:
        sizes = [
            measure(client, model, config(args, edge), args, device="cpu") | {"edge": edge}
            for edge in args.sizes
        ]
    rows = np.array([s["rows"] for s in sizes], dtype=float)
    seconds = np.array([s["seconds"] for s in sizes])
    per_row, fixed = np.polyfit(rows, seconds, 1) if len(sizes) > 1 else (np.nan, np.nan)
    report["sizes"] = {
        "runs": sizes,
        "fit": {"fixed_s": float(fixed), "per_row_s": float(per_row)},
    }
    if args.gpu_workers and torch.cuda.is_available():
        with cluster(args.gpu_workers, threads=args.threads) as client:
            report["gpu"] = {"workers": args.gpu_workers} | measure(
                client, model, config(args, largest), args, device="cuda"
            )
    report["machine"]["load_average_end"] = os.getloadavg()
    print(json.dumps(report, indent=2))
    return report


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="tiny", choices=("tiny", "lite", "paper"))
    p.add_argument("--voxel-size", type=float, default=128.0, help="nm (default 128)")
    p.add_argument(
        "--sizes",
        type=int,
        nargs=3,
        default=(24, 32, 40),
        metavar="EDGE",
        help="cube edges in voxels (default 24 32 40)",
    )
    p.add_argument("--workers", type=int, nargs="+", default=(1, 2), help="default 1 2")
    p.add_argument("--threads", action="store_true", help="worker threads, not processes")
    p.add_argument("--spacing-nm", type=float, default=1000.0)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--partition", choices=("chunks", "segments"), default="chunks")
    p.add_argument(
        "--chunk-nm",
        type=float,
        default=2048.0,
        help="chunk edge in nm (default 2048: many partitions even in small volumes)",
    )
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--gpu-workers", type=int, default=0, help="worker processes sharing a GPU")
    p.add_argument(
        "--testbed", type=int, default=0, metavar="EDGE", help="run the test bed, e.g. 2048"
    )
    p.add_argument("--somata", type=int, default=2, help="neurons embedded in the test bed")
    return p.parse_args(argv)


def config(args: argparse.Namespace, edge: int) -> NeuropilConfig:
    return NeuropilConfig(shape=(edge,) * 3, voxel_size=args.voxel_size, seed=args.seed)


@contextmanager
def cluster(n_workers: int, *, threads: bool) -> Iterator[Client]:
    if not threads:
        with local_client(n_workers) as client:
            yield client
        return
    with (
        LocalCluster(
            n_workers=n_workers, threads_per_worker=1, processes=False, dashboard_address=":0"
        ) as local,
        Client(local) as client,
    ):
        yield client


def measure(
    client: Client, model: SegclrModel, data: NeuropilConfig, args: argparse.Namespace, **kw: Any
) -> dict[str, Any]:
    """One job on a fresh store, after a small warm-up job (imports, first model build)."""
    options = {
        "client": client,
        "spacing_nm": args.spacing_nm,
        "batch_size": args.batch_size,
        "partition": args.partition,
        "chunk_nm": args.chunk_nm,
    } | kw
    with tempfile.TemporaryDirectory() as folder:
        warm = NeuropilConfig(shape=WARM_UP, voxel_size=args.voxel_size, seed=args.seed + 1)
        embed_distributed(warm, model, f"{folder}/warm.zarr", **options)
        started = time.perf_counter()
        result = embed_distributed(data, model, f"{folder}/store.zarr", **options)
        seconds = time.perf_counter() - started
        markers = Path(folder, "store.zarr", LEDGER).glob("*.json")
        busy = sum(json.loads(marker.read_text())["seconds"] for marker in markers)
    return {
        "shape": list(data.shape),
        "rows": result.embedded,
        "partitions": result.partitions,
        "plan_s": round(result.plan_s, 3),
        "embed_s": round(result.embed_s, 3),
        "seconds": seconds,
        "seconds_per_row": seconds / result.embedded if result.embedded else None,
        "views_per_s": round(result.views_per_s, 2),
        "task_s": round(busy, 3),
        "busy_workers": round(busy / result.embed_s, 2) if result.embed_s else None,
    }


def testbed(args: argparse.Namespace, model: SegclrModel) -> dict[str, Any]:
    """The neurons of the somata nearest the centre of an EDGE³ volume at 32 nm, embedded."""
    data = NeuropilConfig(shape=(args.testbed,) * 3, voxel_size=32.0, seed=args.seed)
    ids = central_neurons(data, args.somata)
    with cluster(max(args.workers), threads=args.threads) as client:
        with tempfile.TemporaryDirectory() as folder:
            started = time.perf_counter()
            result = embed_distributed(
                data,
                model,
                f"{folder}/store.zarr",
                client=client,
                segment_ids=ids,
                spacing_nm=args.spacing_nm,
                batch_size=args.batch_size,
                partition="chunks",
            )
            seconds = time.perf_counter() - started
        peak = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return {
        "shape": list(data.shape),
        "voxel_size_nm": 32.0,
        "extent_um": [round(n * 32.0 / 1000, 1) for n in data.shape],
        "segments": len(ids),
        "rows": result.embedded,
        "partitions": result.partitions,
        "plan_s": round(result.plan_s, 1),
        "embed_s": round(result.embed_s, 1),
        "seconds": round(seconds, 1),
        "views_per_s": round(result.views_per_s, 2),
        "worker_peak_rss_mib": sorted(round(kib / 1024) for kib in peak.values()),
    }


def central_neurons(data: NeuropilConfig, count: int) -> list[int]:
    """Segment ids of the neurons whose somata lie nearest the volume's centre."""
    neuropil = Neuropil(data)
    somata = neuropil.somata()
    neuron = [CELL_TYPES[name].cell_class == "neuron" for name in somata["cell_type"]]
    somata = somata[np.asarray(neuron, dtype=bool)]
    centre = np.asarray(data.offset) + (np.asarray(data.shape) - 1) / 2 * data.voxel_size
    where = somata[["z_nm", "y_nm", "x_nm"]].to_numpy()
    nearest = somata.iloc[np.argsort(np.linalg.norm(where - centre, axis=1))[:count]]
    # A segment id is the soma's cell's: read it from the nodes in a small box around it.
    voxels = np.round(
        (nearest[["z_nm", "y_nm", "x_nm"]].to_numpy() - data.offset) / data.voxel_size
    )
    ids = []
    for cell, voxel in zip(nearest["cell_id"], voxels.astype(int), strict=True):
        box = tuple(
            slice(max(v - 8, 0), min(v + 8, n)) for v, n in zip(voxel, data.shape, strict=True)
        )
        nodes = neuropil.nodes(box)
        ids.append(int(nodes.loc[nodes["cell_id"] == cell, "segment_id"].iloc[0]))
    return ids


if __name__ == "__main__":
    main()

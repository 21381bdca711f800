"""Axon or dendrite from shape alone: mask-only SegCLR views of three real hemibrain neurons.

Prints one JSON document. Run from the repository root:

    python benchmarks/bench_hemibrain.py
    python benchmarks/bench_hemibrain.py --ssl-steps 400 --ssl-checkpoint runs/mask_ssl.pt

The three DA1 projection neurons of ``../shared/data/hemibrain_da1`` (surface
mesh and skeleton with axon / dendrite / linker labels) are each rendered
alone from their mesh, never as a whole: the segmentation is a virtual volume
(``--voxel-size``, 128 nm by default) whose crops are voxelised from the mesh
when views read them, so only the blocks around the sampled nodes are made.
View centres are skeleton nodes about ``--spacing-um`` apart along the cable
(``subsample_nodes``); linker nodes (the primary neurite between dendrite and
axon) are left out. The mesh encloses only about half of the skeleton's nodes
(the others are mostly on the thinnest neurites, where the simplified surface
passes beside the skeleton), so a node is kept only where the centre voxel of
its view is inside the rendered cell. Views are 33³ voxels of 128 nm by
default: the 4.2 µm field of view of the presets (``--view-voxels 65
--voxel-size 64`` sees the same field at twice the resolution, for 8× the cost).

Mask-only views (``input_kinds=("mask",)``) are turned into features by:

- ``random_init``: a randomly initialised mask-only encoder (the baseline);
- ``ssl_synthetic``: the same encoder trained briefly with SegCLR's contrastive
  loss on mask views of synthetic neuropil (seeds ``--ssl-seeds``, positive
  pairs along the ground-truth skeletons), never on these neurons;
- ``handcrafted``: mask volume fraction in nested cubes around the centre,
  the local caliber (distance to the surface at and near the centre) and the
  fraction of the view's mask that is surface.

A logistic-regression probe (standardised features, class-balanced; the one of
``bench_probe.py``) is fitted on two neurons and scored on the third, for all
three rotations: F1 per class, macro F1 per rotation and the mean.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import edt
import numpy as np
import torch
from _common import report_header
from bench_probe import fit_probe

from napari_segclr.io import Dataset, Volume
from napari_segclr.model import ModelConfig, SegclrModel, count_flops
from napari_segclr.synthetic import (
    Cell,
    Compartment,
    NeuropilConfig,
    cell_box,
    mesh_inside,
    read_hemibrain_neuron,
    subsample_nodes,
)
from napari_segclr.train import TrainConfig, TrainingData, train
from napari_segclr.views import ViewLoader, ViewPoints, ViewSpec

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SEGCLR_SHARED_DATA", REPO.parent / "shared" / "data"))
NEURONS = (722817260, 754534424, 754538881)
CLASSES = ("axon", "dendrite")
FEATURES = ("random_init", "ssl_synthetic", "handcrafted")
#: Half-widths (view voxels) of the cubes whose mask fraction is a handcrafted feature.
CUBE_HALF_WIDTHS = (2, 4, 8)


class MeshLabels:
    """One cell's surface mesh as a lazy uint64 label array: crops are voxelised when read.

    Voxel ``i`` has its centre at ``origin_nm + i * voxel_size`` (nm, z y x);
    voxels inside the surface hold the cell id, all others 0.
    """

    def __init__(
        self, cell: Cell, origin_nm: np.ndarray, shape: tuple[int, int, int], voxel_size: float
    ) -> None:
        if cell.mesh is None:
            raise ValueError(f"cell {cell.cell_id} has no surface mesh")
        self.cell = cell
        self.origin_nm = np.asarray(origin_nm, dtype=np.float64)
        self.shape = shape
        self.voxel_size = float(voxel_size)
        self.dtype = np.dtype(np.uint64)
        self.ndim = 3

    def __getitem__(self, key: tuple[slice, slice, slice]) -> np.ndarray:
        start = np.array([s.start for s in key])
        size = [s.stop - s.start for s in key]
        inside = mesh_inside(
            self.cell.mesh, self.origin_nm + start * self.voxel_size, size, self.voxel_size
        )
        return inside.astype(np.uint64) * np.uint64(self.cell.cell_id)


def neuron_dataset(cell: Cell, *, voxel_size: float, margin_nm: float) -> Dataset:
    """The cell alone in a virtual volume covering it plus ``margin_nm``.

    Mask-only views read the segmentation only; it also stands in as the
    dataset's EM volume, which they never read.
    """
    origin, shape = cell_box(cell, voxel_size, margin_nm=margin_nm)
    labels = MeshLabels(cell, origin, shape, voxel_size)
    volume = Volume(labels, voxel_size, tuple(origin), kind="labels", source=f"{cell.cell_id}.obj")
    return Dataset(volume, volume)


def neuron_points(
    cell: Cell, *, spacing_nm: float, max_views: int | None, seed: int
) -> tuple[ViewPoints, np.ndarray]:
    """Skeleton nodes about ``spacing_nm`` apart (linker nodes left out) and their classes.

    Classes index :data:`CLASSES`; point ``i`` has node id ``i``. With
    ``max_views``, a random subset of that many nodes.
    """
    picks = subsample_nodes(cell, spacing_nm, seed=seed)
    picks = picks[~np.asarray(cell.attributes["linker_nodes"])[picks]]
    if max_views is not None and len(picks) > max_views:
        rng = np.random.default_rng(seed)
        picks = np.sort(rng.choice(picks, size=max_views, replace=False))
    labels = (cell.compartments[picks] == Compartment.DENDRITE).astype(np.int64)
    ids = np.full(len(picks), cell.cell_id, dtype=np.uint64)
    return ViewPoints(ids, np.arange(len(picks)), cell.nodes[picks]), labels


def shape_features(masks: np.ndarray, voxel_size_nm: float) -> np.ndarray:
    """Handcrafted features (N, 6) of binary mask views (N, Z, Y, X) with odd sides.

    Mask fraction in cubes of half-width 2, 4 and 8 voxels around the centre,
    distance to the surface (nm) at the centre and its maximum within 2 voxels
    of it (the local caliber), and the fraction of mask voxels on its surface.
    """
    c = masks.shape[1] // 2
    out = np.empty((len(masks), len(CUBE_HALF_WIDTHS) + 3), dtype=np.float32)
    for i, mask in enumerate(masks.astype(np.uint8)):
        for j, h in enumerate(CUBE_HALF_WIDTHS):
            out[i, j] = mask[c - h : c + h + 1, c - h : c + h + 1, c - h : c + h + 1].mean()
        distance = edt.edt(mask, anisotropy=(voxel_size_nm,) * 3, black_border=False)
        out[i, -3] = distance[c, c, c]
        out[i, -2] = distance[c - 2 : c + 3, c - 2 : c + 3, c - 2 : c + 3].max()
        surface = (distance > 0) & (distance <= voxel_size_nm)
        out[i, -1] = surface.sum() / max(int(mask.sum()), 1)
    return out


def neuron_features(
    cell: Cell, models: dict[str, SegclrModel], args: argparse.Namespace
) -> tuple[dict[str, np.ndarray], np.ndarray, dict]:
    """Features by featuriser name and classes of the views centred on the cell; counts."""
    config = next(iter(models.values())).config
    spec = ViewSpec.from_config(config)
    points, labels = neuron_points(
        cell, spacing_nm=args.spacing_um * 1000.0, max_views=args.max_views, seed=args.seed
    )
    dataset = neuron_dataset(cell, voxel_size=args.voxel_size, margin_nm=config.field_of_view_nm[0])
    features = {name: np.zeros((len(points), config.embedding_dim), np.float32) for name in models}
    features["handcrafted"] = np.zeros((len(points), len(CUBE_HALF_WIDTHS) + 3), np.float32)
    on_mesh = np.zeros(len(points), dtype=bool)
    c = spec.shape[0] // 2
    loader = ViewLoader(dataset, points, spec, batch_size=args.batch_size, to_torch=True)
    with torch.inference_mode():
        for views, batch in loader:
            rows = batch.node_ids
            on_mesh[rows] = views[:, 0, c, c, c].numpy() > 0
            channels_last = views.contiguous(memory_format=torch.channels_last_3d)
            for name, model in models.items():
                features[name][rows] = model.embed(channels_last).numpy()
            features["handcrafted"][rows] = shape_features(views[:, 0].numpy(), args.voxel_size)
    counts = {
        "nodes_sampled": len(points),
        "on_mesh": int(on_mesh.sum()),
        **{f"{k}_views": int(np.sum(labels[on_mesh] == i)) for i, k in enumerate(CLASSES)},
    }
    return {k: v[on_mesh] for k, v in features.items()}, labels[on_mesh], counts


def mask_config(args: argparse.Namespace) -> ModelConfig:
    """The mask-only encoder: ``--view-voxels``³ views at ``--voxel-size``, narrow ResNet-18."""
    widths = tuple(args.widths)
    return ModelConfig(
        view_shape=(args.view_voxels,) * 3,
        voxel_size_nm=(args.voxel_size,) * 3,
        input_kinds=("mask",),
        stage_widths=widths,
        embedding_hidden=(2 * widths[-1], 2 * widths[-1]),
        projection_hidden=(32, 32),
    )


def ssl_encoder(
    config: ModelConfig, args: argparse.Namespace, folder: Path
) -> tuple[SegclrModel, dict]:
    """The mask-only encoder trained contrastively on synthetic neuropil, and how it went.

    An existing ``--ssl-checkpoint`` of the same settings is resumed (and so
    reused when it has all its steps).
    """
    extent = np.asarray(args.ssl_extent_um) * 1000.0
    shape = tuple(int(s) for s in np.maximum(np.round(extent / args.voxel_size), 1))
    started = time.perf_counter()
    data = [
        TrainingData.synthetic(NeuropilConfig(shape=shape, voxel_size=args.voxel_size, seed=s))
        for s in args.ssl_seeds
    ]
    rendered = time.perf_counter() - started
    training = TrainConfig(
        model=config,
        steps=args.ssl_steps,
        batch_size=args.ssl_batch_size,
        learning_rate=args.ssl_learning_rate,
        checkpoint_every=args.ssl_steps,
        seed=args.seed,
        device="cpu",
    )
    path = Path(args.ssl_checkpoint) if args.ssl_checkpoint else folder / "mask_ssl.pt"
    result = train(data, training, checkpoint=path, resume=True, workers=1)
    losses = result.losses
    info = {
        "checkpoint": str(path) if args.ssl_checkpoint else None,
        "synthetic_seeds": args.ssl_seeds,
        "synthetic_shape": list(shape),
        "steps": result.step,
        "steps_this_run": len(losses),
        "batch_pairs": args.ssl_batch_size,
        "loss_first_10": round(float(np.mean(losses[:10])), 3) if len(losses) else None,
        "loss_last_10": round(float(np.mean(losses[-10:])), 3) if len(losses) else None,
        "render_s": round(rendered, 1),
        "train_s": round(time.perf_counter() - started - rendered, 1),
    }
    return result.model.eval().to(memory_format=torch.channels_last_3d), info


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DATA / "hemibrain_da1", help="hemibrain folder")
    p.add_argument("--voxel-size", type=float, default=128.0, help="nm of views and renders")
    p.add_argument("--view-voxels", type=int, default=33, help="view side in voxels (odd)")
    p.add_argument(
        "--widths", type=int, nargs=4, default=(16, 32, 64, 128), help="ResNet stage widths"
    )
    p.add_argument("--spacing-um", type=float, default=2.0, help="node spacing (default 2 µm)")
    p.add_argument("--max-views", type=int, help="at most this many nodes per neuron")
    p.add_argument("--ssl-steps", type=int, default=300, help="contrastive training steps")
    p.add_argument("--ssl-batch-size", type=int, default=32, help="pairs per step")
    p.add_argument("--ssl-learning-rate", type=float, default=2e-3)
    p.add_argument("--ssl-seeds", type=int, nargs="+", default=[300, 301, 302, 303])
    p.add_argument(
        "--ssl-extent-um",
        type=float,
        nargs=3,
        default=(4.096, 8.192, 8.192),
        help="size (z, y, x) of each synthetic training volume in µm",
    )
    p.add_argument("--ssl-checkpoint", help="keep the trained encoder here (resumed if present)")
    p.add_argument("--batch-size", type=int, default=32, help="views per batch")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--seed", type=int, default=0, help="seeds sampling, init and training")
    args = p.parse_args(argv)
    smallest = 2 * max(CUBE_HALF_WIDTHS) + 1
    if args.view_voxels < smallest or args.view_voxels % 2 == 0:
        p.error(f"--view-voxels must be odd and at least {smallest}")
    if max(args.ssl_seeds) >= 1000:
        p.error("--ssl-seeds must be below 1000 (seeds from 1000 on are kept for evaluation)")
    return args


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the benchmark, print its JSON report and return it."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    config = mask_config(args)
    report: dict = {
        **report_header(
            "axon vs dendrite from mask-only views, hemibrain DA1 neurons", threads=args.threads
        ),
        "views": {
            "kind": "mask",
            "shape": list(config.view_shape),
            "voxel_size_nm": args.voxel_size,
            "field_of_view_um": round(config.field_of_view_nm[0] / 1000, 2),
            "node_spacing_um": args.spacing_um,
        },
        "encoder": {
            "stage_widths": list(config.stage_widths),
            "gflops_per_view": round(count_flops(config) / 1e9, 3),
        },
    }
    with tempfile.TemporaryDirectory() as folder:
        trained, report["ssl_training"] = ssl_encoder(config, args, Path(folder))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed)
        random_init = SegclrModel(config).eval().to(memory_format=torch.channels_last_3d)
    models = {"random_init": random_init, "ssl_synthetic": trained}

    neurons = {}
    for body in NEURONS:
        cell = read_hemibrain_neuron(
            args.data / f"{body}.obj", args.data / f"{body}_nodes_compartment.csv"
        )
        features, labels, counts = neuron_features(cell, models, args)
        neurons[body] = (features, labels)
        report.setdefault("neurons", {})[str(body)] = counts

    rotations = []
    for test in NEURONS:
        train_ids = [b for b in NEURONS if b != test]
        result: dict = {"test_neuron": test, "train_neurons": train_ids}
        for name in FEATURES:
            train_x = np.concatenate([neurons[b][0][name] for b in train_ids])
            train_y = np.concatenate([neurons[b][1] for b in train_ids])
            test_x, test_y = neurons[test][0][name], neurons[test][1]
            result[name] = fit_probe(train_x, train_y, test_x, test_y, classes=CLASSES)
        rotations.append(result)
    report["rotations"] = rotations
    report["mean_macro_f1"] = {
        name: round(float(np.mean([r[name]["macro_f1"] for r in rotations])), 4)
        for name in FEATURES
    }
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["load_average_1min_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()

"""The segment command: an affinity network's segmentation of an EM volume, as OME-Zarr labels."""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path
from typing import Any

from .common import (
    PhaseBars,
    absolute,
    cluster_options,
    command,
    dask_client,
    device_name,
    positive_int,
    voxel_size_option,
)


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = command(
        sub,
        "segment",
        "Segment an EM volume with an affinity network (from finetune-mae): affinities "
        "predicted tile by tile, seeded watershed, then mean-affinity agglomeration; "
        "written as OME-Zarr labels.",
        _segment,
    )
    p.add_argument(
        "--em",
        required=True,
        metavar="PATH",
        help="EM volume: TIFF, HDF5 (file.h5:/dataset), Zarr, OME-Zarr, N5 or precomputed",
    )
    voxel_size_option(p, "--em-voxel-size", "the EM")
    p.add_argument(
        "--model",
        required=True,
        type=Path,
        metavar="CKPT",
        help="affinity network checkpoint written by finetune-mae",
    )
    p.add_argument(
        "--out",
        required=True,
        type=Path,
        metavar="OUT.zarr",
        help="OME-Zarr to write the segmentation to (a labels image with the EM's voxel size "
        "and offset)",
    )
    p.add_argument(
        "--threshold",
        type=_probability,
        default=0.5,
        help="merge neighbouring fragments while their mean affinity exceeds this; lower "
        "merges more (default 0.5)",
    )
    p.add_argument(
        "--overlap",
        type=_overlap,
        default=0.25,
        help="overlap of neighbouring tiles: a fraction of the tile below 1, or a whole "
        "number of voxels (default 0.25)",
    )
    p.add_argument(
        "--batch-size", type=positive_int, default=4, help="tiles per forward pass (default 4)"
    )
    p.add_argument(
        "--device",
        type=device_name,
        default="auto",
        help="auto (CUDA when available, default), cpu, cuda or cuda:N",
    )
    p.add_argument(
        "--truth",
        metavar="LABELS",
        help="ground-truth segmentation of the same voxels: print adapted Rand error and "
        "variation of information (voxels labelled 0 there are not scored)",
    )
    p.add_argument("--force", action="store_true", help="replace an existing --out")
    cluster_options(
        p,
        "predict the affinities on Dask distributed, block by block, into a zarr array "
        "(--affinities); each finished block is recorded there, so rerunning an interrupted "
        "job predicts only what is missing. Agglomeration then runs here.",
        reads="the EM and the affinities",
    )
    p.add_argument(
        "--affinities",
        type=Path,
        metavar="PATH.zarr",
        help="where the cluster writes the affinities (default: OUT.affinities.zarr beside "
        "--out); removed once the segmentation is written, unless --keep-affinities",
    )
    p.add_argument(
        "--keep-affinities", action="store_true", help="keep the affinities of a cluster run"
    )


def _segment(args: argparse.Namespace) -> int:
    from ..exceptions import CheckpointError, OutputExistsError, ShapeMismatchError
    from ..io import open_volume
    from ..mae import load_affinity_model
    from ..segment import model_level, segment_volume

    on_cluster = args.scheduler is not None or args.local_workers is not None
    if not on_cluster and (args.affinities is not None or args.keep_affinities):
        args.parser.error("--affinities and --keep-affinities need --scheduler or --local-workers")
    if args.out.exists() and not args.force:  # before anything is read
        raise OutputExistsError(f"{args.out}: already exists; pass --force to replace it")
    if not args.model.expanduser().is_file():
        raise CheckpointError(f"checkpoint {args.model} does not exist")
    em = open_volume(absolute(args.em), kind="image", voxel_size=args.em_voxel_size)
    model = load_affinity_model(args.model.expanduser())
    level = model_level(em, model)
    truth = None
    if args.truth is not None:
        truth = open_volume(absolute(args.truth), kind="labels", voxel_size=level.voxel_size)
        if truth.shape != level.shape:
            raise ShapeMismatchError(
                f"{args.truth}: shape {truth.shape} differs from the segmented EM's {level.shape}"
            )
    start = time.perf_counter()
    with PhaseBars(("affinities", "agglomerating", "writing")) as progress:
        affinities = _cluster_affinities(args, model, progress) if on_cluster else None
        segmentation = segment_volume(
            em,
            model,
            out=args.out,
            threshold=args.threshold,
            overlap=args.overlap,
            batch_size=args.batch_size,
            device=args.device,
            overwrite=args.force,
            affinities=affinities,
            progress=progress,
        )
    if on_cluster and not args.keep_affinities:
        shutil.rmtree(_affinities_path(args))
    sizes = " × ".join(f"{v:g}" for v in segmentation.voxel_size)
    print(
        f"wrote {args.out}: labels of shape {segmentation.shape} at {sizes} nm "
        f"in {time.perf_counter() - start:.1f} s"
    )
    if truth is not None:
        _print_scores(truth, segmentation)
    return 0


def _affinities_path(args: argparse.Namespace) -> Path:
    return args.affinities or args.out.with_name(args.out.name + ".affinities.zarr")


def _cluster_affinities(args: argparse.Namespace, model: Any, progress: Any) -> Any:
    """The affinities predicted on the cluster asked for (resuming an unfinished run)."""
    from ..segment import predict_affinities_distributed

    with dask_client(args) as client:
        return predict_affinities_distributed(
            absolute(args.em),
            model,
            _affinities_path(args),
            client=client,
            em_voxel_size=args.em_voxel_size,
            overlap=args.overlap,
            batch_size=args.batch_size,
            device=args.device,
            progress=progress,
        )


def _print_scores(truth: Any, segmentation: Any) -> None:
    from ..segment import segmentation_scores

    whole = tuple(slice(0, n) for n in truth.shape)
    s = segmentation_scores(truth.read(whole), segmentation.read(whole))
    print(
        f"adapted Rand error {s['adapted_rand_error']:.4f} "
        f"(precision {s['rand_precision']:.4f}, recall {s['rand_recall']:.4f})"
    )
    print(
        f"variation of information {s['voi']:.4f} bits "
        f"(split {s['voi_split']:.4f}, merge {s['voi_merge']:.4f})"
    )
    print(f"segments: {s['pred_segments']:.0f} predicted, {s['truth_segments']:.0f} true")


def _probability(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be a number between 0 and 1, got {text}")
    return value


def _overlap(text: str) -> float | int:
    try:
        voxels = int(text)
    except ValueError:
        fraction = float(text)
        if not 0 <= fraction < 1:
            raise argparse.ArgumentTypeError(
                f"a fraction of the tile must be in [0, 1), got {text}"
            ) from None
        return fraction
    if voxels < 0:
        raise argparse.ArgumentTypeError(f"voxels must be an integer >= 0, got {text}")
    return voxels

"""SegCLR commands: train a model, embed segments, move embeddings in and out of stores."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from .common import (
    LossBar,
    PhaseBars,
    ProgressBar,
    absolute,
    cluster_options,
    command,
    dask_client,
    device_options,
    load_model,
    non_negative_float,
    open_dataset,
    positive_float,
    positive_int,
    run_options,
    segment_id,
    training_log,
    volume_options,
)

PRESET_NAMES = ("paper", "lite", "tiny")
#: Signature "kind" of a store filled from a sharded ZIP release (not by a model of ours).
IMPORT_KIND = "segclr-csv-zip import"


def add_commands(sub: argparse._SubParsersAction) -> None:
    for add in (_add_train, _add_embed, _add_import_zips, _add_export_zips):
        add(sub)


# --- train ------------------------------------------------------------------------


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = command(
        sub,
        "train",
        "Train a SegCLR model (contrastive, no labels) on an EM volume and its segmentation, "
        "or on synthetic neuropil.",
        _train,
    )
    data = p.add_argument_group(
        "data", "either --em and --seg (skeletonised first), or --synthetic-seed"
    )
    volume_options(data, required=False)
    data.add_argument(
        "--synthetic-seed",
        type=int,
        nargs="+",
        metavar="SEED",
        help="train on synthetic neuropil rendered in memory, one volume per seed",
    )
    data.add_argument(
        "--synthetic-shape",
        type=positive_int,
        nargs=3,
        default=(128, 192, 192),
        metavar=("Z", "Y", "X"),
        help="shape of each synthetic volume in voxels (default 128 192 192)",
    )
    data.add_argument(
        "--synthetic-voxel-size",
        type=positive_float,
        nargs=3,
        default=(32.0, 32.0, 32.0),
        metavar=("Z", "Y", "X"),
        help="voxel size of the synthetic volumes in nm (default 32 32 32)",
    )
    run = p.add_argument_group("training")
    run.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="CHECKPOINT",
        help="checkpoint file to write (e.g. model.pt); its optimiser state goes beside it",
    )
    run.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its last checkpoint (start one if there is none)",
    )
    run.add_argument(
        "--preset",
        choices=PRESET_NAMES,
        default="lite",
        help="network size: paper (129³ views of 32 nm), lite (33³ of 128 nm, default), "
        "tiny (17³ of 256 nm, for tests)",
    )
    run.add_argument("--steps", type=positive_int, default=10_000, help="steps (default 10000)")
    run.add_argument(
        "--batch-size", type=positive_int, default=32, help="positive pairs per step (default 32)"
    )
    run.add_argument(
        "--learning-rate", type=positive_float, default=1e-3, help="peak AdamW rate (default 1e-3)"
    )
    run.add_argument(
        "--max-path-nm",
        type=positive_float,
        default=4000.0,
        help="largest distance along the skeleton between a pair's views (default 4000)",
    )
    run.add_argument(
        "--jitter-nm",
        type=non_negative_float,
        default=300.0,
        help="random shift of each view centre per axis, nm (default 300)",
    )
    run_options(run, checkpoint_every=500)
    p.set_defaults(parser=p)


def _train(args: argparse.Namespace) -> int:
    from ..exceptions import OutputExistsError
    from ..synthetic import NeuropilConfig
    from ..train import TrainConfig, TrainingData, train

    files = args.em is not None or args.seg is not None
    if files == (args.synthetic_seed is not None) or (files and not (args.em and args.seg)):
        args.parser.error("give --em and --seg, or --synthetic-seed (not both)")
    if args.batch_size < 2:
        args.parser.error("--batch-size must be at least 2 (the other pairs are the negatives)")
    if args.out.exists() and not args.resume:  # before the data is read or rendered
        raise OutputExistsError(f"{args.out} exists; pass --resume to continue its run")
    config = TrainConfig(
        model=args.preset,
        steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        max_path_nm=args.max_path_nm,
        jitter_nm=args.jitter_nm,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
        device=args.device,
    )
    if files:
        with ProgressBar("skeletonising") as progress:
            data = [TrainingData.from_dataset(open_dataset(args), progress=progress)]
    else:
        data = []
        for seed in args.synthetic_seed:
            neuropil = NeuropilConfig(
                shape=tuple(args.synthetic_shape),
                voxel_size=tuple(args.synthetic_voxel_size),
                seed=seed,
            )
            with ProgressBar(f"rendering seed {seed}") as progress:
                data.append(TrainingData.synthetic(neuropil, progress=progress))
    log = training_log(args)
    with LossBar() as progress:
        result = train(
            data,
            config,
            checkpoint=args.out,
            resume=args.resume,
            workers=args.workers,
            progress=progress,
            log=log,
        )
    if len(result.losses) == 0:
        print(f"{args.out} is already trained for {result.step} steps; nothing to do")
        return 0
    print(
        f"trained {result.step - result.start_step} steps ({result.steps_per_s:.3g} steps/s), "
        f"final loss {result.losses[-1]:.4f}; wrote {args.out} and {log}"
    )
    return 0


# --- embed ------------------------------------------------------------------------


def _add_embed(sub: argparse._SubParsersAction) -> None:
    p = command(
        sub,
        "embed",
        "Embed segments: skeletonise them, cut a view every --spacing-nm along each skeleton "
        "and store each view's SegCLR embedding. Nodes already in the store are skipped, so "
        "an interrupted run is simply run again.",
        _embed,
    )
    volume_options(p, required=True)
    p.add_argument(
        "--store",
        type=Path,
        required=True,
        metavar="PATH",
        help="embedding store (a .zarr folder; created if absent, must be of this model and data)",
    )
    p.add_argument(
        "--model",
        default="lite",
        metavar="CHECKPOINT",
        help="a checkpoint written by `train`, or 'lite' for the shipped model (default)",
    )
    p.add_argument(
        "--segments",
        type=segment_id,
        nargs="+",
        metavar="ID",
        help="segment ids to embed (default: every segment)",
    )
    p.add_argument(
        "--spacing-nm",
        type=positive_float,
        default=1000.0,
        help="distance between embedded nodes along each skeleton, nm (default 1000)",
    )
    p.add_argument(
        "--batch-size", type=positive_int, default=32, help="views per batch (default 32)"
    )
    device_options(p)
    cluster_options(
        p,
        "embed on Dask distributed: the volume is cut into spatial chunks that the workers "
        "embed into the one store; each finished chunk is recorded in the store, so "
        "rerunning an interrupted job does only what is missing (default: this process only)",
        reads="the volumes and the store",
    )


def _embed(args: argparse.Namespace) -> int:
    from ..embed import embed_segments

    model = load_model(args.model)
    if args.scheduler is not None or args.local_workers is not None:
        return _embed_on_cluster(args, model)
    dataset = open_dataset(args)
    with PhaseBars(("skeletonising", "embedding")) as progress:
        result = embed_segments(
            dataset,
            model,
            args.store,
            segment_ids=args.segments,
            spacing_nm=args.spacing_nm,
            batch_size=args.batch_size,
            device=args.device,
            workers=args.workers,
            progress=progress,
        )
    _print_embedded(result)
    return 0


def _embed_on_cluster(args: argparse.Namespace, model: Any) -> int:
    from ..cluster import DatasetSpec, embed_distributed

    spec = DatasetSpec(
        absolute(args.em),
        absolute(args.seg),
        em_voxel_size=args.em_voxel_size,
        seg_voxel_size=args.seg_voxel_size,
    )
    spec.open()  # a missing file or voxel size is reported before a cluster starts
    with dask_client(args) as client, PhaseBars(("skeletonising", "embedding")) as progress:
        result = embed_distributed(
            spec,
            model,
            args.store,
            client=client,
            segment_ids=args.segments,
            spacing_nm=args.spacing_nm,
            batch_size=args.batch_size,
            device=args.device,
            loader_threads=args.workers,
            progress=progress,
        )
    _print_embedded(result)
    print(
        f"{result.partitions_run} of {result.partitions} chunks embedded on {result.workers} "
        f"workers; {result.partitions_skipped} were recorded by an earlier run"
    )
    return 0


def _print_embedded(result: Any) -> None:
    print(
        f"embedded {result.embedded} nodes of {result.segments} segments into {result.store} "
        f"({result.views_per_s:.3g} views/s); {result.already_stored} were stored already, "
        f"{result.outside} lie outside the EM"
    )


# --- import-zips / export-zips -----------------------------------------------------


def _add_import_zips(sub: argparse._SubParsersAction) -> None:
    p = command(
        sub,
        "import-zips",
        "Import embeddings released in the SegCLR format (a folder of sharded ZIPs of "
        "per-segment CSVs) into an embedding store. Rerunning an interrupted import completes it.",
        _import_zips,
    )
    p.add_argument("src", type=Path, metavar="SRC", help="folder of <shard>.zip files, or one ZIP")
    p.add_argument("--store", type=Path, required=True, metavar="PATH", help="store to fill")
    _sharding_options(p, required=False)
    p.add_argument(
        "--voxel-size",
        nargs=3,
        type=float,
        metavar=("Z", "Y", "X"),
        help="for releases with coordinates in voxels: their voxel size in nm (default: nm)",
    )
    p.add_argument(
        "--dim",
        type=positive_int,
        help="embedding size (default: from the release's sharding.json, else 64)",
    )


def _import_zips(args: argparse.Namespace) -> int:
    from ..exceptions import VolumeNotFoundError
    from ..interop import import_sharded_zips
    from ..store import EmbeddingStore

    src = args.src.expanduser().resolve()
    if not src.exists():  # checked before a store is created for it
        raise VolumeNotFoundError(f"release {src} does not exist")
    dim = args.dim or _release_dim(src)
    signature = {"kind": IMPORT_KIND, "source": str(src)}
    store = EmbeddingStore.open_or_create(args.store, signature=signature, dim=dim)
    with ProgressBar("importing") as progress:
        added = import_sharded_zips(
            src,
            store,
            n_shards=args.n_shards,
            bytewidth=args.bytewidth,
            voxel_size=args.voxel_size,
            progress=progress,
        )
    print(f"added {added} rows to {args.store} ({len(store)} in all)")
    return 0


def _release_dim(src: Path) -> int:
    from ..interop import SHARDING_FILE

    meta = src / SHARDING_FILE
    if src.is_dir() and meta.is_file():
        try:
            return int(json.loads(meta.read_text())["dim"])
        except (ValueError, KeyError, TypeError):
            pass
    return 64


def _add_export_zips(sub: argparse._SubParsersAction) -> None:
    p = command(
        sub,
        "export-zips",
        "Export an embedding store in the released SegCLR format: <shard>.zip files of "
        "per-segment CSVs (node_id, x, y, z in nm, e0…), sharded by md5 of the segment id.",
        _export_zips,
    )
    p.add_argument("--store", type=Path, required=True, metavar="PATH", help="store to export")
    p.add_argument("out", type=Path, metavar="OUT", help="folder to write (must not exist)")
    _sharding_options(p, required=True)
    p.add_argument("--overwrite", action="store_true", help="replace an existing export folder")


def _export_zips(args: argparse.Namespace) -> int:
    from ..interop import write_sharded_zips
    from ..store import EmbeddingStore

    store = EmbeddingStore.open(args.store)
    written = write_sharded_zips(
        store, args.out, n_shards=args.n_shards, bytewidth=args.bytewidth, overwrite=args.overwrite
    )
    print(f"wrote {len(store)} rows in {len(written)} ZIP files to {args.out}")
    return 0


def _sharding_options(parser: argparse.ArgumentParser, *, required: bool) -> None:
    default = "" if required else "; default: the folder's sharding.json"
    parser.add_argument(
        "--n-shards",
        type=positive_int,
        required=required,
        help=f"number of shards (H01 and MICrONS v343: 10000, MICrONS v943: 50000{default})",
    )
    parser.add_argument(
        "--bytewidth",
        type=positive_int,
        default=None if not required else 8,
        help="bytes of the segment id hashed by md5 (2022 releases: 64, later: 8"
        + (", default 8)" if required else f"{default})"),
    )

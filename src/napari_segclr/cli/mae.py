"""MAE commands: pre-train a 3D ViT on unlabelled EM, fine-tune it to predict affinities."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .common import (
    LossBar,
    absolute,
    command,
    non_negative_float,
    positive_float,
    positive_int,
    run_options,
    training_log,
    voxel_size_option,
)

PRESET_NAMES = ("base", "small", "tiny")


def add_commands(sub: argparse._SubParsersAction) -> None:
    _add_pretrain(sub)
    _add_finetune(sub)


# --- pretrain-mae -------------------------------------------------------------------


def _add_pretrain(sub: argparse._SubParsersAction) -> None:
    p = command(
        sub,
        "pretrain-mae",
        "Pre-train a 3D ViT masked autoencoder on unlabelled EM: random tiles, most of "
        "their patches hidden, the hidden ones reconstructed.",
        _pretrain,
    )
    p.add_argument(
        "em",
        nargs="+",
        metavar="EM",
        help="EM volumes: TIFF, HDF5 (file.h5:/dataset), Zarr, OME-Zarr, N5 or precomputed",
    )
    voxel_size_option(p, "--voxel-size", "the EM volumes")
    _network_options(p, preset_help="")
    p.add_argument(
        "--mask-ratio",
        type=_ratio,
        default=0.75,
        help="fraction of each tile's patches hidden from the encoder (default 0.75)",
    )
    _run_options(p)
    p.set_defaults(parser=p)


def _pretrain(args: argparse.Namespace) -> int:
    from ..mae import PretrainConfig, pretrain

    _refuse_existing(args)
    volumes = [_open(path, args.voxel_size, kind="image") for path in args.em]
    try:
        config = PretrainConfig(
            model=_network(args, volumes[0].voxel_size),
            mask_ratio=args.mask_ratio,
            **_schedule(args),
        )
    except ValueError as error:  # shapes that do not fit the data or each other
        args.parser.error(str(error))
    log = training_log(args)
    with LossBar() as progress:
        result = pretrain(
            volumes,
            config,
            checkpoint=args.out,
            resume=args.resume,
            workers=args.workers,
            progress=progress,
            log=log,
            time_limit_s=_seconds(args),
        )
    _report(args, result, log, "pre-trained")
    return 0


# --- finetune-mae -------------------------------------------------------------------


def _add_finetune(sub: argparse._SubParsersAction) -> None:
    p = command(
        sub,
        "finetune-mae",
        "Train a network that predicts nearest-neighbour affinities (z, y, x) of a label "
        "volume from its EM: a ViT encoder from an MAE checkpoint (--init) or from scratch, "
        "and a UNETR-style decoder. The checkpoint is what segmentation loads.",
        _finetune,
    )
    p.add_argument("--raw", required=True, metavar="PATH", help="EM volume (any readable format)")
    p.add_argument(
        "--labels",
        required=True,
        metavar="PATH",
        help="its dense segmentation on the same voxel grid (integer ids, 0: unknown/boundary)",
    )
    voxel_size_option(p, "--voxel-size", "both volumes")
    p.add_argument(
        "--init",
        type=Path,
        metavar="CHECKPOINT",
        help="an MAE checkpoint from pretrain-mae: its encoder, config and intensity "
        "normalisation start the network (default: from scratch)",
    )
    _network_options(p, preset_help="; not with --init, which brings its own")
    p.set_defaults(parser=p)
    p.add_argument(
        "--dice-weight",
        type=non_negative_float,
        default=1.0,
        help="weight of the Dice loss beside the balanced cross-entropy (default 1)",
    )
    _run_options(p)


def _finetune(args: argparse.Namespace) -> int:
    from ..mae import FinetuneConfig, finetune

    if args.init and (args.preset or args.tile_shape or args.patch_shape):
        args.parser.error("--preset, --tile-shape and --patch-shape come from --init; omit them")
    _refuse_existing(args)
    raw = _open(args.raw, args.voxel_size, kind="image")
    labels = _open(args.labels, args.voxel_size, kind="labels")
    try:
        model = None if args.init else _network(args, raw.voxel_size)
        config = FinetuneConfig(model=model, dice_weight=args.dice_weight, **_schedule(args))
    except ValueError as error:  # shapes that do not fit the data or each other
        args.parser.error(str(error))
    log = training_log(args)
    with LossBar() as progress:
        result = finetune(
            raw,
            labels,
            config,
            checkpoint=args.out,
            init=args.init,
            resume=args.resume,
            workers=args.workers,
            progress=progress,
            log=log,
            time_limit_s=_seconds(args),
        )
    _report(args, result, log, "fine-tuned")
    return 0


# --- shared options -----------------------------------------------------------------


def _network_options(parser: argparse.ArgumentParser, *, preset_help: str) -> None:
    net = parser.add_argument_group("network (voxel size: the data's)")
    net.add_argument(
        "--preset",
        choices=PRESET_NAMES,
        help="base (GPU: 32×128×128 tiles, 12 layers of 384), small (CPU: 16×32×32, "
        f"4 layers of 96; the default), tiny (tests){preset_help}",
    )
    net.add_argument(
        "--tile-shape",
        type=positive_int,
        nargs=3,
        metavar=("Z", "Y", "X"),
        help="voxels of the tile the network sees (default: the preset's)",
    )
    net.add_argument(
        "--patch-shape",
        type=positive_int,
        nargs=3,
        metavar=("Z", "Y", "X"),
        help="voxels of one ViT patch, powers of two, near a cube in nm: e.g. 2 8 8 "
        "for 40×10×10 nm voxels (default: the preset's)",
    )


def _run_options(parser: argparse.ArgumentParser) -> None:
    run = parser.add_argument_group("training")
    run.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="CHECKPOINT",
        help="checkpoint file to write (e.g. mae.pt); its optimiser state goes beside it",
    )
    run.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its last checkpoint (start one if there is none)",
    )
    run.add_argument("--steps", type=positive_int, default=10_000, help="steps (default 10000)")
    run.add_argument(
        "--minutes",
        type=positive_float,
        help="stop after this many minutes, with a checkpoint (--resume goes on)",
    )
    run.add_argument(
        "--batch-size", type=positive_int, default=8, help="tiles per step (default 8)"
    )
    run.add_argument(
        "--learning-rate",
        type=positive_float,
        default=5e-4,
        help="peak AdamW rate, cosine schedule (default 5e-4)",
    )
    run.add_argument(
        "--no-flips", action="store_true", help="no random flips and y/x swaps of the tiles"
    )
    run_options(run, checkpoint_every=500)


def _refuse_existing(args: argparse.Namespace) -> None:
    from ..exceptions import OutputExistsError

    if args.out.exists() and not args.resume:  # before any data is read
        raise OutputExistsError(f"{args.out} exists; pass --resume to continue its run")


def _open(path: str, voxel_size: list[float] | None, *, kind: str) -> Any:
    from ..io import open_volume

    return open_volume(absolute(path), kind=kind, voxel_size=voxel_size)


def _network(args: argparse.Namespace, voxel_size: tuple[float, float, float]) -> Any:
    from dataclasses import replace

    from ..mae import get_preset

    overrides = {
        name: tuple(value)
        for name, value in (("tile_shape", args.tile_shape), ("patch_shape", args.patch_shape))
        if value is not None
    }
    preset = get_preset(args.preset or "small")
    return replace(preset, voxel_size_nm=voxel_size, **overrides)


def _schedule(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "steps": args.steps,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "flips": not args.no_flips,
        "seed": args.seed,
        "checkpoint_every": args.checkpoint_every,
        "device": args.device,
    }


def _seconds(args: argparse.Namespace) -> float | None:
    return None if args.minutes is None else 60.0 * args.minutes


def _report(args: argparse.Namespace, result: Any, log: Path, verb: str) -> None:
    if len(result.losses) == 0:
        print(f"{args.out} is already trained for {result.step} steps; nothing to do")
        return
    print(
        f"{verb} {result.step - result.start_step} steps ({result.steps_per_s:.3g} steps/s) "
        f"to step {result.step}, final loss {result.losses[-1]:.4f}; wrote {args.out} and {log}"
    )


def _ratio(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1), got {text}")
    return value

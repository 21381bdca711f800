"""Morphology commands: train a mask-only encoder on SWC cells; score cell types against
morphometrics."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import (
    PhaseBars,
    command,
    device_options,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    run_options,
    training_log,
)

PRESET_NAMES = ("morphology", "morphology-local", "tiny")
HEAD_NAMES = ("linear", "mlp", "sngp")


def add_commands(sub: argparse._SubParsersAction) -> None:
    _add_train(sub)
    _add_evaluate(sub)


def _cell_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="COLUMN=VALUE[,VALUE]",
        help="keep only rows whose COLUMN is one of the values (repeat for several columns)",
    )
    parser.add_argument(
        "--fixed-radius-nm",
        type=positive_float,
        metavar="NM",
        help="draw every non-soma node with this radius, for files whose radii are unreliable "
        "(evaluation: the encoder's setting by default)",
    )
    parser.add_argument(
        "--min-radius-nm",
        type=positive_float,
        metavar="NM",
        help="raise smaller file radii to this (default 50; evaluation: the encoder's setting)",
    )


def _where(args: argparse.Namespace) -> dict[str, tuple[str, ...]]:
    from ..evaluate.morphology_cells import parse_where

    try:
        return parse_where(args.where)
    except ValueError as error:
        args.parser.error(f"--where: {error}")


# --- train-morphology ---------------------------------------------------------------


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = command(
        sub,
        "train-morphology",
        "Train a mask-only SegCLR encoder (contrastive, no labels) on reconstructed cells "
        "(SWC files listed in a metadata CSV), drawn as masks around their skeletons.",
        _train,
    )
    p.add_argument(
        "--cells",
        type=Path,
        required=True,
        metavar="CSV",
        help="metadata table: a 'file' column of SWC paths relative to it",
    )
    _cell_options(p)
    p.add_argument(
        "--out", type=Path, required=True, metavar="CHECKPOINT", help="checkpoint file to write"
    )
    p.add_argument(
        "--preset",
        choices=PRESET_NAMES,
        default="morphology",
        help="views: morphology (33³ of 16 µm: whole arbors, for cell types; default), "
        "morphology-local (33³ of 256 nm: calibers and branch points), tiny (tests)",
    )
    length = p.add_mutually_exclusive_group()
    length.add_argument(
        "--steps",
        type=non_negative_int,
        help="optimiser steps (default 2000); 0 writes the encoder untrained (seeded random "
        "weights), the reference a trained one must beat",
    )
    length.add_argument(
        "--minutes",
        type=positive_float,
        help="train for about this long: a few steps are timed, and the step count follows",
    )
    p.add_argument(
        "--batch-size", type=positive_int, default=16, help="positive pairs per step (default 16)"
    )
    p.add_argument(
        "--learning-rate", type=positive_float, default=1e-3, help="peak AdamW rate (default 1e-3)"
    )
    p.add_argument(
        "--max-path-um",
        type=positive_float,
        help="largest distance along the skeleton between a pair's views, µm "
        "(default: half the view's width)",
    )
    p.add_argument(
        "--jitter-nm",
        type=non_negative_float,
        help="random shift of each view centre per axis, nm (default: 1/16 of the view's width)",
    )
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    run_options(p, checkpoint_every=100)
    p.set_defaults(parser=p)


def _train(args: argparse.Namespace) -> int:
    from ..evaluate.morphology import (
        TRAIN_PHASES,
        RenderConfig,
        train_morphology_encoder,
        untrained_morphology_encoder,
    )
    from ..evaluate.morphology_cells import read_table
    from ..evaluate.morphology_views import morphology_preset
    from ..exceptions import OutputExistsError
    from ..train import TrainConfig

    if args.batch_size < 2:
        args.parser.error("--batch-size must be at least 2 (the other pairs are the negatives)")
    if args.minutes is not None and args.resume:
        args.parser.error("--minutes cannot resume a run; give --steps")
    if args.steps == 0 and args.resume:
        args.parser.error("--steps 0 writes an untrained encoder; there is no run to resume")
    if args.out.exists() and not args.resume:
        raise OutputExistsError(f"{args.out} exists; pass --resume to continue its run")
    table = read_table(args.cells, where=_where(args))
    model = morphology_preset(args.preset)
    render = RenderConfig(
        min_radius_nm=args.min_radius_nm or RenderConfig.min_radius_nm,
        fixed_radius_nm=args.fixed_radius_nm,
    )
    if args.steps == 0:
        untrained_morphology_encoder(table, args.out, model, render=render, seed=args.seed)
        print(f"wrote {args.out}: an untrained {args.preset} encoder (seed {args.seed})")
        return 0
    width = max(model.field_of_view_nm)
    config = TrainConfig(
        model=model,
        steps=args.steps or 2000,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        max_path_nm=width / 2 if args.max_path_um is None else args.max_path_um * 1000.0,
        jitter_nm=width / 16 if args.jitter_nm is None else args.jitter_nm,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
        device=args.device,
    )
    log = training_log(args)
    losses: list[float] = []
    with PhaseBars(TRAIN_PHASES) as progress:
        result = train_morphology_encoder(
            table,
            args.out,
            config,
            render=render,
            minutes=args.minutes,
            resume=args.resume,
            workers=args.workers,
            progress=progress,
            on_step=lambda update: losses.append(update.loss),
            log=log,
        )
    if not losses:
        print(f"{args.out} is already trained for {result.step} steps; nothing to do")
        return 0
    print(
        f"trained {result.step - result.start_step} steps on {len(table)} cells "
        f"({result.steps_per_s:.3g} steps/s, {result.elapsed_s / 60:.1f} min), "
        f"final loss {losses[-1]:.4f}; wrote {args.out} and {log}"
    )
    return 0


# --- evaluate-morphology ------------------------------------------------------------


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = command(
        sub,
        "evaluate-morphology",
        "Classify reconstructed cells (SWC) from SegCLR embeddings of mask views averaged over "
        "radii R, beside a random forest on whole-cell morphometrics; also node compartments.",
        _evaluate,
    )
    p.add_argument(
        "--train",
        type=Path,
        required=True,
        metavar="CSV",
        help="metadata table of the training cells (all cells with --cv)",
    )
    split = p.add_mutually_exclusive_group(required=True)
    split.add_argument("--test", type=Path, metavar="CSV", help="metadata table of test cells")
    split.add_argument(
        "--cv",
        type=positive_int,
        metavar="K",
        help="stratified K-fold cross-validation over the cells of --train instead",
    )
    p.add_argument("--label", required=True, metavar="COLUMN", help="the class column")
    _cell_options(p)
    p.add_argument(
        "--max-per-class",
        type=positive_int,
        metavar="N",
        help="keep at most N random cells of each class (per table)",
    )
    p.add_argument(
        "--model", type=Path, required=True, metavar="CKPT", help="mask-only encoder checkpoint"
    )
    p.add_argument(
        "--radius-um",
        type=non_negative_float,
        nargs="+",
        default=[0.0, 50.0, 100.0, 200.0],
        metavar="R",
        help="averaging radii along the skeleton, µm (default 0 50 100 200)",
    )
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="results folder")
    p.add_argument("--force", action="store_true", help="write into a non-empty --out")
    p.add_argument(
        "--spacing-um",
        type=positive_float,
        default=10.0,
        help="spacing of embedded nodes along the cable, µm (default 10)",
    )
    p.add_argument(
        "--sites",
        type=non_negative_int,
        default=16,
        help="random sites per cell where predictions are made (default 16; 0: every node)",
    )
    p.add_argument("--head", choices=HEAD_NAMES, default="linear", help="head (default linear)")
    p.add_argument(
        "--no-compartments",
        action="store_true",
        help="skip the node compartment scores (axon / dendrite / apical)",
    )
    p.add_argument("--seed", type=non_negative_int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--batch-size", type=positive_int, default=32, help="views per batch (default 32)"
    )
    device_options(p)
    p.set_defaults(parser=p)


def _evaluate(args: argparse.Namespace) -> int:
    from ..evaluate.morphology import (
        EVALUATE_PHASES,
        MorphologyEvalConfig,
        RenderConfig,
        evaluate_morphology,
    )
    from ..evaluate.morphology_cells import read_table
    from ..evaluate.morphology_report import format_summary, write_report
    from ..evaluate.report import check_output_dir
    from ..model import load_checkpoint

    if args.cv is not None and args.cv < 2:
        args.parser.error("--cv needs at least 2 folds")
    check_output_dir(args.out, force=args.force)
    where = _where(args)
    options = {"label": args.label, "where": where, "max_per_class": args.max_per_class}
    train = read_table(args.train, **options, seed=args.seed)
    test = read_table(args.test, **options, seed=args.seed) if args.test else None
    model, extra = load_checkpoint(args.model)
    stored = RenderConfig.from_checkpoint(extra) or RenderConfig()
    render = RenderConfig(
        min_radius_nm=args.min_radius_nm or stored.min_radius_nm,
        fixed_radius_nm=args.fixed_radius_nm or stored.fixed_radius_nm,
    )
    config = MorphologyEvalConfig(
        radii_um=tuple(args.radius_um),
        spacing_um=args.spacing_um,
        sites=args.sites or None,
        head=args.head,
        folds=args.cv,
        seed=args.seed,
        batch_size=args.batch_size,
        workers=args.workers,
        device=args.device,
        compartments=not args.no_compartments,
    )
    with PhaseBars(EVALUATE_PHASES) as progress:
        report = evaluate_morphology(
            model, train, test, config=config, render=render, progress=progress
        )
    report.summary["encoder"]["checkpoint"] = str(args.model)
    written = write_report(report, args.out, force=args.force)
    print(format_summary(report.summary))
    print("wrote " + ", ".join(str(p) for p in written))
    return 0

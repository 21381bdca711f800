"""The evaluate command: a report on synthetic neuropil that the model never saw."""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from .common import command, device_options, load_model, non_negative_int, positive_int


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = command(
        sub,
        "evaluate",
        "Evaluate a SegCLR model on synthetic neuropil it never saw (seeds >= 1000): "
        "subcompartment F1 and label efficiency against a supervised CNN and hand-crafted "
        "features, cell types against the aggregation radius, out-of-distribution detection; "
        "writes report.json and PNG figures.",
        _evaluate,
    )
    p.add_argument(
        "--model",
        required=True,
        metavar="lite|CKPT",
        help="'lite' (the shipped model) or a checkpoint file written by 'napari-segclr train'",
    )
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="DIR",
        help="folder for report.json and the figures; new or empty unless --force",
    )
    p.add_argument(
        "--force", action="store_true", help="write into a non-empty --out, replacing its report"
    )
    p.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        metavar="SEED",
        help="synthetic neuropil seeds, all >= 1000 (never trained on): the first half train "
        "the heads and baselines, the others test them (default 1000 1001 1002 1003; "
        "--quick: 1000 1001)",
    )
    p.add_argument(
        "--views-per-class",
        type=positive_int,
        metavar="N",
        help="subcompartment views per class in each half (default 200; --quick: 12)",
    )
    p.add_argument(
        "--cnn-passes",
        type=positive_int,
        metavar="N",
        help="most view passes of each training of the supervised CNN baseline (default 16384; "
        "--quick: 64)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="a small run that checks the set-up, not a measurement: one seed per half, few "
        "views, short supervised training (a minute or two with lite, well under one with a "
        "tiny model)",
    )
    p.add_argument(
        "--seed", type=non_negative_int, default=0, help="seeds draws and fits (default 0)"
    )
    device_options(p)
    p.set_defaults(parser=p)


def _evaluate(args: argparse.Namespace) -> int:
    from ..evaluate import (
        EvaluationConfig,
        check_evaluation_seeds,
        check_output_dir,
        run_evaluation,
    )

    changes: dict[str, Any] = {"device": args.device, "workers": args.workers, "seed": args.seed}
    if args.views_per_class is not None:
        changes["views_per_class"] = args.views_per_class
    try:
        if args.seeds is not None:
            seeds = check_evaluation_seeds(args.seeds, name="--seeds")
            if len(seeds) < 2:
                raise ValueError("--seeds needs at least two seeds: one to train on, one to test")
            half = (len(seeds) + 1) // 2
            changes.update(train_seeds=seeds[:half], test_seeds=seeds[half:])
        config = EvaluationConfig.quick(**changes) if args.quick else EvaluationConfig(**changes)
        if args.cnn_passes is not None:
            passes = args.cnn_passes
            cnn = replace(
                config.cnn, max_passes=passes, min_passes=min(config.cnn.min_passes, passes)
            )
            config = replace(config, cnn=cnn)
    except ValueError as error:
        args.parser.error(str(error))
    check_output_dir(args.out, force=args.force)  # before the model is loaded or anything rendered
    model = load_model(args.model)
    started = time.perf_counter()
    with _PhaseBars() as progress:
        report = run_evaluation(
            model, args.out, config, model_name=args.model, force=args.force, progress=progress
        )
    print(f"wrote {args.out}/report.json and figures in {time.perf_counter() - started:.0f} s")
    for bar in report["bars"]:
        print(f"{bar['verdict'].upper():>14}  {bar['what']}: {bar['value']} (bar {bar['bar']})")
    return 0


class _PhaseBars:
    """``progress(phase, done, total)`` as one tqdm bar per phase."""

    def __init__(self) -> None:
        self._phase: str | None = None
        self._bar: Any = None

    def __enter__(self) -> _PhaseBars:
        return self

    def __call__(self, phase: str, done: int, total: int) -> None:
        from tqdm import tqdm

        if phase != self._phase:
            self._close()
            self._phase = phase
            self._bar = tqdm(total=total, desc=phase)
        self._bar.total = total
        self._bar.update(done - self._bar.n)

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def __exit__(self, *exc: object) -> None:
        self._close()

"""What every benchmark report starts with: when, where and how loaded the machine was."""

from __future__ import annotations

import argparse
import os
import platform
from datetime import UTC, datetime


def report_header(benchmark: str, *, threads: int | None = None) -> dict:
    """The first keys of a benchmark's JSON report.

    The cores may be shared: a 1-minute load above the thread count at the start
    means the timings that follow were contended.
    """
    header = {
        "benchmark": benchmark,
        "started_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    if threads is not None:
        header["torch_threads"] = threads
    header["load_average_1min_start"] = round(os.getloadavg()[0], 2)
    return header


def add_held_out_options(p: argparse.ArgumentParser, *, train: list[int], test: list[int]) -> None:
    """Options of benchmarks on held-out synthetic seeds: the two splits, views per class,
    volume size, torch threads and the seed of the draws (see :func:`check_held_out`)."""
    from napari_segclr.evaluate import EvaluationConfig

    p.add_argument("--seeds-train", type=int, nargs="+", default=train)
    p.add_argument("--seeds-test", type=int, nargs="+", default=test)
    p.add_argument(
        "--per-class", type=int, default=200, help="views per class in each split (default 200)"
    )
    p.add_argument(
        "--extent-um",
        type=float,
        nargs=3,
        default=EvaluationConfig.volume_um,
        help="volume size (z, y, x) in µm (default: the evaluation's, 12.8 25.6 25.6)",
    )
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--seed", type=int, default=0, help="seeds the draws, initialisations and fits")


def check_held_out(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse seeds training may have used, a seed in both splits, too few views per class."""
    from napari_segclr.evaluate import FIRST_EVALUATION_SEED

    if min(args.seeds_train + args.seeds_test) < FIRST_EVALUATION_SEED:
        p.error(f"seeds below {FIRST_EVALUATION_SEED} may have been trained on")
    if set(args.seeds_train) & set(args.seeds_test):
        p.error("a seed is in both --seeds-train and --seeds-test")
    if args.per_class < max(len(args.seeds_train), len(args.seeds_test)):
        p.error("--per-class must be at least the number of seeds of each split")

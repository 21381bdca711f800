"""What the command modules share: subcommand set-up, options, progress bars."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

PROG = "napari-segclr"


def command(
    sub: argparse._SubParsersAction,
    name: str,
    summary: str,
    run: Callable[[argparse.Namespace], int],
) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=summary, description=summary)
    parser.set_defaults(run=run)
    return parser


def voxel_size_option(parser: argparse.ArgumentParser, flag: str, what: str) -> None:
    parser.add_argument(
        flag,
        nargs=3,
        type=float,
        metavar=("Z", "Y", "X"),
        help=f"voxel size of {what} in nm (overrides the file metadata; needed where it has none)",
    )


class ProgressBar:
    """A tqdm bar usable as a library ``progress(done, total)`` callback."""

    def __init__(self, desc: str) -> None:
        self.desc = desc
        self._bar = None

    def __enter__(self) -> Callable[[int, int], None]:
        return self

    def __call__(self, done: int, total: int) -> None:
        from tqdm import tqdm

        if self._bar is None:
            self._bar = tqdm(total=total, desc=self.desc, unit="chunk")
        self._bar.n = done
        self._bar.refresh()

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text}")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def segment_id(text: str) -> int:
    value = int(text)
    if not 0 < value < 2**64:
        raise argparse.ArgumentTypeError(f"segment ids are integers in [1, 2**64), got {text}")
    return value


def device_name(text: str) -> str:
    from ..embed import resolve_device

    try:
        resolve_device(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def volume_options(parser: argparse._ActionsContainer, *, required: bool) -> None:
    parser.add_argument(
        "--em",
        required=required,
        metavar="PATH",
        help="EM volume: TIFF, HDF5 (file.h5:/dataset), Zarr, OME-Zarr, N5 or precomputed",
    )
    parser.add_argument(
        "--seg", required=required, metavar="PATH", help="segmentation of the EM (same formats)"
    )
    voxel_size_option(parser, "--em-voxel-size", "the EM")
    voxel_size_option(parser, "--seg-voxel-size", "the segmentation")


def device_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device",
        type=device_name,
        default="auto",
        help="auto (CUDA when available, default), cpu, cuda or cuda:N",
    )
    parser.add_argument(
        "--workers",
        type=non_negative_int,
        default=1,
        help="threads cutting views ahead of the network (default 1; 0: none)",
    )


def open_dataset(args: argparse.Namespace) -> Any:
    from ..io import open_dataset

    return open_dataset(
        absolute(args.em),
        absolute(args.seg),
        em_voxel_size=args.em_voxel_size,
        seg_voxel_size=args.seg_voxel_size,
    )


def absolute(spec: str) -> str:
    """A local volume path made absolute, so stores and checkpoints name the data alike
    from any working folder; URLs stay as written."""
    from ..io.source import parse_source

    source = parse_source(spec)
    if source.is_url or source.scheme is not None:
        return spec
    location = str(Path(source.location).resolve())
    return f"{location}:{source.inner}" if source.inner else location


def load_model(name: str) -> Any:
    if name == "lite":
        from ..model.shipped import load_shipped_model

        return load_shipped_model()[0]
    from ..model import load_checkpoint

    return load_checkpoint(Path(name).expanduser())[0]


class PhaseBars:
    """``progress(done, total)`` for work in phases: a new tqdm bar whenever the count restarts."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self._names = names
        self._phase = -1
        self._bar = None
        self._last = (0, -1)

    def __enter__(self) -> PhaseBars:
        return self

    def __call__(self, done: int, total: int) -> None:
        from tqdm import tqdm

        if self._bar is None or total != self._last[1] or done < self._last[0]:
            self._close()
            self._phase = min(self._phase + 1, len(self._names) - 1)
            self._bar = tqdm(total=total, desc=self._names[self._phase])
        self._bar.update(done - self._bar.n)
        self._last = (done, total)

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def __exit__(self, *exc: object) -> None:
        self._close()


class LossBar:
    """A tqdm bar over steps that shows the latest loss."""

    def __init__(self) -> None:
        self._bar = None

    def __enter__(self) -> LossBar:
        return self

    def __call__(self, update: Any) -> None:
        from tqdm import tqdm

        if self._bar is None:
            self._bar = tqdm(total=update.total, initial=update.step - 1, desc="training")
        self._bar.set_postfix(loss=f"{update.loss:.4f}", refresh=False)
        self._bar.update(update.step - self._bar.n)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()


def run_options(parser: argparse.ArgumentParser, *, checkpoint_every: int) -> None:
    """--seed, --checkpoint-every, --log and the device options of a training command."""
    parser.add_argument("--seed", type=non_negative_int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--checkpoint-every",
        type=positive_int,
        default=checkpoint_every,
        help=f"write the checkpoint every this many steps (default {checkpoint_every})",
    )
    parser.add_argument(
        "--log",
        type=Path,
        metavar="CSV",
        help="loss log, one row per step (default: beside --out, as NAME.loss.csv)",
    )
    device_options(parser)


def training_log(args: argparse.Namespace) -> Path:
    """The loss log of a training command: --log, or NAME.loss.csv beside --out."""
    from ..runs import loss_log_path

    return args.log or loss_log_path(args.out)


def cluster_options(parser: argparse.ArgumentParser, description: str, *, reads: str) -> None:
    """``--scheduler ADDRESS`` or ``--local-workers N``: run the job on Dask distributed.

    ``reads`` names what the workers open at the paths given.
    """
    group = parser.add_argument_group("cluster", description)
    where = group.add_mutually_exclusive_group()
    where.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help=f"a running Dask scheduler (e.g. tcp://host:8786) whose workers can read {reads} "
        "at the paths given",
    )
    where.add_argument(
        "--local-workers",
        type=positive_int,
        metavar="N",
        help="start a Dask cluster of N worker processes on this machine",
    )
    parser.set_defaults(parser=parser)


@contextmanager
def dask_client(args: argparse.Namespace) -> Iterator[Any]:
    """A client of the scheduler asked for, or of a local cluster of --local-workers."""
    if args.scheduler is None:
        from ..cluster import local_client

        with local_client(args.local_workers) as client:
            yield client
        return
    from distributed import Client

    try:
        client = Client(args.scheduler)
    except (OSError, ValueError) as error:
        args.parser.error(f"--scheduler {args.scheduler}: cannot connect ({error})")
    with client:
        yield client

"""What the command modules share: subcommand set-up, options, progress bars."""

from __future__ import annotations

import argparse
from collections.abc import Callable

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

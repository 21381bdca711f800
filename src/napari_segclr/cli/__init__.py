"""The ``napari-segclr`` command line: thin wrappers over the library.

Each subcommand parses its options, calls one library function and prints the
result. A problem with the user's input (a ``SegclrError``) is printed as one
line and exits with status 2; no traceback reaches the user.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..exceptions import SegclrError
from . import data, evaluate, heads, mae, morphology, segclr, segment
from .common import PROG


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except SegclrError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="SegCLR embeddings and MAE segmentation for 3D EM connectomics.",
    )
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for module in (data, segclr, heads, evaluate, morphology, mae, segment):
        module.add_commands(sub)
    return parser

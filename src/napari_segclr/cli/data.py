"""Data commands: the demo, describing volumes, rendering synthetic neuropil."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import ProgressBar, command, voxel_size_option


def add_commands(sub: argparse._SubParsersAction) -> None:
    for add in (_add_demo, _add_info, _add_synth):
        add(sub)


# --- demo -------------------------------------------------------------------


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = command(sub, "demo", "Open napari with the plugin docked on the synthetic sample.", _demo)
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic sample (default 0)")
    p.add_argument(
        "--screenshot",
        type=Path,
        metavar="PNG",
        help="save a screenshot of the window to PNG and quit (no interactive session)",
    )


def _demo(args: argparse.Namespace) -> int:
    import napari

    from ..widgets.loader import LoaderWidget

    viewer = napari.Viewer(title="napari-segclr")
    viewer.window.resize(1400, 900)
    _, widget = viewer.window.add_plugin_dock_widget("napari-segclr", "Loader")
    assert isinstance(widget, LoaderWidget)
    if args.screenshot is None:
        widget.load_sample(seed=args.seed)
        napari.run()
        return 0
    widget.load_sample(seed=args.seed, background=False)
    viewer.reset_view()
    viewer.screenshot(str(args.screenshot), canvas_only=False)
    viewer.close()
    print(f"saved {args.screenshot}")
    return 0


# --- info -------------------------------------------------------------------


def _add_info(sub: argparse._SubParsersAction) -> None:
    p = command(sub, "info", "Describe a volume: format, shape, dtype, voxel size, levels.", _info)
    p.add_argument("path", help="TIFF, HDF5 (file.h5:/dataset), Zarr, OME-Zarr, N5 or precomputed")
    voxel_size_option(p, "--voxel-size", "the volume")


def _info(args: argparse.Namespace) -> int:
    from ..io import describe, open_volume

    print(describe(open_volume(args.path, voxel_size=args.voxel_size)))
    return 0


# --- synth ------------------------------------------------------------------


def _add_synth(sub: argparse._SubParsersAction) -> None:
    p = command(
        sub,
        "synth",
        "Render synthetic neuropil with ground truth to OME-Zarr volumes and CSV tables.",
        _synth,
    )
    p.add_argument(
        "out", type=Path, help="output folder (created; must not exist unless --overwrite)"
    )
    p.add_argument(
        "--shape",
        nargs=3,
        type=int,
        default=(128, 256, 256),
        metavar=("Z", "Y", "X"),
        help="volume shape in voxels (default 128 256 256)",
    )
    p.add_argument(
        "--voxel-size",
        nargs=3,
        type=float,
        default=(32.0, 32.0, 32.0),
        metavar=("Z", "Y", "X"),
        help="voxel size in nm (default 32 32 32)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--merge-rate", type=float, default=0.0, help="rate of false merges (default 0)")
    p.add_argument("--split-rate", type=float, default=0.0, help="rate of false splits (default 0)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")


def _synth(args: argparse.Namespace) -> int:
    from ..synthetic import Neuropil, NeuropilConfig, write_neuropil

    config = NeuropilConfig(
        shape=tuple(args.shape),
        voxel_size=tuple(args.voxel_size),
        seed=args.seed,
        merge_rate=args.merge_rate,
        split_rate=args.split_rate,
    )
    with ProgressBar("rendering") as progress:
        write_neuropil(Neuropil(config), args.out, overwrite=args.overwrite, progress=progress)
    print(f"wrote {args.out}")
    return 0

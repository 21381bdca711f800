"""A plain-text summary of a volume, for the command line and logs."""

from __future__ import annotations

from collections.abc import Iterable

from ..exceptions import SegclrError
from .formats import backend_for
from .source import parse_source
from .volume import Volume

_FORMAT_NAMES = {
    "tiff": "TIFF",
    "hdf5": "HDF5",
    "zarr": "Zarr",
    "n5": "N5",
    "precomputed": "neuroglancer precomputed",
}


def describe(volume: Volume) -> str:
    """Source, format, kind, shape, dtype, voxel size, offset, extent and levels."""
    lo, hi = volume.extent_nm
    rows = [
        ("format", _format_name(volume.source)),
        ("kind", volume.kind),
        ("shape", f"{_times(volume.shape)} voxels (z, y, x)"),
        ("dtype", str(volume.dtype)),
        ("voxel size", f"{_times(volume.voxel_size)} nm"),
        ("offset", f"{_times(volume.offset)} nm"),
        ("extent", f"{_times((hi - lo) / 1e3)} µm"),
    ]
    if len(volume.levels) > 1:
        levels = [
            f"{i}: {_times(level.shape)} at {_times(size)} nm"
            for i, (level, size) in enumerate(
                zip(volume.levels, volume.level_voxel_sizes, strict=True)
            )
        ]
        rows.append(("levels", "; ".join(levels)))
    return "\n".join([volume.source, *(f"  {key:<11} {value}" for key, value in rows)])


def _format_name(spec: str) -> str:
    try:
        return _FORMAT_NAMES[backend_for(parse_source(spec)).name]
    except SegclrError:
        return "in memory"


def _times(values: Iterable[float]) -> str:
    return " × ".join(f"{float(v):g}" for v in values)

"""napari reader: EM volumes and segmentations as lazy Image / Labels layers.

Layers are placed in nm (``scale`` = voxel size, ``translate`` = offset), so an
EM volume and a segmentation at different voxel sizes line up. A file without
a voxel size opens at 1 nm with ``metadata["voxel_size_known"] = False``, for
the loader widget to ask the user. No napari import: layer data are tuples.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np

from .exceptions import VoxelSizeError
from .io import can_open, open_volume
from .io.source import parse_source
from .layers import LayerData, volume_layer

# The reader contribution's patterns in napari.yaml (with accepts_directories:
# true); neuroglancer precomputed directories have no suffix and need "*".
FILENAME_PATTERNS = (
    "*.tif",
    "*.tiff",
    "*.h5",
    "*.hdf5",
    "*.hdf",
    "*.zarr",
    "*.n5",
    "precomputed://*",
    "*",
)

PathOrPaths = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]


def get_reader(path: PathOrPaths) -> Callable[[PathOrPaths], list[LayerData]] | None:
    """The reader for ``path`` (one path or several), or None if any is no volume."""
    paths = _as_list(path)
    if not paths or not all(can_open(p) for p in paths):
        return None
    return read_volumes


def read_volumes(path: PathOrPaths) -> list[LayerData]:
    """One lazy layer per path: ``(data, kwargs, "image" | "labels")``."""
    return [_read_one(p) for p in _as_list(path)]


def _read_one(path: str | os.PathLike[str]) -> LayerData:
    try:
        volume, known = open_volume(path), True
    except VoxelSizeError:
        volume, known = open_volume(path, voxel_size=(1.0, 1.0, 1.0)), False
    is_8bit_image = volume.kind == "image" and volume.dtype == np.uint8
    extra = {"contrast_limits": (0, 255)} if is_8bit_image else {}
    return volume_layer(
        volume,
        name=parse_source(path).name,
        metadata={
            "voxel_size": volume.voxel_size,
            "voxel_size_known": known,
            "source": volume.source,
        },
        **extra,
    )


def _as_list(path: PathOrPaths) -> list[str | os.PathLike[str]]:
    return [path] if isinstance(path, (str, os.PathLike)) else list(path)

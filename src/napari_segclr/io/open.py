"""Open any supported volume file as a lazy :class:`Volume`."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from ..exceptions import SegclrError, VoxelSizeError
from .formats import backend_for
from .formats.base import as_3d
from .source import parse_source
from .volume import Kind, Volume, as_vec3, as_voxel_size

_KINDS = ("image", "labels")


def open_volume(
    path: str | os.PathLike[str],
    *,
    kind: Kind | None = None,
    voxel_size: float | Sequence[float] | None = None,
    offset: float | Sequence[float] | None = None,
) -> Volume:
    """Open an EM volume or a segmentation lazily: only crops asked for are read.

    Parameters
    ----------
    path
        A TIFF stack, ``file.h5:/dataset``, a Zarr array or OME-Zarr image
        (``store.zarr``, ``store.zarr/path``), ``container.n5/dataset``, or a
        neuroglancer precomputed volume (a directory with an ``info`` file or
        ``precomputed://…``; ``:key`` picks a scale).
    kind
        "image" or "labels"; None infers it from the store's metadata, else
        from the dtype (float or 8-bit → image, other integers → labels).
    voxel_size
        (z, y, x) in nm, or one number for isotropic voxels. Overrides the
        file's metadata (whose offset and coarser levels scale along with it,
        keeping their place in voxels); required when the file has none.
    offset
        Centre of the first voxel in nm (z, y, x); overrides the metadata.

    Raises
    ------
    VolumeNotFoundError, UnknownFormatError, DatasetNotFoundError,
    VoxelSizeError, SegmentationDtypeError, ShapeMismatchError
        With a one-line message naming the file.

    Examples
    --------
    >>> em = open_volume("raw.tif", voxel_size=(10, 10, 10))  # doctest: +SKIP
    >>> em.read((slice(0, 8), slice(0, 64), slice(0, 64))).shape  # doctest: +SKIP
    (8, 64, 64)
    """
    if kind not in (None, *_KINDS):
        raise ValueError(f"kind must be 'image', 'labels' or None, got {kind!r}")
    source = parse_source(path)
    opened = backend_for(source).open(source)
    levels = tuple(as_3d(level, source.spec) for level in opened.levels)
    scales = np.asarray(opened.scales, dtype=float)
    shifts = np.asarray(opened.translations, dtype=float)
    if voxel_size is not None:
        given = as_voxel_size(voxel_size, source.spec)
        # Metadata that only gives ratios (levels, offset in voxels) is scaled to the given size.
        ratio = np.asarray(given) / as_voxel_size(scales[0], f"{source.spec} (its metadata)")
        scales, shifts = scales * ratio, shifts * ratio
    elif not opened.units_known:
        raise VoxelSizeError(
            f"{source.spec}: the voxel size is missing from this file; give it in nm as "
            "voxel_size=(z, y, x), or --voxel-size Z Y X on the command line"
        )
    if offset is not None:
        shifts = shifts + (np.asarray(as_vec3(offset, f"offset of {source.spec}")) - shifts[0])
    sizes = tuple(as_vec3(s, f"voxel size of {source.spec}") for s in scales)
    offsets = tuple(as_vec3(s, f"offset of {source.spec}") for s in shifts)
    return Volume(
        levels[0],
        sizes[0],
        offsets[0],
        kind=kind or opened.kind or infer_kind(levels[0].dtype),
        source=source.spec,
        levels=levels,
        level_voxel_sizes=sizes,
        level_offsets=offsets,
    )


def infer_kind(dtype: np.dtype) -> Kind:
    """Float and 8-bit data are images; wider integers are segment ids."""
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer) and dtype.itemsize > 1:
        return "labels"
    return "image"


def can_open(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` looks like a volume some backend reads (no data is read)."""
    try:
        backend_for(parse_source(path))
    except (SegclrError, OSError, ValueError):
        return False
    return True

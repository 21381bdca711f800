"""Zarr v2 / v3 arrays and OME-Zarr (NGFF 0.4 / 0.5) multiscale images.

A Zarr array reads only the chunks a crop touches, so it serves as the lazy
array itself. An array that is one level of an OME-Zarr image (``image.zarr/0``)
takes its voxel size and offset from the image's metadata.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import zarr

from ...exceptions import DatasetNotFoundError, ShapeMismatchError, UnknownFormatError
from ..ome import Multiscale, read_multiscale
from ..source import Source
from .base import AxesView, Opened, missing_dataset, voxel_size_from_attrs


def open_source(source: Source) -> Opened:
    try:
        node = zarr.open(store=source.location, path=source.inner, mode="r")
    except FileNotFoundError:  # zarr's "node not found" errors subclass it
        if source.inner:
            names = _candidates(source.location, source.spec)
            raise DatasetNotFoundError(missing_dataset(source, names, "store.zarr/name")) from None
        raise UnknownFormatError(f"{source.spec}: not a Zarr array or group") from None
    except (ValueError, TypeError) as err:  # includes malformed JSON
        raise UnknownFormatError(f"{source.spec}: unreadable Zarr metadata ({err})") from None
    if isinstance(node, zarr.Group):
        multiscale = read_multiscale(node.attrs.asdict(), source.spec)
        if multiscale is not None:
            return _open_multiscale(node, multiscale, source.spec)
        names = _candidates(node, source.spec)
        if len(names) != 1:
            raise DatasetNotFoundError(missing_dataset(source, names, "store.zarr/name"))
        inner = f"{source.inner}/{names[0]}".strip("/")
        return open_source(Source(source.spec, source.location, inner))
    level = _multiscale_level(Path(source.location, source.inner), source.spec)
    if level is not None:
        multiscale, index = level
        return Opened(
            (_space_view(node, multiscale, source.spec),),
            (multiscale.scales[index],),
            (multiscale.translations[index],),
            multiscale.units_known,
            multiscale.kind,
        )
    voxel_size, offset = voxel_size_from_attrs(node.attrs.asdict())
    return Opened.single(node, voxel_size, offset)


def _open_multiscale(group: zarr.Group, multiscale: Multiscale, spec: str) -> Opened:
    levels = []
    for path in multiscale.paths:
        array = group.get(path)
        if not isinstance(array, zarr.Array):
            raise UnknownFormatError(f"{spec}: OME-Zarr level '{path}' is missing")
        levels.append(_space_view(array, multiscale, spec))
    return Opened(
        tuple(levels),
        multiscale.scales,
        multiscale.translations,
        multiscale.units_known,
        multiscale.kind,
    )


def _space_view(array: zarr.Array, multiscale: Multiscale, spec: str) -> Any:
    """The (z, y, x) axes of an OME-Zarr level; other axes (time, channel) must be 1 long."""
    others = [n for i, n in enumerate(array.shape) if i not in multiscale.keep]
    if any(n != 1 for n in others):
        raise ShapeMismatchError(
            f"{spec}: has shape {array.shape}; only one time point and one channel can be read"
        )
    if multiscale.keep == tuple(range(len(array.shape))):
        return array
    return AxesView(array, multiscale.keep)


def _multiscale_level(array_dir: Path, spec: str) -> tuple[Multiscale, int] | None:
    """The OME-Zarr image an array is a level of, if its parent group describes one."""
    parent = array_dir.parent
    if not any((parent / name).is_file() for name in ("zarr.json", ".zattrs")):
        return None
    try:
        group = zarr.open_group(str(parent), mode="r")
    except (FileNotFoundError, ValueError):
        return None
    multiscale = read_multiscale(group.attrs.asdict(), spec)
    if multiscale is None or array_dir.name not in multiscale.paths:
        return None
    return multiscale, multiscale.paths.index(array_dir.name)


def _candidates(group: zarr.Group | str, spec: str) -> list[str]:
    """Arrays and multiscale images in a group, not counting the levels of an image."""
    if isinstance(group, str):
        try:
            group = zarr.open_group(group, mode="r")
        except (FileNotFoundError, ValueError):
            return []
    members = list(group.members(max_depth=None))
    images = [
        name
        for name, node in members
        if isinstance(node, zarr.Group) and read_multiscale(node.attrs.asdict(), spec) is not None
    ]
    arrays = [
        name
        for name, node in members
        if isinstance(node, zarr.Array) and not any(name.startswith(f"{i}/") for i in images)
    ]
    return sorted(images + arrays)

"""TIFF stacks (one page per z slice; ImageJ and OME-TIFF metadata), read lazily.

A crop decodes only the pages (and, in tiled files, the tiles) it touches:
tifffile exposes the file as a Zarr store whose chunks are pages or tiles.
"""

from __future__ import annotations

import weakref
import xml.etree.ElementTree as ET
from typing import Any

import numpy as np
import tifffile
import zarr

from ...exceptions import DatasetNotFoundError, UnknownFormatError
from ..source import Source
from ..units import nm_per_unit
from ..volume import Vec3
from .base import ArrayAdapter, Opened, Reopenable


class TiffArray(ArrayAdapter, Reopenable):
    """The first image series of a TIFF file as a lazy array."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        array = self.handle
        self.shape = tuple(int(n) for n in array.shape)
        self.dtype = np.dtype(array.dtype)
        self.chunks = tuple(int(n) for n in array.chunks)

    def _open(self) -> zarr.Array:
        tif = tifffile.TiffFile(self.path)
        weakref.finalize(self, tif.close)
        return zarr.open_array(tif.series[0].aszarr(), mode="r")

    def __getitem__(self, key: tuple[slice, ...]) -> np.ndarray:
        return np.asarray(self.handle[key])


def open_source(source: Source) -> Opened:
    if source.inner:
        raise DatasetNotFoundError(
            f"{source.spec}: a TIFF file holds one volume, it has no dataset '{source.inner}'"
        )
    try:
        with tifffile.TiffFile(source.location) as tif:
            if not tif.series:
                raise tifffile.TiffFileError("no image in it")
            voxel_size = _voxel_size(tif)
        array = TiffArray(source.location)
    except (tifffile.TiffFileError, ValueError, KeyError) as err:
        raise UnknownFormatError(f"{source.spec}: not a readable TIFF file ({err})") from None
    return Opened.single(array, voxel_size)


def _voxel_size(tif: tifffile.TiffFile) -> Vec3 | None:
    if tif.is_ome and tif.ome_metadata:
        return _ome_voxel_size(tif.ome_metadata)
    if tif.is_imagej and tif.imagej_metadata:
        return _imagej_voxel_size(tif.imagej_metadata, tif.pages.first)
    return None


def _imagej_voxel_size(meta: dict[str, Any], page: tifffile.TiffPage) -> Vec3 | None:
    """ImageJ: x/y from the resolution tags (pixels per unit), z from ``spacing``."""
    scale = nm_per_unit(meta.get("unit"))
    spacing = meta.get("spacing")
    xres, yres = page.tags.get("XResolution"), page.tags.get("YResolution")
    if scale is None or spacing is None or xres is None or yres is None:
        return None
    (xn, xd), (yn, yd) = xres.value, yres.value
    if xn == 0 or yn == 0:
        return None
    return (float(spacing) * scale, yd / yn * scale, xd / xn * scale)


def _ome_voxel_size(xml: str) -> Vec3 | None:
    """OME-XML: ``PhysicalSize{X,Y,Z}`` of the first image (µm unless a unit says)."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None
    pixels = next((el for el in root.iter() if el.tag.endswith("Pixels")), None)
    if pixels is None:
        return None
    sizes = []
    for axis in "ZYX":
        value = pixels.get(f"PhysicalSize{axis}")
        scale = nm_per_unit(pixels.get(f"PhysicalSize{axis}Unit", "µm"))
        if value is None or scale is None:
            return None
        sizes.append(float(value) * scale)
    return (sizes[0], sizes[1], sizes[2])

"""The real FIB-SEM TIFF stacks in the shared data folder, opened lazily."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_segclr.exceptions import VoxelSizeError
from napari_segclr.io import open_volume

REAL = [
    ("fib25/sample2_raw_z000-159.tif", (160, 250, 250), np.uint8, "image"),
    ("fib25/sample2_labels_z000-159.tif", (160, 250, 250), np.uint32, "labels"),
    ("fib25/sample2_ffn_z000-159.tif", (160, 250, 250), np.uint16, "labels"),
    ("gala/train_raw.tif", (50, 100, 200), np.uint8, "image"),
    ("gala/train_gt.tif", (50, 100, 200), np.uint32, "labels"),
]


@pytest.mark.parametrize(("name", "shape", "dtype", "kind"), REAL)
def test_real_tiff_shape_dtype_kind_and_crop(shared_data, name, shape, dtype, kind):
    path = shared_data / name
    volume = open_volume(path, voxel_size=(10, 10, 10))
    assert volume.shape == shape
    assert volume.dtype == dtype
    assert volume.kind == kind
    assert volume.voxel_size == (10.0, 10.0, 10.0)
    assert volume.offset == (0.0, 0.0, 0.0)
    # tifffile decodes the same pages in full: the crop must match it exactly.
    pages = tifffile.imread(path, key=range(7, 11))
    crop = volume.read((slice(7, 11), slice(20, 70), slice(33, 99)))
    np.testing.assert_array_equal(crop, pages[:, 20:70, 33:99])


def test_real_tiff_without_voxel_size_says_how_to_give_it(shared_data):
    path = shared_data / "gala" / "train_raw.tif"
    with pytest.raises(VoxelSizeError) as err:
        open_volume(path)
    message = str(err.value)
    assert str(path) in message and "missing" in message
    assert "voxel_size=(z, y, x)" in message and "--voxel-size Z Y X" in message


def test_real_tiff_anisotropic_voxel_size_and_offset(shared_data):
    volume = open_volume(
        shared_data / "gala" / "train_gt.tif", voxel_size=(40, 8, 8), offset=(100, 0, -50)
    )
    assert volume.voxel_size == (40.0, 8.0, 8.0)
    assert volume.offset == (100.0, 0.0, -50.0)
    lo, hi = volume.extent_nm
    np.testing.assert_allclose(lo, [80, -4, -54])
    np.testing.assert_allclose(hi - lo, [50 * 40, 100 * 8, 200 * 8])


def test_real_tiff_crop_reads_only_its_pages(shared_data, bytes_read):
    path = shared_data / "fib25" / "sample2_raw_z000-159.tif"
    volume = open_volume(path, voxel_size=10)
    volume.read((slice(0, 1), slice(0, 8), slice(0, 8)))  # warm up: imports, codecs
    before = bytes_read()
    crop = volume.read((slice(80, 84), slice(0, 100), slice(0, 100)))
    spent = bytes_read() - before
    assert crop.shape == (4, 100, 100)
    # 4 of 160 zlib pages: about 2.5 % of the file; the whole file would be 100 %.
    assert 0 < spent < 0.05 * path.stat().st_size

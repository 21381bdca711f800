"""The napari reader contribution: lazy layer data tuples, no napari needed."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from napari_segclr._reader import FILENAME_PATTERNS, get_reader
from napari_segclr.io import Volume, write_ome_zarr


def test_not_a_volume_gets_no_reader(tmp_path, shared_data):
    (tmp_path / "notes.txt").write_text("hello")
    assert get_reader(str(tmp_path / "notes.txt")) is None
    assert get_reader(str(tmp_path / "missing.tif")) is None
    assert get_reader(str(tmp_path)) is None  # a plain folder
    assert get_reader([str(shared_data / "gala" / "train_raw.tif"), str(tmp_path / "x")]) is None


def test_tiff_without_voxel_size_opens_at_one_nm_and_says_so(shared_data):
    path = str(shared_data / "gala" / "train_raw.tif")
    reader = get_reader(path)
    assert reader is not None
    ((data, kwargs, layer_type),) = reader(path)
    assert layer_type == "image"
    assert isinstance(data, da.Array) and data.shape == (50, 100, 200)
    assert kwargs["name"] == "train_raw"
    assert tuple(kwargs["scale"]) == (1.0, 1.0, 1.0)
    assert tuple(kwargs["translate"]) == (0.0, 0.0, 0.0)
    assert kwargs["metadata"]["voxel_size_known"] is False
    assert kwargs["metadata"]["source"] == path
    np.testing.assert_array_equal(np.asarray(data[10, :3, :3]).shape, (3, 3))


def test_several_tiffs_give_image_and_labels(shared_data):
    paths = [str(shared_data / "gala" / n) for n in ("train_raw.tif", "train_gt.tif")]
    layers = get_reader(paths)(paths)
    assert [layer_type for _, _, layer_type in layers] == ["image", "labels"]


def test_ome_zarr_multiscale_layer(tmp_path):
    fine = np.arange(16 * 16 * 16, dtype=np.uint32).reshape(16, 16, 16)
    volume = Volume(
        fine,
        voxel_size=(40, 8, 8),
        offset=(400, 80, 0),
        kind="labels",
        source="memory",
        levels=(fine, fine[::2, ::2, ::2]),
        level_voxel_sizes=((40, 8, 8), (80, 16, 16)),
    )
    path = str(tmp_path / "cells.ome.zarr")
    write_ome_zarr(volume, path, chunks=(8, 8, 8))
    ((data, kwargs, layer_type),) = get_reader(path)(path)
    assert layer_type == "labels"
    assert kwargs["multiscale"] is True and [level.shape for level in data] == [
        (16, 16, 16),
        (8, 8, 8),
    ]
    assert tuple(kwargs["scale"]) == (40.0, 8.0, 8.0)
    assert tuple(kwargs["translate"]) == (400.0, 80.0, 0.0)
    assert kwargs["metadata"]["voxel_size"] == (40.0, 8.0, 8.0)
    assert kwargs["metadata"]["voxel_size_known"] is True
    assert kwargs["name"] == "cells"
    np.testing.assert_array_equal(
        np.asarray(data[1][2:4, 0:2, 5]), fine[::2, ::2, ::2][2:4, 0:2, 5]
    )


@pytest.mark.parametrize("name", ["a.tif", "a.TIFF", "a.h5", "a.zarr", "b.n5", "vol"])
def test_patterns_cover_the_formats(name):
    from fnmatch import fnmatch

    assert any(fnmatch(name.lower(), p) for p in FILENAME_PATTERNS)

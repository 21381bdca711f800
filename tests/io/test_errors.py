"""Every bad input gives one line that names the file and the problem."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import tensorstore as ts
import tifffile
import zarr

from napari_segclr.exceptions import (
    DatasetNotFoundError,
    SegmentationDtypeError,
    ShapeMismatchError,
    UnknownFormatError,
    VolumeNotFoundError,
    VoxelSizeError,
)
from napari_segclr.io import open_dataset, open_volume


def _message(error_type, spec, **kwargs) -> str:
    with pytest.raises(error_type) as err:
        open_volume(spec, **kwargs)
    message = str(err.value)
    assert "\n" not in message and "Traceback" not in message
    assert str(spec) in message, message
    return message


@pytest.fixture
def h5_two(tmp_path):
    path = tmp_path / "two.h5"
    with h5py.File(path, "w") as f:
        f["volumes/raw"] = np.zeros((2, 3, 4), np.uint8)
        f["volumes/labels"] = np.zeros((2, 3, 4), np.uint64)
        f["probabilities"] = np.zeros((2, 3, 4), np.float32)
        f["image2d"] = np.zeros((3, 4), np.uint8)
        f["channels"] = np.zeros((2, 2, 3, 4), np.uint8)
        f["bad_resolution"] = np.zeros((2, 3, 4), np.uint8)
        f["bad_resolution"].attrs["resolution"] = (0.0, 4.0, 4.0)
    return path


def test_missing_path(tmp_path):
    for spec in (tmp_path / "nope.tif", f"{tmp_path}/nope.h5:/raw", tmp_path / "a" / "b.zarr"):
        assert "no such file" in _message(VolumeNotFoundError, spec)


def test_unknown_format(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "folder").mkdir()
    (tmp_path / "broken.tif").write_bytes(b"II*\x00 not really a tiff")
    assert "not a volume format" in _message(UnknownFormatError, tmp_path / "notes.txt")
    assert "not a volume format" in _message(UnknownFormatError, tmp_path / "folder")
    assert "not a readable TIFF" in _message(UnknownFormatError, tmp_path / "broken.tif")


def test_dataset_not_found_lists_what_is_there(tmp_path, h5_two):
    message = _message(DatasetNotFoundError, f"{h5_two}:/volumes/nope")
    assert "'volumes/nope'" in message and "volumes/raw" in message and "volumes/labels" in message
    assert "several datasets" in _message(DatasetNotFoundError, h5_two)

    store = tmp_path / "s.zarr"
    group = zarr.open_group(store, mode="w")
    group.create_array("raw", shape=(2, 2, 2), dtype="u1")
    group.create_array("seg", shape=(2, 2, 2), dtype="u8")
    for spec in (f"{store}/nope", f"{store}:nope"):
        assert "raw, seg" in _message(DatasetNotFoundError, spec)
    assert "raw, seg" in _message(DatasetNotFoundError, store)

    container = tmp_path / "c.n5"
    meta = {"dimensions": [4, 3, 2], "blockSize": [2, 2, 2], "dataType": "uint8"}
    meta["compression"] = {"type": "raw"}
    ts.open({"driver": "n5", "kvstore": (container / "em").as_uri() + "/", "metadata": meta},
            create=True).result()  # fmt: skip
    assert "it holds: em" in _message(DatasetNotFoundError, f"{container}/nope")

    tifffile.imwrite(tmp_path / "a.tif", np.zeros((2, 3, 4), np.uint8))
    assert "no dataset 'raw'" in _message(DatasetNotFoundError, f"{tmp_path / 'a.tif'}:raw")


def test_precomputed_unknown_scale_lists_the_scales(tmp_path):
    spec = {
        "driver": "neuroglancer_precomputed",
        "kvstore": (tmp_path / "vol").as_uri() + "/",
        "multiscale_metadata": {"type": "image", "data_type": "uint8", "num_channels": 1},
        "scale_metadata": {"resolution": [4, 4, 40], "size": [8, 8, 4], "encoding": "raw"},
    }
    ts.open(spec, create=True).result()
    assert "it holds: 4_4_40" in _message(DatasetNotFoundError, f"{tmp_path / 'vol'}:8_8_40")


def test_non_integer_segmentation(h5_two):
    message = _message(
        SegmentationDtypeError, f"{h5_two}:/probabilities", kind="labels", voxel_size=4
    )
    assert "float32" in message
    with pytest.raises(SegmentationDtypeError, match="probabilities"):
        open_dataset(
            f"{h5_two}:/volumes/raw", f"{h5_two}:/probabilities", em_voxel_size=4, seg_voxel_size=4
        )


def test_not_three_dimensional(h5_two):
    assert "(3, 4)" in _message(ShapeMismatchError, f"{h5_two}:/image2d", voxel_size=4)
    assert "(2, 2, 3, 4)" in _message(ShapeMismatchError, f"{h5_two}:/channels", voxel_size=4)


def test_extents_that_do_not_cover_each_other(tmp_path):
    tifffile.imwrite(tmp_path / "em.tif", np.zeros((4, 8, 8), np.uint8))
    tifffile.imwrite(tmp_path / "seg.tif", np.zeros((4, 8, 8), np.uint32))
    em = open_volume(tmp_path / "em.tif", voxel_size=10)
    seg = open_volume(tmp_path / "seg.tif", voxel_size=10, offset=(0, 0, 1000))
    with pytest.raises(ShapeMismatchError) as err:
        open_dataset(em, seg)
    message = str(err.value)
    assert str(tmp_path / "em.tif") in message and str(tmp_path / "seg.tif") in message
    assert "µm" in message and "\n" not in message


def test_voxel_size_missing_or_not_positive(tmp_path, h5_two):
    message = _message(VoxelSizeError, f"{h5_two}:/volumes/raw")
    assert "missing" in message and "voxel_size=(z, y, x)" in message and "--voxel-size" in message
    assert "positive" in _message(VoxelSizeError, f"{h5_two}:/volumes/raw", voxel_size=(4, 0, 4))
    assert "three" in _message(VoxelSizeError, f"{h5_two}:/volumes/raw", voxel_size=(4, 4))
    assert "positive" in _message(VoxelSizeError, f"{h5_two}:/bad_resolution")


def test_bad_kind_names_the_parameter(h5_two):
    with pytest.raises(ValueError, match="kind must be"):
        open_volume(f"{h5_two}:/volumes/raw", kind="segmentation", voxel_size=4)

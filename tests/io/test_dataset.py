"""EM and segmentation at different voxel sizes, related through physical space."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import zarr

from napari_segclr.exceptions import SegmentationDtypeError, ShapeMismatchError, VoxelSizeError
from napari_segclr.io import Dataset, Volume, open_dataset

EXTENT = 256.0  # nm per axis, from 0; EM at 8 nm, segmentation at 16 nm


def _field(voxel_size: float) -> np.ndarray:
    """Ids of 32 nm blocks, sampled at the voxel centres of a grid starting at 0 nm."""
    centres = np.arange(int(EXTENT / voxel_size)) * voxel_size + voxel_size / 2
    block = (centres // 32).astype(np.uint32)
    return 1 + block[:, None, None] * 10000 + block[None, :, None] * 100 + block[None, None, :]


def _dataset(seg_shift: float = 0.0) -> Dataset:
    em = Volume(_field(8).astype(np.float32), voxel_size=8, offset=4, source="em.zarr")
    seg = Volume(
        _field(16), voxel_size=16, offset=8 + seg_shift, kind="labels", source="seg.h5:/ids"
    )
    return Dataset(em, seg)


def test_voxel_coordinates_map_through_physical_space():
    ds = _dataset()
    np.testing.assert_allclose(ds.em_to_seg([[0, 0, 0], [1, 1, 1]]), [[-0.25] * 3, [0.25] * 3])
    np.testing.assert_allclose(ds.seg_to_em([2, 5, 7]), [4.5, 10.5, 14.5])
    points = np.random.default_rng(0).uniform(0, 30, (20, 3))
    np.testing.assert_allclose(ds.seg_to_em(ds.em_to_seg(points)), points)


def test_read_nm_gives_the_same_physical_crop_at_both_voxel_sizes():
    ds = _dataset()
    em, seg = ds.read_nm((64, 32, 96), (128, 96, 192))
    assert em.shape == (8, 8, 12) and seg.shape == (4, 4, 6)
    upsampled = seg.repeat(2, 0).repeat(2, 1).repeat(2, 2)
    np.testing.assert_array_equal(em, upsampled)
    np.testing.assert_array_equal(seg, _field(16)[4:8, 2:6, 6:12])


def test_read_nm_covers_an_unaligned_box_with_whole_voxels():
    ds = _dataset()
    lo, hi = np.array([60.0, 3.0, 100.0]), np.array([100.0, 9.0, 101.0])
    for volume, crop in zip((ds.em, ds.segmentation), ds.read_nm(lo, hi), strict=True):
        box = volume.box_nm(lo, hi)
        start = np.array([s.start for s in box])
        faces_lo = volume.to_nm(start) - np.asarray(volume.voxel_size) / 2
        faces_hi = faces_lo + np.asarray(crop.shape) * volume.voxel_size
        assert np.all(faces_lo <= lo) and np.all(faces_hi >= hi)
        assert np.all(lo - faces_lo < volume.voxel_size)
        assert np.all(faces_hi - hi < volume.voxel_size)


def test_read_nm_pads_outside_with_zero_and_overlap_is_the_shared_box():
    ds = _dataset(seg_shift=128)
    lo, hi = ds.overlap_nm()
    np.testing.assert_allclose(lo, [128, 128, 128])
    np.testing.assert_allclose(hi, [EXTENT] * 3)
    _, seg = ds.read_nm((96, 128, 128), (160, 160, 160))
    assert seg.shape == (4, 2, 2)
    assert np.all(seg[:2] == 0) and np.all(seg[2:] > 0)


def test_open_dataset_from_files_at_their_own_voxel_sizes(tmp_path):
    zarr.create_array(tmp_path / "em.zarr", data=_field(8).astype(np.uint8)).attrs.update(
        resolution=[8, 8, 8], offset=[4, 4, 4]
    )
    with h5py.File(tmp_path / "seg.h5", "w") as f:
        ids = f.create_dataset("ids", data=_field(16).astype(np.uint64))
        ids.attrs.update(resolution=[16, 16, 16], offset=[8, 8, 8])
    ds = open_dataset(tmp_path / "em.zarr", f"{tmp_path / 'seg.h5'}:/ids")
    assert ds.em.kind == "image" and ds.segmentation.kind == "labels"
    em, seg = ds.read_nm((0, 0, 0), (64, 64, 64))
    np.testing.assert_array_equal(em, seg.repeat(2, 0).repeat(2, 1).repeat(2, 2).astype(np.uint8))


def test_open_dataset_voxel_sizes_for_files_without_them(shared_data):
    ds = open_dataset(
        shared_data / "gala" / "train_raw.tif",
        shared_data / "gala" / "train_gt.tif",
        em_voxel_size=10,
        seg_voxel_size=(10, 10, 10),
    )
    assert ds.em.shape == ds.segmentation.shape == (50, 100, 200)
    em, seg = ds.read_nm((0, 0, 0), (40, 40, 40))
    assert em.shape == seg.shape == (5, 5, 5)  # voxels centred at 0 nm reach to −5 nm


def test_extents_that_do_not_overlap_name_both_files_in_um():
    with pytest.raises(ShapeMismatchError) as err:
        _dataset(seg_shift=EXTENT)
    message = str(err.value)
    assert "em.zarr" in message and "seg.h5:/ids" in message and "µm" in message
    assert "0.256–0.512" in message  # the segmentation's z extent


def test_float_segmentation_is_refused():
    em = Volume(np.zeros((4, 4, 4), np.uint8), voxel_size=8, source="em.tif")
    seg = Volume(np.zeros((4, 4, 4), np.float32), voxel_size=8, source="probabilities.tif")
    with pytest.raises(SegmentationDtypeError, match=r"probabilities\.tif.*float32"):
        Dataset(em, seg)


def test_voxel_size_for_an_open_volume_is_refused():
    em = Volume(np.zeros((4, 4, 4), np.uint8), voxel_size=8, source="em.tif")
    with pytest.raises(VoxelSizeError, match=r"em_voxel_size.*em\.tif"):
        open_dataset(em, em_voxel_size=4)

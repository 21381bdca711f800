"""The Volume object's physical placement helpers."""

from __future__ import annotations

import numpy as np

from napari_segclr.io import Volume, describe, open_volume, write_ome_zarr


def test_box_nm_covers_the_box_with_whole_voxels():
    volume = Volume(np.zeros((10, 10, 10), np.uint8), voxel_size=(10, 4, 4), offset=(5, 2, 2))
    # Voxel i spans [offset + (i - ½)·size, offset + (i + ½)·size): faces at 0, 10, 20 … in z.
    box = volume.box_nm((0, 0, 1), (20, 8, 9))
    assert box == (slice(0, 2), slice(0, 2), slice(0, 3))
    assert volume.box_nm((-10, 0, 0), (0.5, 4, 4))[0] == slice(-1, 1)


def test_levels_default_to_faces_aligned_with_level_zero():
    fine = np.zeros((8, 8, 8), np.uint8)
    volume = Volume(
        fine,
        voxel_size=8,
        offset=(4, 4, 4),
        levels=(fine, fine[::2, ::2, ::2]),
        level_voxel_sizes=((8, 8, 8), (16, 16, 16)),
    )
    assert volume.level_offsets == ((4.0, 4.0, 4.0), (8.0, 8.0, 8.0))
    coarse = volume.level(1)
    assert coarse.shape == (4, 4, 4) and coarse.voxel_size == (16.0, 16.0, 16.0)
    np.testing.assert_allclose(coarse.extent_nm, volume.extent_nm)


def test_describe_lists_format_placement_and_levels(tmp_path):
    fine = np.zeros((8, 8, 8), np.uint8)
    volume = Volume(
        fine,
        voxel_size=(40, 8, 8),
        offset=(40, 0, 0),
        source="em",
        levels=(fine, fine[::2, ::2, ::2]),
        level_voxel_sizes=((40, 8, 8), (80, 16, 16)),
    )
    assert "in memory" in describe(volume)
    write_ome_zarr(volume, tmp_path / "em.ome.zarr")
    text = describe(open_volume(tmp_path / "em.ome.zarr"))
    assert text.splitlines()[0] == str(tmp_path / "em.ome.zarr")
    assert "Zarr" in text and "40 × 8 × 8 nm" in text and "offset      40 × 0 × 0 nm" in text
    assert "1: 4 × 4 × 4 at 80 × 16 × 16 nm" in text

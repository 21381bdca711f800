"""Skeletonising whole volumes chunk by chunk, stitched into one graph per segment."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree

from napari_segclr.exceptions import ShapeMismatchError
from napari_segclr.io.volume import Volume
from napari_segclr.skeleton import path_distances, skeletonize_labels, skeletonize_volume

VOXEL = (20.0, 10.0, 10.0)
OFFSET = (100.0, 200.0, 300.0)


@pytest.fixture(scope="module")
def labels(draw_tubes) -> np.ndarray:
    """An oblique tube (id 2**60 + 1), a Y (id 2) and a speck (id 3) in 30 × 110 × 300 voxels."""
    shape = (30, 110, 300)
    out = draw_tubes(
        shape, VOXEL, [[(300.0, 150.0, 100.0), (300.0, 250.0, 2900.0)]], 80.0, label=2**60 + 1
    )
    junction = (300.0, 450.0, 1500.0)
    y_arms = [
        [(300.0, 450.0, 300.0), junction, (300.0, 550.0, 2700.0)],
        [junction, (300.0, 1050.0, 1500.0)],
    ]
    draw_tubes(shape, VOXEL, y_arms, 60.0, label=2, out=out)
    out[2:4, 2:4, 2:4] = 3
    return out


def test_long_tube_across_chunks_is_one_tree_of_the_right_length(labels):
    seg = Volume(labels, VOXEL, offset=OFFSET, kind="labels")
    calls = []
    skeletons = skeletonize_volume(
        seg,
        chunk_shape=(16, 32, 64),
        overlap_nm=200.0,
        progress=lambda done, total: calls.append((done, total)),
    )
    assert set(skeletons) == {2**60 + 1, 2}  # the speck is dust
    assert calls == [(i, 40) for i in range(1, 41)]  # 2 × 4 × 5 chunks

    # The tube crosses four chunk faces across and runs along one (z = 320 nm) lengthwise.
    tube = skeletons[2**60 + 1]
    assert len(tube.roots) == 1
    ends = np.flatnonzero(tube.degrees == 1)
    assert len(ends) == 2
    true_length = np.hypot(100.0, 2800.0)
    assert tube.cable_length == pytest.approx(true_length, rel=0.1)
    assert path_distances(tube, ends).max() == pytest.approx(true_length, rel=0.1)

    y = skeletons[2]
    assert len(y.roots) == 1
    assert np.sum(y.degrees == 1) == 3
    assert np.sum(y.degrees == 3) == 1


def test_chunked_skeletons_agree_with_the_one_shot_result(labels):
    seg = Volume(labels, VOXEL, offset=OFFSET, kind="labels")
    chunked = skeletonize_volume(seg, chunk_shape=(16, 32, 64), overlap_nm=200.0)
    whole = skeletonize_labels(labels, voxel_size=VOXEL, offset=OFFSET)
    assert set(chunked) == set(whole)
    for sid, skel in whole.items():
        assert chunked[sid].cable_length == pytest.approx(skel.cable_length, rel=0.1)
        # Both lie on the same centre line: every node is near the other skeleton.
        gap, _ = cKDTree(skel.nodes).query(chunked[sid].nodes)
        assert np.percentile(gap, 95) <= 2 * max(VOXEL)
        assert np.all(chunked[sid].radii > 0)


def test_one_chunk_equals_the_one_shot_result(labels):
    seg = Volume(labels, VOXEL, offset=OFFSET, kind="labels")
    chunked = skeletonize_volume(seg, chunk_shape=512, segment_ids=[2])
    whole = skeletonize_labels(labels, voxel_size=VOXEL, offset=OFFSET, segment_ids=[2])
    assert set(chunked) == {2}
    np.testing.assert_allclose(chunked[2].cable_length, whole[2].cable_length)
    assert len(chunked[2]) == len(whole[2])


def test_bad_chunk_shape_is_refused(labels):
    seg = Volume(labels, VOXEL, kind="labels")
    with pytest.raises(ShapeMismatchError, match="chunk_shape"):
        skeletonize_volume(seg, chunk_shape=(0, 64, 64))
    with pytest.raises(ValueError, match="overlap_nm"):
        skeletonize_volume(seg, overlap_nm=-1.0)

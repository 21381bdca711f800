"""Skeletonising one clicked segment of a lazily read volume."""

from __future__ import annotations

import numpy as np
import pytest

from napari_segclr.exceptions import (
    SegmentNotFoundError,
    SegmentTooSmallError,
    ShapeMismatchError,
)
from napari_segclr.io.counting import ReadCounter
from napari_segclr.io.volume import Volume
from napari_segclr.skeleton import SkeletonParams, skeletonize_labels, skeletonize_segment

VOXEL = (40.0, 8.0, 8.0)
OFFSET = (400.0, 80.0, -16.0)


@pytest.fixture(scope="module")
def scene(draw_tubes) -> np.ndarray:
    """An L-shaped neurite (id 2**60 + 7) among two other segments, in a 40 × 160 × 400 volume."""
    labels = draw_tubes(
        (40, 160, 400),
        VOXEL,
        [[(800.0, 200.0, 400.0), (800.0, 200.0, 2400.0), (800.0, 1000.0, 2400.0)]],
        100.0,
        label=2**60 + 7,
    )
    draw_tubes((40, 160, 400), VOXEL, [[(800.0, 900.0, 200.0), (800, 900, 1600)]], 100.0, 3, labels)
    draw_tubes((40, 160, 400), VOXEL, [[(800.0, 600.0, 2900.0), (800, 600, 3100)]], 20.0, 5, labels)
    return labels


def test_clicked_segment_grows_its_window_reading_only_crops(scene):
    lazy = ReadCounter(scene)
    seg = Volume(lazy, VOXEL, offset=OFFSET, kind="labels")
    sid = 2**60 + 7
    skel = skeletonize_segment(seg, sid, seed_voxel=(20, 25, 100), window_nm=600.0)

    assert skel.segment_id == sid and not skel.truncated
    assert len(lazy.reads) > 1  # the window grew
    assert lazy.voxels_read < scene.size / 2  # never the whole volume
    read = np.zeros(scene.shape, int)
    for key in lazy.reads:
        read[key] += 1
    assert read.max() == 1  # no voxel read twice
    assert np.all(read[scene == sid] == 1)  # the whole segment was seen

    whole = skeletonize_labels(scene, voxel_size=VOXEL, offset=OFFSET, segment_ids=[sid])[sid]
    assert skel.cable_length == pytest.approx(whole.cable_length, rel=0.02)
    assert np.allclose(np.sort(skel.nodes, axis=0), np.sort(whole.nodes, axis=0), atol=1e-6)


def test_bbox_starts_the_search(scene):
    seg = Volume(scene, VOXEL, kind="labels")
    skel = skeletonize_segment(seg, 3, bbox=(slice(15, 25), slice(100, 130), slice(100, 120)))
    assert len(skel.roots) == 1
    assert skel.cable_length == pytest.approx(1600.0, rel=0.1)  # 1400 nm + two round tips


def test_segment_larger_than_max_extent_is_truncated(scene):
    seg = Volume(scene, VOXEL, kind="labels")
    skel = skeletonize_segment(seg, 2**60 + 7, seed_voxel=(20, 25, 100), max_extent_nm=1200.0)
    assert skel.truncated
    extent = skel.nodes.max(axis=0) - skel.nodes.min(axis=0)
    assert np.all(extent <= 1200.0)


def test_segment_touching_the_volume_border_is_skeletonised(draw_tubes):
    labels = draw_tubes(
        (20, 40, 200), VOXEL, [[(400.0, 160.0, -400.0), (400.0, 160.0, 800.0)]], 100
    )
    seg = Volume(labels, VOXEL, kind="labels")
    skel = skeletonize_segment(seg, 1, seed_voxel=(10, 20, 0))
    # The skeleton ends at the centre of the cut, where the neurite leaves the volume.
    end = skel.nodes[np.argmin(skel.nodes[:, 2])]
    np.testing.assert_allclose(end, (400.0, 160.0, 0.0), atol=40.0)
    assert skel.cable_length == pytest.approx(900.0, rel=0.1)  # 800 nm + the round tip


def test_background_and_absent_segments_are_refused(scene):
    seg = Volume(scene, VOXEL, kind="labels")
    with pytest.raises(SegmentNotFoundError, match="background"):
        skeletonize_segment(seg, 0, seed_voxel=(20, 25, 100))
    with pytest.raises(SegmentNotFoundError, match=r"segment 3 is not in .* near voxel"):
        skeletonize_segment(seg, 3, seed_voxel=(20, 25, 300), window_nm=500.0)
    with pytest.raises(SegmentNotFoundError, match="segment 99 is not in"):
        skeletonize_segment(seg, 99, bbox=(slice(0, 40), slice(0, 160), slice(0, 400)))
    with pytest.raises(ShapeMismatchError, match="outside"):
        skeletonize_segment(seg, 3, seed_voxel=(20, 25, 400))
    with pytest.raises(ValueError, match="seed_voxel"):
        skeletonize_segment(seg, 3)


def test_too_small_segment_raises_or_gets_a_single_node(scene):
    seg = Volume(scene, VOXEL, kind="labels")
    with pytest.raises(SegmentTooSmallError, match="min_volume_nm3"):
        skeletonize_segment(seg, 5, seed_voxel=(20, 75, 375))
    labels = scene.copy()
    labels[3, 4, 5] = 11
    tiny = SkeletonParams(min_volume_nm3=0)
    skel = skeletonize_segment(
        Volume(labels, VOXEL, offset=OFFSET, kind="labels"), 11, seed_voxel=(3, 4, 5), params=tiny
    )
    assert len(skel) == 1
    np.testing.assert_allclose(skel.nodes[0], np.multiply((3, 4, 5), VOXEL) + OFFSET)
    assert skel.radii[0] > 0

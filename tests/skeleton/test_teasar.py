"""Skeletonising in-memory label crops against drawn shapes with known centre lines."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse import csgraph

from napari_segclr.exceptions import SegmentationDtypeError, ShapeMismatchError, VoxelSizeError
from napari_segclr.skeleton import (
    Skeleton,
    SkeletonParams,
    path_distances,
    resample,
    skeletonize_labels,
)


def assert_tree_per_piece(skel: Skeleton) -> None:
    n = len(skel)
    child, parent = skel.edges.T
    graph = sp.coo_array((np.ones(len(child)), (child, parent)), shape=(n, n))
    n_pieces = csgraph.connected_components(graph, directed=False)[0]
    assert len(skel.edges) == n - n_pieces == n - len(skel.roots)


@pytest.mark.parametrize(
    ("voxel_size", "shape"),
    [((40.0, 8.0, 8.0), (24, 60, 500)), ((10.0, 10.0, 10.0), (60, 50, 400))],
)
def test_straight_tube_centre_line_length_and_radius(draw_tubes, to_polyline, voxel_size, shape):
    radius = 120.0
    line = [(440.0, 240.0, 300.0), (440.0, 240.0, 3700.0)]  # 3.4 µm along x
    labels = draw_tubes(shape, voxel_size, [line], radius, label=9)
    offset = (1000.0, -50.0, 7.0)
    skel = skeletonize_labels(labels, voxel_size=voxel_size, offset=offset)[9]

    assert_tree_per_piece(skel)
    assert len(skel.roots) == 1
    local = skel.nodes - offset
    # Away from the rounded ends, nodes sit on the centre line within a voxel.
    body = (local[:, 2] > 300 + 2 * radius) & (local[:, 2] < 3700 - 2 * radius)
    assert body.sum() > 100
    assert to_polyline(local[body], line).max() <= max(voxel_size)
    true_length = 3400.0
    assert skel.cable_length == pytest.approx(true_length, rel=0.1)
    ends = np.flatnonzero(skel.degrees == 1)
    assert len(ends) == 2
    assert path_distances(skel, ends[0])[ends[1]] == pytest.approx(true_length, rel=0.1)
    assert np.median(skel.radii[body]) == pytest.approx(radius, rel=0.2)


def test_y_shape_has_one_branch_point_at_the_junction(draw_tubes, to_polyline):
    voxel_size = (10.0, 10.0, 10.0)
    junction = (200.0, 600.0, 1000.0)
    arms = [
        [(200.0, 100.0, 100.0), junction],
        [junction, (200.0, 100.0, 1900.0)],
        [junction, (200.0, 1400.0, 1000.0)],
    ]
    labels = draw_tubes((40, 150, 200), voxel_size, arms, 60.0)
    skel = skeletonize_labels(labels, voxel_size=voxel_size)[1]

    assert_tree_per_piece(skel)
    branch = skel.nodes[skel.degrees >= 3]
    assert len(branch) == 1
    assert np.linalg.norm(branch[0] - junction) <= 30.0
    assert np.sum(skel.degrees == 1) == 3
    true_length = sum(np.linalg.norm(np.subtract(*arm)) for arm in arms)
    # Voxel paths zig-zag along oblique arms; resampling straightens them.
    assert resample(skel, 200.0).cable_length == pytest.approx(true_length, rel=0.1)
    off_centre = np.min([to_polyline(skel.nodes, arm) for arm in arms], axis=0)
    assert np.median(off_centre) <= 10.0


def test_blob_is_rooted_at_its_centre_with_its_radius(draw_tubes):
    voxel_size = (10.0, 10.0, 10.0)
    centre = (300.0, 300.0, 300.0)
    labels = draw_tubes((61, 61, 61), voxel_size, [[centre, centre]], 250.0, label=4)
    skel = skeletonize_labels(labels, voxel_size=voxel_size)[4]
    root = skel.roots[0]
    assert np.linalg.norm(skel.nodes[root] - centre) <= 20.0
    assert skel.radii[root] == pytest.approx(250.0, rel=0.1)
    assert skel.cable_length <= 2 * 250.0 * 1.2


def test_huge_uint64_ids_are_kept_and_selectable(draw_tubes):
    voxel_size = (20.0, 20.0, 20.0)
    a, b = 2**60 + 12345, 2**60 + 3
    labels = draw_tubes(
        (20, 30, 100), voxel_size, [[(200, 200, 200), (200, 200, 1800)]], 80, label=a
    )
    draw_tubes(
        (20, 30, 100), voxel_size, [[(200, 450, 200), (200, 450, 1800)]], 80, label=b, out=labels
    )
    both = skeletonize_labels(labels, voxel_size=voxel_size)
    assert set(both) == {a, b}
    assert all(skel.segment_id == sid for sid, skel in both.items())
    assert np.all(np.abs(both[b].nodes[:, 1] - 450) <= 40)
    only = skeletonize_labels(labels, voxel_size=voxel_size, segment_ids=[b])
    assert set(only) == {b}
    assert len(only[b]) == len(both[b])
    assert labels.max() == a  # the input is left untouched


def test_segment_cut_by_the_crop_border_reaches_the_border(draw_tubes):
    voxel_size = (40.0, 8.0, 8.0)
    # The tube runs out of the crop on both x faces.
    labels = draw_tubes((20, 40, 300), voxel_size, [[(400, 160, -500), (400, 160, 3000)]], 100)
    skel = skeletonize_labels(labels, voxel_size=voxel_size)[1]
    assert skel.nodes[:, 2].min() == 0.0
    assert skel.nodes[:, 2].max() == 299 * 8.0
    assert len(skel.roots) == 1


def test_dust_is_dropped(draw_tubes):
    voxel_size = (10.0, 10.0, 10.0)
    labels = draw_tubes(
        (30, 30, 120), voxel_size, [[(150, 150, 100), (150, 150, 1000)]], 60, label=1
    )
    labels[2:4, 2:4, 2:4] = 2  # 8 voxels = 8000 nm³
    assert set(skeletonize_labels(labels, voxel_size=voxel_size)) == {1}
    tiny = SkeletonParams(min_volume_nm3=1000.0)
    assert set(skeletonize_labels(labels, voxel_size=voxel_size, params=tiny)) == {1, 2}


def test_empty_crop_gives_no_skeletons():
    assert skeletonize_labels(np.zeros((5, 5, 5), np.uint32), voxel_size=10) == {}


def test_invalid_inputs_are_refused():
    with pytest.raises(ShapeMismatchError, match="3D"):
        skeletonize_labels(np.zeros((5, 5), np.uint32), voxel_size=10)
    with pytest.raises(SegmentationDtypeError, match="integer"):
        skeletonize_labels(np.zeros((5, 5, 5), np.float32), voxel_size=10)
    with pytest.raises(VoxelSizeError, match="positive"):
        skeletonize_labels(np.zeros((5, 5, 5), np.uint32), voxel_size=(10, 0, 10))
    with pytest.raises(ValueError, match="background"):
        skeletonize_labels(np.zeros((5, 5, 5), np.uint32), voxel_size=10, segment_ids=[0])
    with pytest.raises(ValueError, match="const_nm"):
        SkeletonParams(const_nm=-1)


def test_min_voxels_follows_the_voxel_size():
    params = SkeletonParams(min_volume_nm3=1e6)
    assert params.min_voxels((10, 10, 10)) == 1000
    assert params.min_voxels((40, 32, 32)) == 25
    assert SkeletonParams(min_volume_nm3=0).min_voxels((10, 10, 10)) == 1


def test_real_bodies_have_every_node_inside_their_mask(shared_data):
    tifffile = pytest.importorskip("tifffile")
    labels = tifffile.imread(shared_data / "gala" / "train_gt.tif")
    ids, counts = np.unique(labels, return_counts=True)
    largest = [int(i) for i in ids[np.argsort(-counts)] if i != 0][:3]
    skeletons = skeletonize_labels(labels, voxel_size=10.0, segment_ids=largest)
    assert set(skeletons) == set(largest)
    for sid, skel in skeletons.items():
        voxels = np.rint(skel.nodes / 10.0).astype(np.int64)
        assert np.all(labels[tuple(voxels.T)] == sid)
        assert skel.cable_length > 500.0
        assert_tree_per_piece(skel)

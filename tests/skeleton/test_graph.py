"""Skeleton graphs: structure, distances along the cell, resampling."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from napari_segclr.exceptions import ShapeMismatchError
from napari_segclr.skeleton import Skeleton, nodes_within, path_distances, resample, smooth


def chain(n: int, step: float = 10.0, segment_id: int = 5) -> Skeleton:
    """A straight chain of ``n`` nodes along x, ``step`` nm apart, rooted at node 0."""
    nodes = np.zeros((n, 3))
    nodes[:, 2] = np.arange(n) * step
    return Skeleton(segment_id, nodes, np.arange(n) - 1, np.full(n, 50.0))


def y_shape() -> Skeleton:
    """A root at the origin, a 100 nm stem to a branch point, two 100 nm arms; 10 nm steps."""
    stem = np.stack([np.zeros(11), np.zeros(11), np.arange(11) * 10.0], axis=1)
    arm = np.arange(1, 11) * 10.0
    left = np.stack([np.zeros(10), arm, 100.0 + 0 * arm], axis=1)
    right = np.stack([np.zeros(10), -arm, 100.0 + 0 * arm], axis=1)
    nodes = np.concatenate([stem, left, right])
    parents = np.r_[-1, np.arange(10), 10, np.arange(11, 20), 10, np.arange(21, 30)]
    return Skeleton(3, nodes, parents, np.linspace(80, 20, len(nodes)))


def test_edges_lengths_and_cable_length():
    skel = y_shape()
    assert len(skel) == 31
    assert skel.edges.shape == (30, 2)
    np.testing.assert_allclose(skel.edge_lengths, 10.0)
    assert skel.cable_length == pytest.approx(300.0)
    np.testing.assert_array_equal(skel.roots, [0])
    assert np.bincount(skel.degrees).tolist() == [0, 3, 27, 1]


def test_arrays_are_copied_and_read_only():
    nodes = np.zeros((2, 3))
    skel = Skeleton(np.uint64(2**60 + 1), nodes, [-1, 0], [1.0, 1.0])
    nodes[0, 0] = 99
    assert skel.nodes[0, 0] == 0
    assert skel.segment_id == 2**60 + 1 and isinstance(skel.segment_id, int)
    with pytest.raises(ValueError, match="read-only"):
        skel.nodes[0, 0] = 1


@pytest.mark.parametrize(
    ("nodes", "parents", "radii", "error", "match"),
    [
        (np.zeros((0, 3)), [], [], ShapeMismatchError, "N >= 1"),
        (np.zeros((3, 2)), [-1, 0, 1], [1, 1, 1], ShapeMismatchError, "nodes"),
        (np.zeros((3, 3)), [-1, 0], [1, 1, 1], ShapeMismatchError, "parents"),
        (np.zeros((3, 3)), [-1, 0, 3], [1, 1, 1], ValueError, "index of another node"),
        (np.zeros((3, 3)), [-1, 2, 1], [1, 1, 1], ValueError, "forest"),
        (np.full((2, 3), np.nan), [-1, 0], [1, 1], ValueError, "finite"),
    ],
)
def test_invalid_skeletons_are_refused(nodes, parents, radii, error, match):
    with pytest.raises(error, match=match):
        Skeleton(1, nodes, parents, radii)


def test_from_edges_cuts_cycles_roots_at_widest_node_and_orders_parents_first():
    # A square (a cycle) plus a separate two-node piece.
    nodes = np.array([[0, 0, 0], [0, 0, 10], [0, 10, 10], [0, 10, 0], [0, 50, 50], [0, 50, 60]])
    edges = np.array([[0, 1], [1, 2], [2, 3], [3, 0], [4, 5]])
    radii = np.array([1.0, 2.0, 9.0, 3.0, 1.0, 5.0])
    skel = Skeleton.from_edges(7, nodes, edges, radii)
    assert len(skel.roots) == 2
    assert len(skel.edges) == 4  # one edge of the square cut
    assert sorted(skel.radii[skel.roots]) == [5.0, 9.0]
    child = np.flatnonzero(skel.parents >= 0)
    assert np.all(skel.parents[child] < child)
    assert sorted(map(tuple, skel.nodes)) == sorted(map(tuple, nodes.astype(float)))


def test_path_distances_follow_the_graph_not_space():
    skel = y_shape()
    tips = np.flatnonzero(skel.degrees == 1)
    left_tip, right_tip = tips[1], tips[2]
    # The tips are 200 nm apart in space and along the skeleton via the branch point.
    dist = path_distances(skel, [left_tip])
    assert dist.shape == (1, len(skel))
    assert dist[0, right_tip] == pytest.approx(200.0)
    assert dist[0, 0] == pytest.approx(200.0)
    assert path_distances(skel, 0).shape == (len(skel),)


def test_path_distances_between_pieces_are_infinite():
    nodes = np.array([[0, 0, 0], [0, 0, 10], [0, 0, 1000]])
    skel = Skeleton(1, nodes, [-1, 0, -1], [1, 1, 1])
    np.testing.assert_array_equal(path_distances(skel, 0), [0, 10, np.inf])


def test_limited_path_distances_are_sparse_and_match_the_dense_ones():
    skel = y_shape()
    sources = np.array([0, 10, 30])
    dense = path_distances(skel, sources)
    limited = path_distances(skel, sources, max_nm=55.0)
    assert isinstance(limited, sp.csr_array)
    assert limited.shape == dense.shape
    coo = limited.tocoo()
    stored = np.zeros(dense.shape, bool)
    stored[coo.row, coo.col] = True
    np.testing.assert_array_equal(stored, dense <= 55.0)  # sources kept as explicit zeros
    np.testing.assert_allclose(coo.data, dense[coo.row, coo.col])


def test_limited_path_distances_scale_to_long_skeletons():
    skel = chain(100_000, step=10.0)
    sources = np.arange(0, 100_000, 1000)
    dist = path_distances(skel, sources, max_nm=100.0)
    # 21 nodes within 100 nm of each source, 11 for the one at the end.
    assert dist.nnz == 11 + 99 * 21


def test_nodes_within_is_monotone_in_the_radius():
    skel = y_shape()
    previous = np.array([], dtype=np.int64)
    for radius in [0, 5, 10, 45, 100, 150, 1000]:
        inside = nodes_within(skel, 10, radius)
        assert set(previous) <= set(inside)
        np.testing.assert_array_equal(inside, np.flatnonzero(path_distances(skel, 10) <= radius))
        previous = inside
    assert nodes_within(skel, 10, 0).tolist() == [10]
    assert len(nodes_within(skel, 10, 1000)) == len(skel)


@pytest.mark.parametrize("bad", [-1.0, np.nan, np.inf])
def test_distance_arguments_are_validated(bad):
    with pytest.raises(ValueError, match="radius_nm"):
        nodes_within(y_shape(), 0, bad)
    with pytest.raises(IndexError, match="out of range"):
        nodes_within(y_shape(), 31, 10.0)


def test_resample_keeps_ends_branch_points_and_roots_and_spaces_the_rest():
    skel = y_shape()
    coarse = resample(skel, 25.0)
    assert np.bincount(coarse.degrees).tolist() == [0, 3, len(coarse) - 4, 1]
    keep = skel.nodes[(skel.degrees != 2) | (skel.parents < 0)]
    assert sorted(map(tuple, keep)) == sorted(
        map(tuple, coarse.nodes[(coarse.degrees != 2) | (coarse.parents < 0)])
    )
    np.testing.assert_allclose(coarse.edge_lengths, 25.0)  # 100 nm runs in 4 steps
    assert coarse.cable_length == pytest.approx(skel.cable_length)
    assert coarse.segment_id == skel.segment_id
    # Radii are interpolated along the path.
    assert coarse.radii.min() >= skel.radii.min() and coarse.radii.max() <= skel.radii.max()


def test_resample_rounds_to_equal_steps_and_can_refine():
    skel = chain(11, step=10.0)  # 100 nm
    np.testing.assert_allclose(resample(skel, 30.0).edge_lengths, 100 / 3)
    fine = resample(skel, 2.0)
    np.testing.assert_allclose(fine.edge_lengths, 2.0)
    assert len(fine) == 51
    single = Skeleton(1, np.zeros((1, 3)), [-1], [4.0])
    assert len(resample(single, 10.0)) == 1
    with pytest.raises(ValueError, match="spacing_nm"):
        resample(skel, 0)


def test_smooth_removes_a_voxel_zig_zag_and_keeps_ends_and_branch_points():
    skel = y_shape()
    nodes = skel.nodes.copy()
    nodes[1:10:2, 1] += 8.0  # the stem zig-zags by a voxel
    jagged = Skeleton(skel.segment_id, nodes, skel.parents, skel.radii)
    smoothed = smooth(jagged, passes=4)
    excess = jagged.cable_length - skel.cable_length
    assert excess > 25.0  # 28 % of the 100 nm stem
    assert smoothed.cable_length - skel.cable_length < 0.2 * excess
    fixed = (skel.degrees != 2) | (skel.parents < 0)
    np.testing.assert_array_equal(smoothed.nodes[fixed], jagged.nodes[fixed])
    np.testing.assert_array_equal(smoothed.parents, jagged.parents)
    np.testing.assert_array_equal(smooth(jagged, passes=0).nodes, jagged.nodes)
    with pytest.raises(ValueError, match="passes"):
        smooth(jagged, passes=-1)

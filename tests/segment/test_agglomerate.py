"""Watershed fragments and mean-affinity agglomeration, against known labels and a naive merge."""

from __future__ import annotations

import numpy as np
import pytest

from napari_segclr.exceptions import ShapeMismatchError
from napari_segclr.mae import labels_to_affinities
from napari_segclr.segment import (
    agglomerate,
    agglomerate_sweep,
    fragment_graph,
    merge_fragments,
    segmentation_scores,
    variation_of_information,
    watershed_fragments,
)


def affinities_of(labels: np.ndarray) -> np.ndarray:
    return labels_to_affinities(labels).astype(np.float32)


def noisy(affinities: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0, sigma, affinities.shape)
    return np.clip(0.1 + 0.8 * affinities + noise, 0, 1).astype(np.float32)


def test_perfect_affinities_reproduce_the_labels(cells):
    segmentation = agglomerate(affinities_of(cells))
    assert segmentation.dtype == np.uint64 and segmentation.shape == cells.shape
    assert variation_of_information(cells, segmentation) == pytest.approx((0, 0), abs=1e-12)
    assert segmentation.min() == 1 and segmentation.max() == len(np.unique(cells))


def test_fragments_never_cross_a_true_boundary(cells):
    fragments = watershed_fragments(affinities_of(cells))
    scores = segmentation_scores(cells, fragments)
    assert scores["voi_merge"] == pytest.approx(0, abs=1e-12)
    assert scores["pred_segments"] > scores["truth_segments"]  # an over-segmentation


def test_noisy_affinities_still_segment_well(cells):
    scores = segmentation_scores(cells, agglomerate(noisy(affinities_of(cells), 0.2)))
    assert scores["adapted_rand_error"] < 0.02
    assert scores["voi"] < 0.15


def test_threshold_trades_merges_for_splits(cells):
    affinities = noisy(affinities_of(cells), 0.2, seed=1)
    counts = [len(np.unique(agglomerate(affinities, threshold=t))) for t in (0.05, 0.5, 0.95)]
    assert counts[0] == 1  # every boundary's mean (≈ 0.1) is above 0.05
    assert counts[0] < counts[1] < counts[2]


def test_a_sweep_gives_each_threshold_what_agglomerate_gives_it(cells):
    affinities = noisy(affinities_of(cells), 0.2, seed=1)
    stages = []
    sweep = agglomerate_sweep(affinities, [0.95, 0.05, 0.5], progress=lambda *a: stages.append(a))
    assert list(sweep) == [0.95, 0.05, 0.5]
    for threshold, segmentation in sweep.items():
        assert np.array_equal(segmentation, agglomerate(affinities, threshold=threshold))
    assert stages == [(1, 5), (2, 5), (3, 5), (4, 5), (5, 5)]
    with pytest.raises(ValueError, match="at least one"):
        agglomerate_sweep(affinities, [])
    with pytest.raises(ValueError, match="threshold must be between 0 and 1"):
        agglomerate_sweep(affinities, [0.5, 2.0])


def test_thin_object_without_a_seed_of_its_own_is_kept():
    labels = np.ones((16, 12, 12), np.uint64)
    labels[8:] = 3
    labels[7:9] = 2  # two voxels thick: no voxel has all six links inside it
    assert len(np.unique(labels[1:-1, 1:-1, 1:-1])) == 3
    segmentation = agglomerate(affinities_of(labels))
    assert variation_of_information(labels, segmentation) == pytest.approx((0, 0), abs=1e-12)


def test_thick_membrane_is_shared_by_the_cells_it_separates():
    affinities = np.full((3, 20, 12, 12), 0.95, np.float32)
    affinities[:, 8:13] = 0.05  # every link into or within z = 8..11 is a boundary
    segmentation = agglomerate(affinities)
    assert len(np.unique(segmentation)) == 2
    assert len(np.unique(segmentation[:8])) == len(np.unique(segmentation[12:])) == 1
    assert segmentation[0, 0, 0] != segmentation[-1, 0, 0]


def test_uniform_affinities_give_one_segment():
    for value in (0.0, 1.0):
        assert np.all(agglomerate(np.full((3, 4, 5, 6), value, np.float32)) == 1)


def test_anisotropic_voxels_and_progress(cells):
    stages = []
    segmentation = agglomerate(
        affinities_of(cells), voxel_size=(40, 8, 8), progress=lambda *a: stages.append(a)
    )
    assert stages == [(1, 3), (2, 3), (3, 3)]
    assert variation_of_information(cells, segmentation) == pytest.approx((0, 0), abs=1e-12)


@pytest.mark.parametrize("shape", [(2, 4, 4, 4), (3, 4, 4), (3, 0, 4, 4)])
def test_affinities_of_the_wrong_shape_are_refused(shape):
    with pytest.raises(ShapeMismatchError, match=r"\(3, Z, Y, X\)"):
        agglomerate(np.zeros(shape, np.float32))


@pytest.mark.parametrize("name", ["threshold", "seed_threshold", "link_threshold"])
def test_thresholds_are_probabilities(name):
    with pytest.raises(ValueError, match=f"{name} must be between 0 and 1"):
        agglomerate(np.ones((3, 2, 2, 2), np.float32), **{name: 1.5})


def test_fragment_graph_pools_links_between_touching_fragments():
    fragments = np.array([[[1, 1, 2, 2, 3]]], np.uint32)
    affinities = np.zeros((3, 1, 1, 5), np.float32)
    affinities[2, 0, 0] = [0.0, 0.9, 0.3, 0.8, 0.6]  # x-links: 1-1, 1|2, 2-2, 2|3
    n, a, b, sums, counts = fragment_graph(fragments, affinities)
    assert n == 3
    assert list(zip(a, b, sums.round(6), counts, strict=True)) == [(1, 2, 0.3, 1), (2, 3, 0.6, 1)]


def naive_merge(n, a, b, sums, counts, threshold):
    """Average linkage the slow way: recompute every pooled mean before each merge."""
    cluster = np.arange(n + 1)
    while True:
        pooled: dict[tuple[int, int], list[float]] = {}
        for x, y, s, c in zip(a, b, sums, counts, strict=True):
            cx, cy = sorted((cluster[x], cluster[y]))
            if cx != cy:
                pooled.setdefault((cx, cy), [0.0, 0.0])
                pooled[cx, cy][0] += s
                pooled[cx, cy][1] += c
        if not pooled:
            return cluster
        (cx, cy), (s, c) = max(pooled.items(), key=lambda item: item[1][0] / item[1][1])
        if s / c <= threshold:
            return cluster
        cluster[cluster == cy] = cx


def partition(assignment: np.ndarray) -> set[frozenset[int]]:
    groups: dict[int, set[int]] = {}
    for node, group in enumerate(assignment[1:], start=1):
        groups.setdefault(int(group), set()).add(node)
    return {frozenset(g) for g in groups.values()}


@pytest.mark.parametrize("seed", range(5))
def test_merging_matches_naive_average_linkage(seed):
    rng = np.random.default_rng(seed)
    n = 40
    pairs = np.unique(np.sort(rng.integers(1, n + 1, (150, 2)), axis=1), axis=0)
    a, b = pairs[pairs[:, 0] != pairs[:, 1]].T
    counts = rng.integers(1, 20, len(a)).astype(float)
    sums = counts * rng.random(len(a))
    roots = merge_fragments(n, a, b, sums, counts, threshold=0.4)
    assert partition(roots) == partition(naive_merge(n, a, b, sums, counts, 0.4))
    assert 1 < len(partition(roots)) < n

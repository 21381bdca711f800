"""The embedding map: UMAP fitting and placing, selection by lasso and rectangle, colours."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import numpy as np
import pytest
from matplotlib.path import Path as PolygonPath
from tqdm import tqdm

from napari_segclr.embedding_map import (
    NO_CLASS_COLOR,
    MapPoints,
    UmapSettings,
    fit_map,
    point_colors,
    segment_means,
    uncertainty_colors,
)
from napari_segclr.exceptions import EmbeddingError
from napari_segclr.overlays import REJECTED_COLOR, class_colors

SETTINGS = UmapSettings(n_neighbors=10, n_epochs=30, seed=0)


def _clusters(n_per: int, seed: int, *, dim: int = 16, k: int = 3) -> tuple[np.ndarray, ...]:
    """``k`` well-separated clusters of embeddings; segment ids 10·cluster + (0…4)."""
    rng = np.random.default_rng(seed)
    centres = np.eye(k, dim) * 12.0
    cluster = np.repeat(np.arange(k), n_per)
    x = centres[cluster] + rng.normal(size=(len(cluster), dim))
    segment_id = (10 * (cluster + 1) + rng.integers(0, 5, len(cluster))).astype(np.uint64)
    node_id = np.arange(len(cluster), dtype=np.int64) + 1000 * seed
    return segment_id, node_id, x.astype(np.float32), cluster


@pytest.fixture(scope="module")
def fitted():
    segment_id, node_id, x, cluster = _clusters(40, seed=0)
    return fit_map(segment_id, node_id, x, settings=SETTINGS), cluster


def test_fit_separates_clusters_and_reports_epochs(fitted):
    umap_map, cluster = fitted
    xy = umap_map.points.xy
    assert xy.shape == (120, 2) and xy.dtype == np.float32 and np.isfinite(xy).all()
    assert umap_map.n_fitted == 120 and umap_map.n_placed == 0
    # every point's nearest other point in the map lies in its own cluster
    distance = np.linalg.norm(xy[:, None] - xy[None], axis=2)
    np.fill_diagonal(distance, np.inf)
    assert (cluster[distance.argmin(axis=1)] == cluster).mean() > 0.95


def test_fit_is_seeded():
    segment_id, node_id, x, _ = _clusters(10, seed=3)
    a = fit_map(segment_id, node_id, x, settings=SETTINGS).points.xy
    b = fit_map(segment_id, node_id, x, settings=SETTINGS).points.xy
    np.testing.assert_array_equal(a, b)


def test_progress_follows_the_epochs_and_a_cancel_is_raised_when_the_fit_returns():
    segment_id, node_id, x, _ = _clusters(10, seed=4)
    seen = []
    fit_map(segment_id, node_id, x, settings=SETTINGS, progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (30, 30) and all(t == 30 for _, t in seen)

    class Cancelled(Exception):
        pass

    calls = []

    def cancel(done: int, total: int) -> None:
        calls.append(done)
        raise Cancelled

    with pytest.raises(Cancelled):
        fit_map(segment_id, node_id, x, settings=SETTINGS, progress=cancel)
    assert calls == [0]  # no report after the first exception
    # tqdm's lock (shared with napari's progress bars) was not left held
    acquired = []

    def take_the_lock() -> None:
        lock = tqdm.get_lock().locks[-1]
        acquired.append(lock.acquire(timeout=5))
        if acquired[-1]:
            lock.release()

    other = threading.Thread(target=take_the_lock)
    other.start()
    other.join()
    assert acquired == [True]


def test_new_points_are_placed_by_transform_and_old_ones_stay(fitted):
    umap_map, cluster = fitted
    old = umap_map.points
    new_id, new_node, new_x, new_cluster = _clusters(5, seed=1)
    keep = np.arange(100)  # the last 20 old points are gone
    placed = umap_map.place(
        np.r_[old.segment_id[keep], new_id],
        np.r_[old.node_id[keep], new_node],
        np.r_[np.zeros((100, 16), np.float32), new_x],  # old rows' embeddings are not looked at
    )
    assert placed.n_fitted == 120 and placed.n_placed == 15 and len(placed.points) == 115
    assert placed._reducer is umap_map._reducer  # the same fitted model: nothing refitted
    np.testing.assert_array_equal(placed.points.xy[:100], old.xy[keep])
    assert umap_map.points is old  # the first map is unchanged
    # each new point lands among its own cluster's points
    centres = np.array([old.xy[cluster == c].mean(axis=0) for c in range(3)])
    new_xy = placed.points.xy[100:]
    nearest = np.linalg.norm(new_xy[:, None] - centres[None], axis=2).argmin(axis=1)
    assert (nearest == new_cluster).mean() > 0.9
    with pytest.raises(ValueError, match="16-d"):
        umap_map.transform(np.zeros((2, 8)))


def test_bad_input_is_refused():
    segment_id, node_id, x, _ = _clusters(2, seed=5)
    with pytest.raises(ValueError, match="at least 5"):
        fit_map(segment_id[:4], node_id[:4], x[:4])
    with pytest.raises(ValueError, match="segment ids"):
        fit_map(segment_id, node_id[:3], x)
    x[0, 0] = np.nan
    with pytest.raises(EmbeddingError, match="NaN"):
        fit_map(segment_id, node_id, x)
    with pytest.raises(ValueError, match="n_epochs"):
        UmapSettings(n_epochs=0)


def _points(n: int, seed: int) -> MapPoints:
    rng = np.random.default_rng(seed)
    xy = np.r_[rng.normal(size=(n // 2, 2)), rng.uniform(-3, 3, size=(n - n // 2, 2))]
    segment_id = rng.integers(1, n // 7 + 2, n).astype(np.uint64) * np.uint64(2**40)
    return MapPoints(segment_id, np.arange(n), xy)


@pytest.mark.parametrize("n", [500, 200_000])  # points tested one by one, and on the grid
def test_lasso_matches_an_exact_point_in_polygon_test(n):
    points = _points(n, seed=n)
    rng = np.random.default_rng(1)
    theta = np.sort(rng.uniform(0, 2 * np.pi, 60))
    star = np.c_[np.cos(theta), np.sin(theta)] * rng.uniform(0.5, 2.5, (60, 1))
    bowtie = np.array([(-2, -2), (2, 2), (2, -2), (-2, 2)], float)  # crosses itself
    far = np.array([(-50, -50), (50, -50), (0, 1.3)])  # vertices far off the grid
    for polygon in (star, bowtie, far):
        expected = np.flatnonzero(PolygonPath(polygon).contains_points(points.xy))
        found = points.in_polygon(polygon)
        np.testing.assert_array_equal(found, expected)
    assert len(points.in_polygon(star)) > n // 10
    assert len(points.in_polygon([(10, 10), (11, 10), (11, 11)])) == 0
    assert len(points.in_polygon([(0, 0), (1, 1)])) == 0  # not a polygon


def test_rectangle_nearest_and_segment_lookups():
    points = _points(2000, seed=2)
    xy = points.xy
    rows = points.in_rectangle((1.0, 0.5), (-0.5, -1.0))  # any two opposite corners
    inside = (xy[:, 0] >= -0.5) & (xy[:, 0] <= 1.0) & (xy[:, 1] >= -1.0) & (xy[:, 1] <= 0.5)
    np.testing.assert_array_equal(rows, np.flatnonzero(inside))
    target = xy[17] + 1e-3
    assert points.nearest(target, 0.01) == 17
    assert points.nearest((100.0, 100.0), 1.0) is None
    ids = points.segments_of(rows)
    np.testing.assert_array_equal(ids, np.unique(points.segment_id[rows]))
    np.testing.assert_array_equal(
        points.rows_of(ids[:3]), np.flatnonzero(np.isin(points.segment_id, ids[:3]))
    )
    assert len(points.rows_of([12345])) == 0
    everything = np.arange(len(points))
    np.testing.assert_array_equal(points.segments_of(everything), np.unique(points.segment_id))


def test_indexer_aligns_points_with_result_rows():
    points = MapPoints(np.array([5, 5, 7], np.uint64), np.array([0, 1, 0]), np.zeros((3, 2)))
    np.testing.assert_array_equal(
        points.indexer(np.array([5, 5, 7], np.uint64), np.array([0, 1, 0])), [0, 1, 2]
    )
    np.testing.assert_array_equal(
        points.indexer(np.array([7, 5, 9], np.uint64), np.array([0, 0, 0])), [1, -1, 0]
    )


def test_segment_means_average_each_segments_rows():
    ids = np.array([9, 3, 9, 3, 3], np.uint64)
    x = np.array([[1, 0], [0, 3], [3, 0], [0, 6], [0, 0]], np.float32)
    segments, means = segment_means(ids, x)
    np.testing.assert_array_equal(segments, [3, 9])
    np.testing.assert_allclose(means, [[0, 3], [2, 0]])
    assert segment_means(np.zeros(0, np.uint64), np.zeros((0, 4)))[1].shape == (0, 4)


def test_colours_by_annotation_prediction_and_uncertainty():
    classes = ("axon", "dendrite", "soma")
    colors = class_colors(classes)
    results = SimpleNamespace(
        annotation=np.array(["axon", "", "soma", ""]),
        predicted=np.array(["axon", "dendrite", "dendrite", ""]),
        confidence=np.array([1.0, 1 / 3, 0.9, np.nan]),
        uncertainty=np.array([0.0, np.log(3), 0.5, np.nan]),
        rejected=np.array([False, False, True, False]),
    )
    by_label = point_colors(results, "annotation", classes)
    assert by_label.shape == (4, 4) and by_label.dtype == np.float32
    np.testing.assert_allclose(by_label[[0, 2]], [colors["axon"], colors["soma"]])
    np.testing.assert_allclose(by_label[[1, 3]], [NO_CLASS_COLOR, NO_CLASS_COLOR])
    by_prediction = point_colors(results, "prediction", classes)
    np.testing.assert_allclose(by_prediction[0], colors["axon"])  # certain: opaque
    np.testing.assert_allclose(by_prediction[1, :3], colors["dendrite"][:3])
    assert by_prediction[1, 3] == pytest.approx(0.3)  # at chance: faint
    np.testing.assert_allclose(by_prediction[2], REJECTED_COLOR)
    np.testing.assert_allclose(by_prediction[3], NO_CLASS_COLOR)
    by_entropy = point_colors(results, "uncertainty", classes)
    np.testing.assert_allclose(by_entropy[3], NO_CLASS_COLOR)
    # the ramp runs from dark (certain) to bright (chance)
    assert by_entropy[0, :3].sum() < by_entropy[2, :3].sum() < by_entropy[1, :3].sum()
    np.testing.assert_allclose(uncertainty_colors(np.array([9.0]), n_classes=3)[0], by_entropy[1])
    with pytest.raises(ValueError, match="mode"):
        point_colors(results, "size", classes)

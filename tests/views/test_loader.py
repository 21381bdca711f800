"""Batches for embedding: every point once, the same views as one call, errors carried over."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from napari_segclr.exceptions import SegmentNotFoundError
from napari_segclr.skeleton import Skeleton
from napari_segclr.views import ViewLoader, ViewPoints, ViewSpec, extract_views, prefetch_map

ID = 2**60
SPEC = ViewSpec((7, 7, 7), 8.0, ("em", "masked_em"))


def _points(n: int = 23) -> ViewPoints:
    rng = np.random.default_rng(0)
    centers = rng.uniform(40, 140, size=(n, 3))
    return ViewPoints(np.full(n, ID + 1, dtype=np.uint64), np.arange(n) * 10, centers)


@pytest.mark.parametrize("workers", [0, 1, 2])
@pytest.mark.parametrize("order", ["spatial", "given"])
def test_batches_cover_every_point_once_with_its_view(blobs, workers, order):
    points = _points()
    seen = []
    loader = ViewLoader(blobs, points, SPEC, batch_size=5, order=order, workers=workers)
    assert len(loader) == 5
    for views, batch in loader:
        assert views.shape == (len(batch), 2, 7, 7, 7) and len(batch) <= 5
        np.testing.assert_array_equal(
            views, extract_views(blobs, batch.segment_ids, batch.centers_nm, SPEC)
        )
        seen.extend(batch.node_ids.tolist())
    assert sorted(seen) == points.node_ids.tolist()
    if order == "given":
        assert seen == points.node_ids.tolist()


def test_progress_counts_views(blobs):
    calls = []
    loader = ViewLoader(blobs, _points(), SPEC, batch_size=10, progress=lambda *a: calls.append(a))
    assert sum(1 for _ in loader) == 3
    assert calls == [(0, 23), (10, 23), (20, 23), (23, 23)]


def test_stopping_early_ends_the_worker_thread(blobs):
    before = threading.active_count()
    loader = ViewLoader(blobs, _points(), SPEC, batch_size=2, workers=2, prefetch=1)
    batches = iter(loader)
    next(batches)
    batches.close()
    assert threading.active_count() == before


def test_a_raising_progress_callback_cancels(blobs):
    class Cancelled(Exception):
        pass

    def progress(done: int, total: int) -> None:
        if done >= 4:
            raise Cancelled

    before = threading.active_count()
    loader = ViewLoader(blobs, _points(), SPEC, batch_size=2, workers=2, progress=progress)
    with pytest.raises(Cancelled):
        list(loader)
    assert threading.active_count() == before


def test_worker_errors_reach_the_caller(blobs):
    points = _points(6)
    bad = ViewPoints(np.full(6, ID + 3, dtype=np.uint64), points.node_ids, points.centers_nm)
    with pytest.raises(SegmentNotFoundError, match=f"segment {ID + 3}"):
        list(ViewLoader(blobs, bad, SPEC, batch_size=3))


def test_prefetch_map_keeps_order_and_raises():
    for workers in (0, 1, 3):
        assert list(prefetch_map(str, range(10), workers=workers, ahead=2)) == list("0123456789")

    def fail_on_three(x: int) -> int:
        if x == 3:
            raise KeyError("boom")
        return x

    results = prefetch_map(fail_on_three, range(10), workers=2, ahead=4)
    assert [next(results) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(KeyError, match="boom"):
        next(results)


def test_points_from_rows_and_skeletons():
    rows = [(2**63 + 5, 3, (1.0, 2.0, 3.0)), (7, 4, (4.0, 5.0, 6.0))]
    points = ViewPoints.from_rows(rows)
    assert points.segment_ids.tolist() == [2**63 + 5, 7] and points.node_ids.tolist() == [3, 4]
    skel = Skeleton(ID + 9, np.array([[0.0, 0, 0], [0, 0, 50]]), np.array([-1, 0]), np.ones(2))
    points = ViewPoints.from_skeletons({ID + 9: skel})
    assert points.segment_ids.tolist() == [ID + 9] * 2
    np.testing.assert_array_equal(points.centers_nm, skel.nodes)
    assert len(points[np.array([1])]) == 1


def test_views_as_torch_tensors(blobs):
    torch = pytest.importorskip("torch")
    views, _ = next(iter(ViewLoader(blobs, _points(4), SPEC, to_torch=True, workers=0)))
    assert isinstance(views, torch.Tensor) and views.dtype == torch.float32


def test_uint8_batches_and_pinned_memory_options(blobs):
    torch = pytest.importorskip("torch")
    loader = ViewLoader(blobs, _points(4), SPEC, to_torch=True, workers=1, dtype="uint8")
    views, points = next(iter(loader))
    assert views.dtype == torch.uint8
    expected = extract_views(blobs, points.segment_ids, points.centers_nm, SPEC, dtype="uint8")
    np.testing.assert_array_equal(views.numpy(), expected)
    with pytest.raises(ValueError, match="pin_memory needs to_torch"):
        ViewLoader(blobs, _points(4), SPEC, pin_memory=True)
    with pytest.raises(ValueError, match="dtype must be"):
        ViewLoader(blobs, _points(4), SPEC, dtype="int8")

"""The separable resampling kernels against direct per-voxel references."""

from __future__ import annotations

import numpy as np
import pytest

from napari_segclr.views.sampling import (
    area_taps,
    axis_positions,
    nearest_index,
    nearest_mask,
    resample,
    snap_shift,
    trim_taps,
)


@pytest.mark.parametrize("ratio", [0.4, 1.0, 1.5, 2.0, 3.7, 8.0])
def test_area_weights_are_footprint_overlaps(ratio):
    positions = axis_positions(np.array([10.3, 20.0]), 7, ratio)
    first, weights = area_taps(positions, ratio)
    np.testing.assert_allclose(weights.sum(axis=-1), 1.0, atol=1e-6)
    half = max(ratio, 1.0) / 2
    for b, i in np.ndindex(positions.shape):  # a direct reference, voxel by voxel
        for t, w in enumerate(weights[b, i]):
            j = first[b, i] + t
            lo, hi = positions[b, i] - half, positions[b, i] + half
            overlap = max(0.0, min(hi, j + 0.5) - max(lo, j - 0.5)) / (2 * half)
            assert w == pytest.approx(overlap if overlap >= 1e-6 else 0.0, abs=1e-6)


def test_aligned_views_need_no_arithmetic():
    block = np.arange(20 * 21 * 22, dtype=np.uint8).reshape(20, 21, 22)
    shape = (5, 6, 7)
    centers = np.array([[9.3, 10.6, 11.1]])
    shift = snap_shift(centers, shape, np.ones(3))
    assert np.all(np.abs(shift) <= 0.5)
    taps = []
    for k in range(3):
        first, weights = trim_taps(
            *area_taps(axis_positions(centers[:, k] + shift[:, k], shape[k], 1.0), 1.0)
        )
        assert weights is None
        taps.append((first[0], None))
    view = resample(block, taps)
    assert view.dtype == np.uint8 and np.shares_memory(view, block)
    np.testing.assert_array_equal(view, block[7:12, 8:14, 8:15])


def test_snapped_integer_ratio_is_a_plain_mean():
    rng = np.random.default_rng(0)
    block = rng.random((40, 40, 40)).astype(np.float32)
    centers = np.array([[19.7, 20.2, 18.9]])
    shift = snap_shift(centers, (3, 3, 3), np.full(3, 4.0))
    taps = []
    for k in range(3):
        first, weights = trim_taps(
            *area_taps(axis_positions(centers[:, k] + shift[:, k], 3, 4.0), 4.0)
        )
        assert weights.shape == (1, 3, 4) and np.all(weights == 0.25)
        taps.append((first[0], weights[0]))
    view = resample(block, taps)
    z0, y0, x0 = (int(t[0][0]) for t in taps)
    expected = (
        block[z0 : z0 + 12, y0 : y0 + 12, x0 : x0 + 12]
        .reshape(3, 4, 3, 4, 3, 4)
        .mean(axis=(1, 3, 5))
    )
    np.testing.assert_allclose(view, expected, rtol=1e-5)


@pytest.mark.parametrize("step", [0.5, 1.0, 2.5])
def test_nearest_masks_match_fancy_indexing(step):
    rng = np.random.default_rng(1)
    block = rng.integers(2**62, 2**62 + 3, size=(30, 31, 32), dtype=np.uint64)
    index = [nearest_index(axis_positions(np.array([12.2]), 9, step))[0] for _ in range(3)]
    # A view's own box: smaller than the view when upsampling, larger when downsampling.
    lo = [int(i.min()) for i in index]
    box = block[tuple(slice(a, int(i.max()) + 1) for a, i in zip(lo, index, strict=True))]
    local = [i - a for i, a in zip(index, lo, strict=True)]
    expected = block[np.ix_(*index)] == np.uint64(2**62 + 1)
    np.testing.assert_array_equal(nearest_mask(box, local, np.uint64(2**62 + 1)), expected)

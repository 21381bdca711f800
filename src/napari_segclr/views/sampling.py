"""Separable resampling of a crop onto a view's voxel grid.

A view's voxel grid is a tensor product of one set of positions per axis, so
every resampling here is done axis by axis: along each axis a view voxel is a
weighted sum of a few source voxels (taps), and the three passes are numpy
gathers and multiply-adds over whole slabs, never a loop over voxels.

Positions are in the source volume's voxel coordinates: voxel ``j`` has its
centre at ``j`` and spans ``[j - 1/2, j + 1/2)``.

The intensity kernel is the *area* kernel: a view voxel of width ``r`` source
voxels averages the source over its own footprint ``[u - r/2, u + r/2]``,
weighting each source voxel by the length it overlaps. For ``r <= 1`` the
footprint is widened to one source voxel, which makes the kernel exactly linear
interpolation; for an integer ``r`` aligned with the source grid it is the mean
of ``r`` voxels (what a pyramid level holds); for other ``r`` it is the
anti-aliased blend between the two. Segment ids are sampled by nearest voxel.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Weights below this are rounding noise of footprints that end on a voxel face.
_TINY_WEIGHT = 1e-6
# Relative tolerance for a voxel-size ratio to count as an integer.
_INTEGER_RTOL = 1e-6

#: Per axis of one view: index of the first tap of each view voxel (n,), and the
#: taps' weights (n, T), or None for nearest sampling (one tap of weight 1).
AxisTaps = tuple[np.ndarray, np.ndarray | None]


def axis_positions(centers: np.ndarray, n: int, ratio: float) -> np.ndarray:
    """(B, n) source coordinates of the n view voxels along one axis, for B centres.

    ``centers`` are the view centres (B,) in source voxel coordinates and
    ``ratio`` the view voxel size over the source voxel size.
    """
    return centers[:, None] + (np.arange(n) - (n - 1) / 2) * ratio


def snap_shift(centers: np.ndarray, shape: Sequence[int], ratios: np.ndarray) -> np.ndarray:
    """(B, 3) shifts (source voxels, each under 1/2) that align views with the source grid.

    Along an axis whose ratio is a whole number, a shifted view's voxels each
    cover whole source voxels: the same ratio then resamples every view alike
    (slicing at ratio 1, a plain mean of ``r`` voxels at ratio ``r``). Other
    axes are not shifted.
    """
    ratios = np.asarray(ratios, dtype=float)
    whole = np.round(ratios)
    integral = (np.abs(ratios - whole) <= _INTEGER_RTOL * ratios) & (whole >= 1)
    # Lower face of the first view voxel, in "face" units (source faces are integers).
    face = centers - (np.asarray(shape) - 1) / 2 * ratios - ratios / 2 + 0.5
    return np.where(integral, np.round(face) - face, 0.0)


def area_taps(positions: np.ndarray, ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """Area-kernel taps at ``positions`` (B, n): first tap index (B, n), weights (B, n, T)."""
    half = max(ratio, 1.0) / 2
    lo, hi = positions - half, positions + half
    # A footprint starting a rounding error before a voxel face starts at that face.
    first = np.floor(lo + 0.5 + _TINY_WEIGHT).astype(np.int64)
    n_taps = int(np.ceil(2 * half - _TINY_WEIGHT)) + 1
    faces = first[..., None] + np.arange(n_taps) - 0.5
    overlap = np.minimum(hi[..., None], faces + 1) - np.maximum(lo[..., None], faces)
    weights = (np.clip(overlap, 0, None) / (2 * half)).astype(np.float32)
    weights[weights < _TINY_WEIGHT] = 0
    return first, weights


def nearest_index(positions: np.ndarray) -> np.ndarray:
    """Index of the source voxel containing each position (half-open voxels)."""
    return np.floor(positions + 0.5).astype(np.int64)


def trim_taps(first: np.ndarray, weights: np.ndarray) -> AxisTaps:
    """Drop tap columns (last axis) that are zero everywhere; one full tap becomes nearest."""
    used = np.flatnonzero(weights.reshape(-1, weights.shape[-1]).any(axis=0))
    first = first + used[0]
    weights = weights[..., used[0] : used[-1] + 1]
    return (first, None) if weights.shape[-1] == 1 else (first, weights)


def resample(block: np.ndarray, taps: Sequence[AxisTaps]) -> np.ndarray:
    """Resample ``block`` (z, y, x) with per-axis taps (indices local to the block).

    Returns the source dtype when every axis is a plain selection (slicing or
    nearest), else float32. The axis that shrinks the data most goes first, so
    later passes work on less.
    """
    order = sorted(range(3), key=lambda a: len(taps[a][0]) / max(block.shape[a], 1))
    out = block
    for axis in order:
        first, weights = taps[axis]
        if weights is None:
            out = _select(out, first, axis)
            continue
        shape = [1, 1, 1]
        shape[axis] = len(first)
        acc = np.multiply(np.take(out, first, axis=axis), weights[:, 0].reshape(shape))
        acc = acc.astype(np.float32, copy=False)
        for t in range(1, weights.shape[1]):
            acc += np.take(out, first + t, axis=axis) * weights[:, t].reshape(shape)
        out = acc
    return out


def nearest_mask(
    block: np.ndarray, index: Sequence[np.ndarray], segment_id: np.uint64
) -> np.ndarray:
    """``block == segment_id`` at the tensor product of per-axis nearest indices.

    Ids are compared in their own integer dtype, never through float. Runs of
    consecutive indices are slices; a block smaller than the view (a coarser
    segmentation) is compared first and its rows repeated by ``np.take``; a
    larger one is gathered at exactly the view's voxels first.
    """
    if all(_is_run(i) for i in index):
        return block[tuple(slice(int(i[0]), int(i[-1]) + 1) for i in index)] == segment_id
    if block.size <= np.prod([len(i) for i in index]):
        mask = block == segment_id
        for axis in range(3):
            mask = _select(mask, index[axis], axis)
        return mask
    return block[np.ix_(*index)] == segment_id


def _select(arr: np.ndarray, index: np.ndarray, axis: int) -> np.ndarray:
    """``np.take`` along ``axis``, as a slice (no copy) where the indices are a run."""
    if _is_run(index):
        key = [slice(None)] * 3
        key[axis] = slice(int(index[0]), int(index[-1]) + 1)
        return arr[tuple(key)]
    return np.take(arr, index, axis=axis)


def _is_run(index: np.ndarray) -> bool:
    return len(index) > 0 and bool(np.all(np.diff(index) == 1))

"""Skeletonise one clicked segment, reading only the crops around it."""

from __future__ import annotations

from collections.abc import Sequence

import edt
import numpy as np

from ..exceptions import SegmentNotFoundError, SegmentTooSmallError, ShapeMismatchError
from ..io.volume import Volume
from .graph import Skeleton
from .teasar import SkeletonParams, VoxelGraph, check_segment_ids, remove_dust, trace, voxel_box

# The smallest growth step of the search window, in voxels: avoids many tiny reads.
_MIN_STEP = 16


def skeletonize_segment(
    seg: Volume,
    segment_id: int,
    *,
    seed_voxel: Sequence[int] | None = None,
    bbox: Sequence[slice] | None = None,
    window_nm: float = 2_000.0,
    max_extent_nm: float = 10_000.0,
    params: SkeletonParams | None = None,
) -> Skeleton:
    """Skeletonise one segment of a lazily read segmentation.

    The segment's extent is found without reading the whole volume: a window
    (``bbox``, or a cube of side ``window_nm`` around ``seed_voxel``, the
    clicked voxel) grows on each face the segment touches, reading only the
    added slabs, until the segment touches no face inside the volume or the
    window spans ``max_extent_nm`` on that axis; the skeleton then covers what
    was read and has ``truncated=True``.

    Parameters
    ----------
    seg
        The segmentation volume.
    segment_id
        The segment to skeletonise.
    seed_voxel
        A voxel (z, y, x) on or near the segment, e.g. the clicked one.
    bbox
        A starting crop (three voxel slices), instead of ``seed_voxel``.
    window_nm
        Side of the starting window around ``seed_voxel`` in nm.
    max_extent_nm
        The largest extent read along any axis, in nm (memory: the window is
        read whole, about 3·10⁸ voxels for 10 µm at 8 × 8 × 40 nm).
    params
        TEASAR parameters (default :class:`SkeletonParams`).

    Returns
    -------
    The skeleton, nodes in nm in the volume's physical space. Where the
    segment runs out of the volume (or of a capped window) the skeleton ends at
    the centre of the cut. Pieces of the segment smaller than
    ``params.min_volume_nm3`` are dropped; a segment too
    small for a traced path (a voxel or two, with a lowered threshold) gets a
    single node at its most interior voxel, so a skeleton always has a node.

    Raises
    ------
    SegmentNotFoundError
        ``segment_id`` is 0 (background) or absent from the starting window.
    SegmentTooSmallError
        No piece of the segment reaches ``params.min_volume_nm3``.
    """
    params = params or SkeletonParams()
    if int(segment_id) == 0:
        raise SegmentNotFoundError("segment id 0 is background, not a segment")
    (sid,) = check_segment_ids([segment_id])
    vs = np.asarray(seg.voxel_size)
    shape = np.asarray(seg.shape)
    lo, hi = _start_window(seg, seed_voxel, bbox, window_nm, max_extent_nm)
    where = f"crop {_fmt(lo, hi)}" if seed_voxel is None else f"near voxel {tuple(seed_voxel)}"
    mask = seg.read(voxel_box(lo, hi)) == sid
    if not mask.any():
        raise SegmentNotFoundError(f"segment {sid} is not in {seg.source} {where}")

    max_voxels = np.maximum(np.floor(float(max_extent_nm) / vs).astype(np.int64), hi - lo)
    truncated = False
    while True:
        grow_lo, grow_hi, capped = _growth(mask, lo, hi, shape, max_voxels)
        truncated |= capped
        if not (grow_lo.any() or grow_hi.any()):
            break
        mask, lo, hi = _extend(seg, sid, mask, lo, hi, grow_lo, grow_hi)

    # Trace in the segment's own bounding box. Where the segment runs on past the
    # region read (the volume's border, or a capped window) the crop stays open,
    # so kimimaro ends the skeleton at the centre of the cut; elsewhere a margin
    # of background closes it.
    inside = [
        np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != ax))) for ax in range(3)
    ]
    first = np.array([ix[0] for ix in inside])
    last = np.array([ix[-1] + 1 for ix in inside])
    margin = np.stack([first > 0, last < mask.shape], axis=1).astype(np.int64)
    crop = np.pad(mask[voxel_box(first, last)], margin).astype(np.uint8)
    origin = lo + first - margin[:, 0]
    n_voxels = int(crop.sum())
    cut_faces = [(ax, 0) for ax in range(3) if margin[ax, 0] == 0]
    cut_faces += [(ax, -1) for ax in range(3) if margin[ax, 1] == 0]
    remove_dust(crop, params.min_voxels(vs), keep_faces=cut_faces)
    if not crop.any():
        raise SegmentTooSmallError(
            f"segment {sid} ({n_voxels} voxels, {n_voxels * vs.prod():.3g} nm³) has no piece "
            f"of at least min_volume_nm3={params.min_volume_nm3:g} nm³"
        )
    graphs = trace(crop.copy(), seg.voxel_size, params)
    if 1 in graphs:
        graph = graphs[1]
    else:
        dist = edt.edt(crop, anisotropy=seg.voxel_size)
        centre = np.array(np.unravel_index(np.argmax(dist), dist.shape))
        graph = VoxelGraph(centre[None], np.empty((0, 2), np.int64), np.array([dist.max()]))
    return graph.shifted(origin).to_skeleton(
        sid, seg.voxel_size, seg.offset, params, truncated=truncated
    )


def _start_window(
    seg: Volume,
    seed_voxel: Sequence[int] | None,
    bbox: Sequence[slice] | None,
    window_nm: float,
    max_extent_nm: float,
) -> tuple[np.ndarray, np.ndarray]:
    shape = np.asarray(seg.shape)
    if bbox is not None:
        if len(bbox) != 3 or any(s.start is None or s.stop is None for s in bbox):
            raise ShapeMismatchError(f"bbox must be three slices with bounds, got {bbox!r}")
        lo = np.clip([s.start for s in bbox], 0, shape)
        hi = np.clip([s.stop for s in bbox], 0, shape)
        if np.any(hi <= lo):
            raise ShapeMismatchError(f"bbox {bbox!r} does not overlap {seg.source} {seg.shape}")
        return lo, hi
    if seed_voxel is None:
        raise ValueError("give seed_voxel (a voxel on the segment) or bbox (a crop around it)")
    seed = np.asarray(seed_voxel)
    if seed.shape != (3,) or np.any(seed < 0) or np.any(seed >= shape):
        raise ShapeMismatchError(
            f"seed_voxel {tuple(seed_voxel)} is outside {seg.source} of shape {seg.shape}"
        )
    side = min(float(window_nm), float(max_extent_nm))
    half = np.maximum(np.floor(side / 2 / np.asarray(seg.voxel_size)), 1)
    lo = np.maximum(seed - half, 0).astype(np.int64)
    hi = np.minimum(seed + half + 1, shape).astype(np.int64)
    return lo, hi


def _growth(
    mask: np.ndarray, lo: np.ndarray, hi: np.ndarray, shape: np.ndarray, max_voxels: np.ndarray
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Voxels to add below and above the window on each axis; and whether capped."""
    grow_lo = np.zeros(3, np.int64)
    grow_hi = np.zeros(3, np.int64)
    capped = False
    for ax in range(3):
        step = max((hi[ax] - lo[ax]) // 2, _MIN_STEP)
        want_lo = min(step, lo[ax]) if mask.take(0, axis=ax).any() else 0
        want_hi = min(step, shape[ax] - hi[ax]) if mask.take(-1, axis=ax).any() else 0
        room = max_voxels[ax] - (hi[ax] - lo[ax])
        if want_lo + want_hi > room:
            capped = True
            want_lo = min(want_lo, room // 2 if want_hi else room)
            want_hi = min(want_hi, room - want_lo)
        grow_lo[ax], grow_hi[ax] = want_lo, want_hi
    return grow_lo, grow_hi, capped


def _extend(
    seg: Volume,
    sid: int,
    mask: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    grow_lo: np.ndarray,
    grow_hi: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grow the window axis by axis, reading only the new slabs."""
    lo, hi = lo.copy(), hi.copy()
    for ax in range(3):
        parts = []
        if grow_lo[ax]:
            a, b = lo.copy(), hi.copy()
            a[ax], b[ax] = lo[ax] - grow_lo[ax], lo[ax]
            parts.append(seg.read(voxel_box(a, b)) == sid)
        parts.append(mask)
        if grow_hi[ax]:
            a, b = lo.copy(), hi.copy()
            a[ax], b[ax] = hi[ax], hi[ax] + grow_hi[ax]
            parts.append(seg.read(voxel_box(a, b)) == sid)
        mask = np.concatenate(parts, axis=ax)
        lo[ax] -= grow_lo[ax]
        hi[ax] += grow_hi[ax]
    return mask, lo, hi


def _fmt(lo: np.ndarray, hi: np.ndarray) -> str:
    return "[" + ", ".join(f"{a}:{b}" for a, b in zip(lo, hi, strict=True)) + "]"

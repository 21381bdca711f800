"""Skeletonise a whole segmentation chunk by chunk and stitch the pieces."""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence

import fastremap
import numpy as np
from scipy.spatial import cKDTree

from ..exceptions import ShapeMismatchError
from ..io.volume import Volume
from .graph import Skeleton
from .teasar import SkeletonParams, VoxelGraph, remove_dust, select_segments, trace, voxel_box

# Packs a core's grid position (z, y, x) into one int64, 21 bits an axis.
_CORE_KEY = np.array([1 << 42, 1 << 21, 1], dtype=np.int64)


def skeletonize_volume(
    seg: Volume,
    *,
    chunk_shape: int | Sequence[int] = (256, 256, 256),
    overlap_nm: float = 300.0,
    segment_ids: Iterable[int] | None = None,
    params: SkeletonParams | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[int, Skeleton]:
    """Skeletonise every segment of a volume, reading one chunk at a time.

    The volume is tiled into chunks (cores). Each is skeletonised with a halo
    of ``overlap_nm`` around it, so that paths near its faces see the segment's
    full width, and keeps the nodes in its core. Each edge leaving a core is
    joined to the nearest node of the neighbouring core's skeleton, if that is
    within TEASAR's coverage distance (``scale × radius + const_nm``, the
    distance within which a skeleton passes every voxel of its segment); loops
    this makes are cut, giving one tree per connected piece of each segment.

    Parameters
    ----------
    seg
        The segmentation volume.
    chunk_shape
        Core size in voxels (z, y, x), or one number for all axes. With the
        halo it sets the memory used: kimimaro needs about 30 bytes per voxel.
    overlap_nm
        Halo width in nm on each side of a core (at least one voxel); wider
        than most neurites' radius, so that one running along a chunk face is
        traced at its centre.
    segment_ids
        Skeletonise only these segments (default: all).
    params
        TEASAR parameters (default :class:`SkeletonParams`). Segments smaller
        than ``params.min_volume_nm3`` in all are dropped, as are smaller pieces
        wholly inside one chunk and its halo.
    progress
        Called as ``progress(done, total)`` after each chunk.

    Returns
    -------
    Skeletons keyed by segment id, nodes in nm in the volume's physical space.
    """
    params = params or SkeletonParams()
    chunk = np.broadcast_to(np.asarray(chunk_shape, dtype=np.int64), (3,))
    if np.any(chunk < 1):
        raise ShapeMismatchError(f"chunk_shape must be positive voxel counts, got {chunk_shape}")
    if not (np.isfinite(overlap_nm) and overlap_nm >= 0):
        raise ValueError(f"overlap_nm must be a finite distance >= 0 nm, got {overlap_nm}")
    ids = None if segment_ids is None else list(segment_ids)
    vs = np.asarray(seg.voxel_size)
    halo = np.maximum(np.ceil(float(overlap_nm) / vs), 1).astype(np.int64)
    shape = np.asarray(seg.shape)
    starts = [range(0, int(n), int(c)) for n, c in zip(shape, chunk, strict=True)]
    corners = list(itertools.product(*starts))
    min_voxels = params.min_voxels(vs)
    kept: dict[int, list[VoxelGraph]] = defaultdict(list)
    cuts: dict[int, list[np.ndarray]] = defaultdict(list)
    sizes: dict[int, int] = defaultdict(int)
    for done, corner in enumerate(corners, start=1):
        core_lo = np.asarray(corner)
        core_hi = np.minimum(core_lo + chunk, shape)
        lo = np.maximum(core_lo - halo, 0)
        hi = np.minimum(core_hi + halo, shape)
        labels = select_segments(seg.read(voxel_box(lo, hi)), ids)
        core = labels[voxel_box(core_lo - lo, core_hi - lo)]
        for sid, count in zip(*fastremap.unique(core, return_counts=True), strict=True):
            sizes[int(sid)] += int(count)
        open_faces = [(ax, 0) for ax in range(3) if lo[ax] > 0]
        open_faces += [(ax, -1) for ax in range(3) if hi[ax] < shape[ax]]
        remove_dust(labels, min_voxels, keep_faces=open_faces)
        for sid, graph in trace(labels, seg.voxel_size, params).items():
            piece, cut = _clip(graph.shifted(lo), core_lo, core_hi)
            if len(piece.voxels):
                kept[sid].append(piece)
            if len(cut):
                cuts[sid].append(cut)
        if progress is not None:
            progress(done, len(corners))
    return {
        sid: _stitch(parts, cuts.get(sid, []), chunk, vs, params).to_skeleton(
            sid, seg.voxel_size, seg.offset, params
        )
        for sid, parts in kept.items()
        if sizes[sid] >= min_voxels
    }


def _clip(graph: VoxelGraph, lo: np.ndarray, hi: np.ndarray) -> tuple[VoxelGraph, np.ndarray]:
    """The part of ``graph`` inside the core [lo, hi).

    Also returns the edges it cuts as (k, 2, 3) voxel pairs: the end kept, the
    end dropped.
    """
    inside = np.all((graph.voxels >= lo) & (graph.voxels < hi), axis=1)
    new_index = np.cumsum(inside) - 1
    ends_inside = inside[graph.edges]
    edges = new_index[graph.edges[ends_inside.all(axis=1)]]
    cut = graph.edges[ends_inside.sum(axis=1) == 1]
    first_inside = inside[cut[:, 0]]
    pairs = np.stack(
        [
            np.where(first_inside, cut[:, 0], cut[:, 1]),
            np.where(first_inside, cut[:, 1], cut[:, 0]),
        ],
        axis=1,
    )
    piece = VoxelGraph(graph.voxels[inside], edges, graph.radii[inside])
    return piece, graph.voxels[pairs]


def _stitch(
    parts: Sequence[VoxelGraph],
    cuts: Sequence[np.ndarray],
    chunk: np.ndarray,
    vs: np.ndarray,
    params: SkeletonParams,
) -> VoxelGraph:
    """Join a segment's per-core pieces.

    Each cut edge links its kept end to the nearest node of the core holding
    its dropped end, if that node is within TEASAR's coverage distance
    (``scale × radius + const_nm``) of the dropped end.
    """
    graph = VoxelGraph.merge(parts)
    if not cuts:
        return graph
    cut = np.concatenate(cuts)
    kept_end = cKDTree(graph.voxels * vs).query(cut[:, 0] * vs)[1]
    reach = params.scale * graph.radii[kept_end] + params.const_nm
    node_core = (graph.voxels // chunk) @ _CORE_KEY
    target_core = (cut[:, 1] // chunk) @ _CORE_KEY
    joins = [np.empty((0, 2), dtype=np.int64)]
    for core in np.intersect1d(target_core, node_core):
        members = np.flatnonzero(node_core == core)
        todo = np.flatnonzero(target_core == core)
        dist, nearest = cKDTree(graph.voxels[members] * vs).query(cut[todo, 1] * vs)
        ok = dist <= reach[todo]
        joins.append(np.stack([kept_end[todo[ok]], members[nearest[ok]]], axis=1))
    return VoxelGraph(graph.voxels, np.concatenate([graph.edges, *joins]), graph.radii)

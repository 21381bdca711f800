"""Skeletonise label crops with kimimaro (TEASAR) in physical units."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import cc3d
import fastremap
import numpy as np

from ..exceptions import SegmentationDtypeError, ShapeMismatchError
from ..io.volume import Vec3, as_vec3, as_voxel_size
from .graph import Skeleton, smooth


@dataclass(frozen=True)
class SkeletonParams:
    """How segments are skeletonised (kimimaro's TEASAR), in physical units.

    The defaults suit 8–40 nm EM of neurons and glia.

    Attributes
    ----------
    scale, const_nm
        After each path is traced, the voxels within ``scale × radius + const_nm``
        of it are ruled out as new branch ends: larger values give fewer, longer
        branches and ignore spines and bumps shorter than about ``const_nm``.
    pdrf_scale, pdrf_exponent
        Strength and sharpness of the penalty that keeps paths near the centre.
    soma_detection_nm, soma_acceptance_nm
        A piece whose distance to the boundary exceeds ``soma_detection_nm``
        somewhere is tested for a soma; one exceeding ``soma_acceptance_nm`` is
        treated as one: rooted at its widest point, with the ball of radius
        ``soma_invalidation_scale × radius + soma_invalidation_const_nm`` around it
        ruled out so the soma gets no spurious branches.
    min_volume_nm3
        Connected pieces smaller than this are dust and get no skeleton.
        1e6 nm³ (0.001 µm³) is 1000 voxels at 10 nm, 24 voxels at 32 × 32 × 40 nm.
    fix_branching
        Place branch points where paths really diverge (slower).
    fill_holes
        Fill cavities in each piece before tracing. This deletes any segment
        wholly enclosed by another (e.g. mitochondria labelled separately),
        hence off by default.
    smoothing_passes
        Passes of :func:`~napari_segclr.skeleton.smooth` over the traced nodes,
        which removes the voxel zig-zag that inflates cable lengths (0: nodes
        stay on voxel centres).
    """

    scale: float = 1.5
    const_nm: float = 300.0
    pdrf_scale: float = 100_000.0
    pdrf_exponent: int = 4
    soma_detection_nm: float = 750.0
    soma_acceptance_nm: float = 3500.0
    soma_invalidation_scale: float = 2.0
    soma_invalidation_const_nm: float = 300.0
    min_volume_nm3: float = 1e6
    fix_branching: bool = True
    fill_holes: bool = False
    smoothing_passes: int = 4

    def __post_init__(self) -> None:
        for name in (
            "scale",
            "const_nm",
            "pdrf_scale",
            "soma_detection_nm",
            "soma_acceptance_nm",
            "soma_invalidation_scale",
            "soma_invalidation_const_nm",
            "min_volume_nm3",
        ):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"SkeletonParams.{name} must be finite and >= 0, got {value}")
        if self.smoothing_passes < 0:
            raise ValueError(
                f"SkeletonParams.smoothing_passes must be >= 0, got {self.smoothing_passes}"
            )
        if self.pdrf_exponent < 1:
            raise ValueError(f"SkeletonParams.pdrf_exponent must be >= 1, got {self.pdrf_exponent}")

    def min_voxels(self, voxel_size: Sequence[float]) -> int:
        """The dust threshold in voxels of the given size (at least one voxel)."""
        return max(1, math.ceil(self.min_volume_nm3 / float(np.prod(voxel_size))))

    def teasar_params(self) -> dict[str, float]:
        """The parameters in kimimaro's names (physical units are nm)."""
        return {
            "scale": self.scale,
            "const": self.const_nm,
            "pdrf_scale": self.pdrf_scale,
            "pdrf_exponent": self.pdrf_exponent,
            "soma_detection_threshold": self.soma_detection_nm,
            "soma_acceptance_threshold": self.soma_acceptance_nm,
            "soma_invalidation_scale": self.soma_invalidation_scale,
            "soma_invalidation_const": self.soma_invalidation_const_nm,
        }


def skeletonize_labels(
    labels: np.ndarray,
    *,
    voxel_size: float | Sequence[float],
    offset: float | Sequence[float] = (0.0, 0.0, 0.0),
    segment_ids: Iterable[int] | None = None,
    params: SkeletonParams | None = None,
) -> dict[int, Skeleton]:
    """Skeletonise every segment of an in-memory (z, y, x) label crop.

    Parameters
    ----------
    labels
        Integer segment ids, 0 for background; ids may be huge uint64 values.
    voxel_size
        Voxel size in nm, (z, y, x) or one number.
    offset
        Physical position in nm of voxel (0, 0, 0)'s centre.
    segment_ids
        Skeletonise only these segments (default: all).
    params
        TEASAR parameters (default :class:`SkeletonParams`).

    Returns
    -------
    Skeletons keyed by segment id, nodes in nm with ``offset`` applied.
    Segments whose pieces are all dust (below ``params.min_volume_nm3``) are absent.
    """
    params = params or SkeletonParams()
    labels = check_labels(labels)
    vs = as_voxel_size(voxel_size, "skeletonize_labels")
    off = as_vec3(offset, "offset")
    work = select_segments(labels, segment_ids)
    remove_dust(work, params.min_voxels(vs))
    return {
        sid: graph.to_skeleton(sid, vs, off, params)
        for sid, graph in trace(work, vs, params).items()
    }


class VoxelGraph(NamedTuple):
    """A traced skeleton in integer voxel coordinates, before it is placed in space."""

    voxels: np.ndarray  # (n, 3) int64 voxel indices (z, y, x)
    edges: np.ndarray  # (e, 2) int64
    radii: np.ndarray  # (n,) nm

    def shifted(self, by: Sequence[int]) -> VoxelGraph:
        return VoxelGraph(self.voxels + np.asarray(by, dtype=np.int64), self.edges, self.radii)

    def to_skeleton(
        self,
        segment_id: int,
        voxel_size: Vec3,
        offset: Vec3,
        params: SkeletonParams,
        *,
        truncated: bool = False,
    ) -> Skeleton:
        nodes = self.voxels * np.asarray(voxel_size) + np.asarray(offset)
        skel = Skeleton.from_edges(segment_id, nodes, self.edges, self.radii, truncated=truncated)
        return smooth(skel, passes=params.smoothing_passes)

    @staticmethod
    def merge(parts: Sequence[VoxelGraph]) -> VoxelGraph:
        """Concatenate graphs into one, merging the voxels they share."""
        voxels, inverse = np.unique(
            np.concatenate([p.voxels for p in parts]), axis=0, return_inverse=True
        )
        inverse = inverse.ravel()
        firsts = np.cumsum([0] + [len(p.voxels) for p in parts[:-1]])
        edges = np.concatenate(
            [inverse[p.edges + first] for p, first in zip(parts, firsts, strict=True)]
        )
        edges = np.unique(np.sort(edges, axis=1), axis=0)
        edges = edges[edges[:, 0] != edges[:, 1]]
        radii = np.zeros(len(voxels))
        np.maximum.at(radii, inverse, np.concatenate([p.radii for p in parts]))
        return VoxelGraph(voxels, edges, radii)


def voxel_box(lo: Sequence[int], hi: Sequence[int]) -> tuple[slice, slice, slice]:
    """The crop [lo, hi) as three slices, the form :meth:`Volume.read` takes."""
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))


def check_labels(labels: np.ndarray) -> np.ndarray:
    """Validate a (z, y, x) integer label array."""
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise ShapeMismatchError(f"labels must be a 3D (z, y, x) array, got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise SegmentationDtypeError(f"labels must hold integer ids, got dtype {labels.dtype}")
    return labels


def check_segment_ids(segment_ids: Iterable[int]) -> list[int]:
    """Validate segment ids: integers in 1 … 2**64 - 1."""
    ids = [int(s) for s in segment_ids]
    bad = [s for s in ids if not 0 < s < 2**64]
    if bad:
        raise ValueError(f"segment ids must be in 1 … 2**64 - 1 (0 is background), got {bad[:3]}")
    return ids


def select_segments(labels: np.ndarray, segment_ids: Iterable[int] | None) -> np.ndarray:
    """A C-ordered copy of ``labels`` with every segment not in ``segment_ids`` zeroed."""
    work = np.array(labels, order="C", copy=True)
    if segment_ids is not None:
        ids = check_segment_ids(segment_ids)
        work = fastremap.mask_except(work, ids, in_place=True)
    return work


def remove_dust(
    labels: np.ndarray, min_voxels: int, keep_faces: Sequence[tuple[int, int]] = ()
) -> None:
    """Zero, in place, connected pieces (26-connected) with fewer than ``min_voxels`` voxels.

    Pieces touching a face listed in ``keep_faces`` as ``(axis, 0 or -1)`` are
    kept whatever their size: they continue into a neighbouring crop.
    """
    if min_voxels <= 1:
        return
    pieces = cc3d.connected_components(labels, connectivity=26)
    small = np.bincount(pieces.ravel()) < min_voxels
    small[0] = False
    for axis, side in keep_faces:
        small[np.unique(pieces.take(side, axis=axis))] = False
    if small.any():
        labels[small[pieces]] = 0


def trace(labels: np.ndarray, voxel_size: Vec3, params: SkeletonParams) -> dict[int, VoxelGraph]:
    """Run kimimaro on ``labels`` (consumed: it is modified in place).

    kimimaro renumbers the ids internally (fastremap) and maps them back, so
    huge sparse uint64 ids come out unchanged. Where a segment leaves the crop,
    a skeleton end is placed at the centre of the cut (``fix_borders``).
    """
    import kimimaro  # slow to import (networkx, pathos): only when tracing

    skeletons = kimimaro.skeletonize(
        labels,
        teasar_params=params.teasar_params(),
        anisotropy=voxel_size,
        dust_threshold=0,
        progress=False,
        fix_branching=params.fix_branching,
        fill_holes=params.fill_holes,
        fix_borders=True,
        in_place=True,
        parallel=1,
    )
    vs = np.asarray(voxel_size, dtype=np.float64)
    return {
        int(sid): VoxelGraph(
            np.rint(skel.vertices.astype(np.float64) / vs).astype(np.int64),
            skel.edges.astype(np.int64),
            skel.radii.astype(np.float64),
        )
        for sid, skel in skeletons.items()
        if len(skel.vertices)
    }

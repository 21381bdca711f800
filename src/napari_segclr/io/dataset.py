"""An EM volume and its segmentation, placed in one physical space.

The two may differ in voxel size and extent (a segmentation is often coarser
than the EM): everything between them goes through physical coordinates (nm).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..exceptions import SegmentationDtypeError, ShapeMismatchError, VoxelSizeError
from .open import open_volume
from .volume import Kind, Volume

PathOrVolume = str | os.PathLike[str] | Volume


@dataclass(frozen=True)
class Dataset:
    """An EM volume and (optionally) its segmentation, which must overlap in space."""

    em: Volume
    segmentation: Volume | None = None

    def __post_init__(self) -> None:
        seg = self.segmentation
        if seg is None:
            return
        if not np.issubdtype(seg.dtype, np.integer):
            raise SegmentationDtypeError(
                f"{seg.source}: a segmentation must hold integer ids, got dtype {seg.dtype}"
            )
        lo, hi = self._overlap(seg)
        if np.any(hi <= lo):
            raise ShapeMismatchError(
                f"EM {self.em.source} spans {_fmt_um(*self.em.extent_nm)} but segmentation "
                f"{seg.source} spans {_fmt_um(*seg.extent_nm)}: they do not overlap"
            )

    def _overlap(self, seg: Volume) -> tuple[np.ndarray, np.ndarray]:
        (em_lo, em_hi), (seg_lo, seg_hi) = self.em.extent_nm, seg.extent_nm
        return np.maximum(em_lo, seg_lo), np.minimum(em_hi, seg_hi)

    def overlap_nm(self) -> tuple[np.ndarray, np.ndarray]:
        """Physical box (lo, hi) in nm covered by both volumes (the EM's alone without one)."""
        if self.segmentation is None:
            return self.em.extent_nm
        return self._overlap(self.segmentation)

    def em_to_seg(self, voxels: np.ndarray) -> np.ndarray:
        """EM voxel coordinates (..., 3) → segmentation voxel coordinates (fractional)."""
        return self._seg().to_voxel(self.em.to_nm(voxels))

    def seg_to_em(self, voxels: np.ndarray) -> np.ndarray:
        """Segmentation voxel coordinates (..., 3) → EM voxel coordinates (fractional)."""
        return self.em.to_voxel(self._seg().to_nm(voxels))

    def read_nm(
        self, lo_nm: Sequence[float], hi_nm: Sequence[float]
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Each volume's own voxels covering the physical box ``[lo_nm, hi_nm)``.

        Voxels outside a volume read as 0. The crops' first voxels are at
        ``volume.box_nm(lo_nm, hi_nm)`` starts, so their centres are known in nm.
        """
        em = self.em.read_padded(self.em.box_nm(lo_nm, hi_nm))
        seg = self.segmentation
        return em, None if seg is None else seg.read_padded(seg.box_nm(lo_nm, hi_nm))

    def _seg(self) -> Volume:
        if self.segmentation is None:
            raise ShapeMismatchError(f"{self.em.source}: this dataset has no segmentation")
        return self.segmentation


def open_dataset(
    em: PathOrVolume,
    segmentation: PathOrVolume | None = None,
    *,
    em_voxel_size: float | Sequence[float] | None = None,
    seg_voxel_size: float | Sequence[float] | None = None,
) -> Dataset:
    """Open an EM volume and its segmentation (paths or open volumes) as a :class:`Dataset`.

    Voxel sizes (nm, z, y, x) override the files' metadata and are needed where
    a file has none; they apply to paths only.

    Examples
    --------
    >>> ds = open_dataset("raw.zarr", "seg.h5:/ids", seg_voxel_size=16)  # doctest: +SKIP
    >>> em_crop, seg_crop = ds.read_nm((0, 0, 0), (512, 512, 512))  # doctest: +SKIP
    """
    em_volume = _as_volume(em, "image", em_voxel_size, "em_voxel_size")
    seg_volume = (
        None
        if segmentation is None
        else _as_volume(segmentation, "labels", seg_voxel_size, "seg_voxel_size")
    )
    return Dataset(em_volume, seg_volume)


def _as_volume(
    value: PathOrVolume, kind: Kind, voxel_size: float | Sequence[float] | None, name: str
) -> Volume:
    if not isinstance(value, Volume):
        return open_volume(value, kind=kind, voxel_size=voxel_size)
    if voxel_size is not None:
        raise VoxelSizeError(
            f"{name} applies to paths; {value.source} is already open with "
            f"voxel size {value.voxel_size} nm"
        )
    return value


def _fmt_um(lo: np.ndarray, hi: np.ndarray) -> str:
    parts = (f"{a / 1e3:.6g}–{b / 1e3:.6g}" for a, b in zip(lo, hi, strict=True))
    return "(" + ", ".join(parts) + ") µm (z, y, x)"

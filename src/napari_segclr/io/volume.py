"""The volume object: a lazily read 3D array that knows where it sits in space.

Voxel ``(i, j, k)`` of a volume has its centre at
``offset + (i, j, k) * voxel_size`` nm, the same convention as napari's
``translate`` and ``scale``; so a layer built from a volume lines up with any
other volume in physical space whatever their voxel sizes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from ..exceptions import SegmentationDtypeError, ShapeMismatchError, VoxelSizeError

Kind = Literal["image", "labels"]
Vec3 = tuple[float, float, float]


class LazyArray(Protocol):
    """What a volume needs of its storage: shape, dtype and slicing to numpy."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    @property
    def dtype(self) -> np.dtype: ...

    def __getitem__(self, key: tuple[slice, ...]) -> np.ndarray: ...


def as_vec3(value: float | Sequence[float], name: str) -> Vec3:
    """Validate a voxel size or offset given as one number or three (z, y, x)."""
    arr = np.atleast_1d(np.asarray(value, dtype=float))
    if arr.shape == (1,):
        arr = np.repeat(arr, 3)
    if arr.shape != (3,) or not np.all(np.isfinite(arr)):
        raise VoxelSizeError(f"{name} must be one number or three (z, y, x), got {value!r}")
    return (float(arr[0]), float(arr[1]), float(arr[2]))


def as_voxel_size(value: float | Sequence[float], source: str = "") -> Vec3:
    """Validate a voxel size in nm: three positive numbers (z, y, x)."""
    where = f" for {source}" if source else ""
    vec = as_vec3(value, f"voxel size{where}")
    if min(vec) <= 0:
        raise VoxelSizeError(f"voxel size{where} must be positive, got {vec} nm")
    return vec


@dataclass(frozen=True, eq=False)
class Volume:
    """A 3D (z, y, x) array read lazily, with its voxel size and offset in nm.

    ``levels`` holds coarser copies (multiscale stores), each with its voxel
    size in ``level_voxel_sizes`` and the centre of its first voxel in
    ``level_offsets``; level 0 is ``array`` itself. Without ``level_offsets``
    each coarse voxel is taken to start where its first fine voxel starts.
    """

    array: LazyArray
    voxel_size: Vec3
    offset: Vec3 = (0.0, 0.0, 0.0)
    kind: Kind = "image"
    source: str = "<memory>"
    levels: tuple[LazyArray, ...] = ()
    level_voxel_sizes: tuple[Vec3, ...] = ()
    level_offsets: tuple[Vec3, ...] = ()

    def __post_init__(self) -> None:
        if len(self.array.shape) != 3:
            shape = tuple(self.array.shape)
            raise ShapeMismatchError(
                f"{self.source}: expected a 3D (z, y, x) volume, got shape {shape}"
            )
        object.__setattr__(self, "voxel_size", as_voxel_size(self.voxel_size, self.source))
        object.__setattr__(self, "offset", as_vec3(self.offset, f"offset of {self.source}"))
        if self.kind == "labels" and not np.issubdtype(np.dtype(self.array.dtype), np.integer):
            raise SegmentationDtypeError(
                f"{self.source}: a segmentation must hold integer ids, got dtype {self.array.dtype}"
            )
        if not self.levels:
            object.__setattr__(self, "levels", (self.array,))
            object.__setattr__(self, "level_voxel_sizes", (self.voxel_size,))
        if len(self.levels) != len(self.level_voxel_sizes):
            raise ValueError("levels and level_voxel_sizes must have the same length")
        sizes = tuple(as_voxel_size(v, self.source) for v in self.level_voxel_sizes)
        object.__setattr__(self, "level_voxel_sizes", sizes)
        if not self.level_offsets:
            lo_face = np.asarray(self.offset) - np.asarray(self.voxel_size) / 2
            offsets = tuple(lo_face + np.asarray(v) / 2 for v in sizes)
        elif len(self.level_offsets) == len(self.levels):
            offsets = self.level_offsets
        else:
            raise ValueError("levels and level_offsets must have the same length")
        object.__setattr__(
            self, "level_offsets", tuple(as_vec3(o, f"offset of {self.source}") for o in offsets)
        )

    @property
    def shape(self) -> tuple[int, int, int]:
        z, y, x = self.array.shape
        return (int(z), int(y), int(x))

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.array.dtype)

    @property
    def extent_nm(self) -> tuple[np.ndarray, np.ndarray]:
        """Physical bounds (lo, hi) in nm: outer faces of the first and last voxels."""
        vs = np.asarray(self.voxel_size)
        lo = np.asarray(self.offset) - vs / 2
        return lo, lo + np.asarray(self.shape) * vs

    def level(self, index: int) -> Volume:
        """Level ``index`` of a multiscale volume as a one-level volume of its own."""
        return Volume(
            self.levels[index],
            self.level_voxel_sizes[index],
            self.level_offsets[index],
            kind=self.kind,
            source=self.source,
        )

    def box_nm(self, lo_nm: Sequence[float], hi_nm: Sequence[float]) -> tuple[slice, slice, slice]:
        """The voxels that together cover the physical box ``[lo_nm, hi_nm)``.

        The box may reach outside the volume; read it with :meth:`read_padded`.
        """
        lo = as_vec3(lo_nm, "lower corner of the box")
        hi = as_vec3(hi_nm, "upper corner of the box")
        # Voxel i spans [i - 1/2, i + 1/2) in voxel units; the tolerance keeps a
        # face that lies exactly on the box edge from adding a sliver voxel.
        start = np.floor(self.to_voxel(lo) + 0.5 + 1e-6).astype(np.int64)
        stop = np.ceil(self.to_voxel(hi) + 0.5 - 1e-6).astype(np.int64)
        stop = np.maximum(stop, start)
        z, y, x = (slice(int(a), int(b)) for a, b in zip(start, stop, strict=True))
        return z, y, x

    def to_voxel(self, points_nm: np.ndarray) -> np.ndarray:
        """Map physical points (..., 3) in nm to (fractional) voxel coordinates."""
        return (np.asarray(points_nm, float) - self.offset) / self.voxel_size

    def to_nm(self, voxels: np.ndarray) -> np.ndarray:
        """Map voxel coordinates (..., 3) to physical points in nm."""
        return np.asarray(voxels, float) * self.voxel_size + self.offset

    def read(self, box: Sequence[slice]) -> np.ndarray:
        """Read the crop ``box`` (three slices with explicit bounds, step 1).

        Only that crop is read from storage. A box reaching outside the volume
        raises ``ShapeMismatchError``; use :meth:`read_padded` to pad instead.
        """
        starts, stops = _box_bounds(box, self.source)
        if np.any(starts < 0) or np.any(stops > self.shape) or np.any(stops < starts):
            raise ShapeMismatchError(
                f"{self.source}: crop {_fmt_box(starts, stops)} is outside the volume "
                f"of shape {self.shape}"
            )
        key = tuple(slice(int(a), int(b)) for a, b in zip(starts, stops, strict=True))
        return np.asarray(self.array[key])

    def read_padded(self, box: Sequence[slice], fill: float = 0) -> np.ndarray:
        """Read ``box``, filling the part outside the volume with ``fill``."""
        starts, stops = _box_bounds(box, self.source)
        out = np.full(tuple(np.maximum(stops - starts, 0)), fill, dtype=self.dtype)
        lo = np.clip(starts, 0, self.shape)
        hi = np.clip(stops, 0, self.shape)
        if np.all(hi > lo):
            dst = tuple(
                slice(int(a - s), int(b - s)) for a, b, s in zip(lo, hi, starts, strict=True)
            )
            out[dst] = self.read([slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True)])
        return out


def _box_bounds(box: Sequence[slice], source: str) -> tuple[np.ndarray, np.ndarray]:
    if len(box) != 3 or any(
        s.start is None or s.stop is None or s.step not in (None, 1) for s in box
    ):
        raise ShapeMismatchError(f"{source}: a crop must be three slices with bounds, got {box!r}")
    return (
        np.array([s.start for s in box], dtype=np.int64),
        np.array([s.stop for s in box], dtype=np.int64),
    )


def _fmt_box(starts: np.ndarray, stops: np.ndarray) -> str:
    return "[" + ", ".join(f"{a}:{b}" for a, b in zip(starts, stops, strict=True)) + "]"

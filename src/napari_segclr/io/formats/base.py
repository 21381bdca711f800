"""What every format backend returns, and the small adapters they share."""

from __future__ import annotations

import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...exceptions import ShapeMismatchError
from ..source import Source
from ..units import nm_per_unit
from ..volume import Kind, LazyArray, Vec3


@dataclass(frozen=True)
class Opened:
    """A store opened by a backend, before the caller's voxel size is applied.

    ``scales[i]`` is the voxel size of ``levels[i]`` and ``translations[i]``
    the centre of its first voxel, both in nm when ``units_known``, else in
    the store's own (unknown) unit, which still gives the levels' ratios.
    ``kind`` is the store's own word on image vs labels, if it has one.
    """

    levels: tuple[LazyArray, ...]
    scales: tuple[Vec3, ...]
    translations: tuple[Vec3, ...]
    units_known: bool
    kind: Kind | None = None

    @classmethod
    def single(
        cls,
        array: LazyArray,
        voxel_size_nm: Vec3 | None = None,
        offset_nm: Vec3 | None = None,
        kind: Kind | None = None,
    ) -> Opened:
        """A one-level store; without a voxel size its units are unknown (scale 1, offset 0)."""
        if voxel_size_nm is None:
            return cls((array,), ((1.0, 1.0, 1.0),), ((0.0, 0.0, 0.0),), False, kind)
        offset = offset_nm if offset_nm is not None else (0.0, 0.0, 0.0)
        return cls((array,), (voxel_size_nm,), (offset,), True, kind)


class ArrayAdapter:
    """Base of the adapters: a ``LazyArray`` plus ``ndim``, which dask also reads."""

    shape: tuple[int, ...]

    @property
    def ndim(self) -> int:
        return len(self.shape)


class AxesView(ArrayAdapter):
    """A 3D view of an N-D array whose other axes all have length one."""

    def __init__(self, base: LazyArray, keep: Sequence[int]) -> None:
        self.base = base
        self.keep = tuple(keep)

    @property
    def shape(self) -> tuple[int, ...]:  # type: ignore[override]
        return tuple(self.base.shape[i] for i in self.keep)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.base.dtype)

    @property
    def chunks(self) -> tuple[int, ...] | None:
        chunks = getattr(self.base, "chunks", None)
        return None if chunks is None else tuple(chunks[i] for i in self.keep)

    def __getitem__(self, key: tuple[slice, ...]) -> np.ndarray:
        full: list[slice | int] = [0] * len(self.base.shape)
        for axis, k in zip(self.keep, key, strict=True):
            full[axis] = k
        return np.asarray(self.base[tuple(full)])  # type: ignore[index]


def as_3d(array: LazyArray, source: str) -> LazyArray:
    """Drop leading, then trailing, length-one axes until three remain.

    So a (1, 1, z, y, x) or (z, y, x, 1) store reads as (z, y, x); anything
    else that is not 3D is left for ``Volume`` to reject with its shape.
    """
    shape = tuple(array.shape)
    if len(shape) <= 3:
        return array
    first, last = 0, len(shape)
    while last - first > 3 and shape[first] == 1:
        first += 1
    while last - first > 3 and shape[last - 1] == 1:
        last -= 1
    if last - first > 3:
        raise ShapeMismatchError(f"{source}: expected a 3D (z, y, x) volume, got shape {shape}")
    return AxesView(array, range(first, last))


class Reopenable(ABC):
    """An adapter holding a file handle that is reopened in a new process.

    The handle is dropped when pickled (handles do not pickle) and reopened on
    first use after unpickling or after a fork, so volumes can go to worker
    processes (data loaders, Dask workers).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._handle: Any = None
        self._pid = -1

    @abstractmethod
    def _open(self) -> Any:
        """Open the file and return what ``__getitem__`` reads from."""

    @property
    def handle(self) -> Any:
        with self._lock:
            if self._handle is None or self._pid != os.getpid():
                self._handle = self._open()
                self._pid = os.getpid()
            return self._handle

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_handle=None, _pid=-1, _lock=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


def voxel_size_from_attrs(attrs: Mapping[str, Any]) -> tuple[Vec3 | None, Vec3 | None]:
    """Voxel size and offset in nm (z, y, x) from common dataset attributes.

    ``resolution`` (nm, as in CREMI files) or ``element_size_um`` (µm, as
    written by ilastik and Fiji), and ``offset`` (nm). Missing → None.
    """
    voxel_size = None
    if "resolution" in attrs:
        voxel_size = _vec3(attrs["resolution"], 1.0)
    elif "element_size_um" in attrs:
        voxel_size = _vec3(attrs["element_size_um"], 1e3)
    offset = _vec3(attrs["offset"], 1.0) if "offset" in attrs and voxel_size else None
    return voxel_size, offset


def n5_voxel_size(attrs: Mapping[str, Any]) -> Vec3 | None:
    """Voxel size in nm (z, y, x) from N5 attributes, which list axes as (x, y, z).

    ``pixelResolution: {"dimensions": [...], "unit": "um"}`` (the N5 viewer's
    form) or ``resolution: [...]`` (nm).
    """
    pixel = attrs.get("pixelResolution")
    if isinstance(pixel, Mapping) and "dimensions" in pixel:
        scale = nm_per_unit(pixel.get("unit", "nm"))
        vec = _vec3(pixel["dimensions"], scale) if scale else None
    elif "resolution" in attrs:
        vec = _vec3(attrs["resolution"], 1.0)
    else:
        return None
    return None if vec is None else (vec[2], vec[1], vec[0])


def _vec3(value: Any, factor: float) -> Vec3 | None:
    try:
        arr = np.asarray(value, dtype=float).ravel() * factor
    except (TypeError, ValueError):
        return None
    if arr.shape != (3,):
        return None
    return (float(arr[0]), float(arr[1]), float(arr[2]))


def missing_dataset(source: Source, names: Sequence[str], form: str, limit: int = 12) -> str:
    """The message for a container without the dataset asked for, listing what it holds.

    ``form`` shows how to name one (e.g. ``"file.h5:/name"``).
    """
    if source.inner:
        what = f"no dataset '{source.inner}'"
    elif names:
        what = f"holds several datasets, name one ({form})"
    else:
        what = "holds no dataset"
    shown = ", ".join(names[:limit]) if names else "nothing"
    if len(names) > limit:
        shown += f", … ({len(names)} in all)"
    return f"{source.spec}: {what}; it holds: {shown}"

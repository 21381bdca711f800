"""The registry of format backends, chosen by path: by suffix, then by content.

Each backend module has ``open_source(source) -> Opened``; it is imported on
first use, so h5py, zarr and tensorstore stay out of start-up (napari, CLI).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path

from ...exceptions import UnknownFormatError
from ..source import Source
from .base import Opened

_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


@dataclass(frozen=True)
class Backend:
    """A volume format: its name, the module that opens it, and what it claims."""

    name: str
    module: str
    claims: Callable[[Source], bool]

    def open(self, source: Source) -> Opened:
        return import_module(f"{__name__}.{self.module}").open_source(source)


def _head(path: Path, size: int = 8) -> bytes:
    try:
        with path.open("rb") as file:
            return file.read(size)
    except OSError:
        return b""


def _is_tiff(source: Source) -> bool:
    path = source.path
    return path.is_file() and (
        path.suffix.lower() in (".tif", ".tiff") or _head(path, 4) in _TIFF_MAGIC
    )


def _is_hdf5(source: Source) -> bool:
    path = source.path
    return path.is_file() and (
        path.suffix.lower() in (".h5", ".hdf5", ".hdf", ".he5") or _head(path) == _HDF5_MAGIC
    )


def _is_zarr(source: Source) -> bool:
    path = source.path
    markers = ("zarr.json", ".zarray", ".zgroup", ".zattrs")
    return path.is_dir() and (
        path.suffix.lower() == ".zarr" or any((path / m).is_file() for m in markers)
    )


def _is_n5(source: Source) -> bool:
    path = source.path
    return path.is_dir() and (
        (path / "attributes.json").is_file()
        or any(p.suffix.lower() == ".n5" for p in (path, *path.parents))
    )


def _is_precomputed(source: Source) -> bool:
    path = source.path
    return source.scheme == "precomputed" or (
        path.is_dir() and ((path / "info").is_file() or (path.parent / "info").is_file())
    )


BACKENDS: tuple[Backend, ...] = (
    Backend("tiff", "tiff", _is_tiff),
    Backend("hdf5", "hdf5", _is_hdf5),
    Backend("zarr", "zarr", _is_zarr),
    Backend("n5", "n5", _is_n5),
    Backend("precomputed", "precomputed", _is_precomputed),
)

FORMATS = "TIFF, HDF5, Zarr / OME-Zarr, N5 or neuroglancer precomputed"


def backend_for(source: Source) -> Backend:
    """The backend that opens ``source``; ``UnknownFormatError`` if none does."""
    for backend in BACKENDS:
        if source.scheme in (None, backend.name) and backend.claims(source):
            return backend
    raise UnknownFormatError(f"{source.spec}: not a volume format that can be read ({FORMATS})")


__all__ = ["BACKENDS", "FORMATS", "Backend", "Opened", "backend_for"]

"""HDF5 datasets (``file.h5:/group/dataset``), read lazily through h5py."""

from __future__ import annotations

import weakref

import h5py
import numpy as np

from ...exceptions import DatasetNotFoundError, UnknownFormatError
from ..source import Source
from .base import ArrayAdapter, Opened, Reopenable, missing_dataset, voxel_size_from_attrs


class Hdf5Array(ArrayAdapter, Reopenable):
    """One HDF5 dataset, with the file opened read-only."""

    def __init__(self, path: str, name: str) -> None:
        super().__init__()
        self.path = path
        self.name = name
        dataset = self.handle
        self.shape = tuple(int(n) for n in dataset.shape)
        self.dtype = np.dtype(dataset.dtype)
        self.chunks = dataset.chunks

    def _open(self) -> h5py.Dataset:
        file = h5py.File(self.path, "r")
        weakref.finalize(self, file.close)
        return file[self.name]

    def __getitem__(self, key: tuple[slice, ...]) -> np.ndarray:
        return np.asarray(self.handle[key])


def open_source(source: Source) -> Opened:
    try:
        file = h5py.File(source.location, "r")
    except OSError:
        raise UnknownFormatError(f"{source.spec}: not a readable HDF5 file") from None
    with file:
        datasets = _datasets(file)
        name = source.inner or (datasets[0] if len(datasets) == 1 else "")
        node = file.get(name) if name else None
        if not isinstance(node, h5py.Dataset):
            raise DatasetNotFoundError(missing_dataset(source, datasets, "file.h5:/name"))
        voxel_size, offset = voxel_size_from_attrs(node.attrs)
    return Opened.single(Hdf5Array(source.location, name), voxel_size, offset)


def _datasets(file: h5py.File) -> list[str]:
    names: list[str] = []

    def visit(name: str, node: object) -> None:
        if isinstance(node, h5py.Dataset):
            names.append(name)

    file.visititems(visit)
    return names

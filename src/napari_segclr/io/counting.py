"""A lazy-array wrapper that records what is read: for I/O benchmarks and tests."""

from __future__ import annotations

import numpy as np

from .volume import LazyArray


class ReadCounter:
    """Wraps a lazy array (or a numpy array) and records every crop read from it.

    >>> counter = ReadCounter(np.zeros((10, 10, 10), np.uint8))
    >>> _ = counter[0:2, 0:5, 0:5]
    >>> counter.n_reads, counter.voxels_read
    (1, 50)
    """

    def __init__(self, array: LazyArray | np.ndarray) -> None:
        self.array = array
        self.reads: list[tuple[slice, ...]] = []
        self.voxels_read = 0

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.array.dtype)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def n_reads(self) -> int:
        return len(self.reads)

    def reset(self) -> None:
        self.reads.clear()
        self.voxels_read = 0

    def __getitem__(self, key: tuple[slice, ...]) -> np.ndarray:
        out = np.asarray(self.array[key])
        self.reads.append(key)
        self.voxels_read += out.size
        return out

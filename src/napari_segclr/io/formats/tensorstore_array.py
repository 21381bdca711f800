"""A tensorstore array as a lazy (z, y, x) array (for N5 and neuroglancer precomputed)."""

from __future__ import annotations

import numpy as np
import tensorstore as ts

from .base import ArrayAdapter


class TensorStoreArray(ArrayAdapter):
    """A read-only tensorstore view with a zero origin; it pickles (by its spec)."""

    def __init__(self, store: ts.TensorStore) -> None:
        self.store = store.translate_to[(0,) * store.rank]
        self.shape = tuple(int(n) for n in self.store.shape)
        self.dtype = np.dtype(self.store.dtype.numpy_dtype)
        chunk = self.store.chunk_layout.read_chunk.shape
        self.chunks = None if chunk is None else tuple(int(n) for n in chunk)

    def __getitem__(self, key: tuple[slice, ...]) -> np.ndarray:
        return np.asarray(self.store[key].read().result())


def error_reason(err: Exception) -> str:
    """tensorstore's message without the JSON spec it appends in brackets."""
    return str(err).split(" [", 1)[0].strip()

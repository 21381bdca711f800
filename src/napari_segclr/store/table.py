"""Embedding rows in memory: one row per skeleton node, as columns of numpy arrays."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..exceptions import SegmentationDtypeError, ShapeMismatchError


@dataclass(frozen=True)
class EmbeddingTable:
    """Embeddings of skeleton nodes, one row per node.

    Columns are numpy arrays rather than a data frame, so millions of 64-d rows
    stay one contiguous float32 block; ``to_frame`` gives a pandas view for
    small tables (``layer.features``, notebooks).

    Attributes
    ----------
    segment_id
        (N,) uint64 segment ids.
    node_id
        (N,) int64 skeleton node ids, unique within a segment.
    position_nm
        (N, 3) float64 node positions in nm, (z, y, x).
    embedding
        (N, D) float32 embeddings.
    """

    segment_id: np.ndarray
    node_id: np.ndarray
    position_nm: np.ndarray
    embedding: np.ndarray

    def __post_init__(self) -> None:
        segment_id = as_segment_ids(self.segment_id, name="segment_ids")
        node_id = as_node_ids(self.node_id, name="node_ids")
        position = np.ascontiguousarray(self.position_nm, dtype=np.float64)
        embedding = np.ascontiguousarray(self.embedding, dtype=np.float32)
        n = len(segment_id)
        if embedding.ndim == 1 and embedding.size == 0:
            embedding = embedding.reshape(0, 0)
        if len(node_id) != n or position.shape != (n, 3) or embedding.ndim != 2:
            raise ShapeMismatchError(
                f"embedding rows disagree: {n} segment ids, {len(node_id)} node ids, "
                f"positions of shape {position.shape} (expected ({n}, 3)), "
                f"embeddings of shape {embedding.shape} (expected ({n}, dim))"
            )
        if len(embedding) != n:
            raise ShapeMismatchError(f"{len(embedding)} embeddings for {n} segment ids")
        # Frozen: the validated, converted arrays replace what was passed.
        object.__setattr__(self, "segment_id", segment_id)
        object.__setattr__(self, "node_id", node_id)
        object.__setattr__(self, "position_nm", position)
        object.__setattr__(self, "embedding", embedding)

    @classmethod
    def empty(cls, dim: int) -> EmbeddingTable:
        """A table with no rows and ``dim``-d embeddings."""
        return cls(
            np.zeros(0, np.uint64),
            np.zeros(0, np.int64),
            np.zeros((0, 3)),
            np.zeros((0, dim), np.float32),
        )

    @classmethod
    def concat(cls, tables: Sequence[EmbeddingTable], *, dim: int) -> EmbeddingTable:
        """The rows of ``tables`` one after the other (an empty table if there are none)."""
        if not tables:
            return cls.empty(dim)
        if len(tables) == 1:
            return tables[0]
        return cls(
            np.concatenate([t.segment_id for t in tables]),
            np.concatenate([t.node_id for t in tables]),
            np.concatenate([t.position_nm for t in tables]),
            np.concatenate([t.embedding for t in tables]),
        )

    def __len__(self) -> int:
        return len(self.segment_id)

    @property
    def dim(self) -> int:
        """The embedding dimension."""
        return self.embedding.shape[1]

    def take(self, rows: np.ndarray) -> EmbeddingTable:
        """The rows at the integer indices (or boolean mask) ``rows``."""
        return EmbeddingTable(
            self.segment_id[rows], self.node_id[rows], self.position_nm[rows], self.embedding[rows]
        )

    def sorted(self) -> EmbeddingTable:
        """The rows ordered by (segment id, node id); ties keep their order."""
        return self.take(np.lexsort((self.node_id, self.segment_id)))

    def segments(self) -> np.ndarray:
        """The distinct segment ids, ascending (uint64)."""
        return np.unique(self.segment_id)

    def to_frame(self) -> pd.DataFrame:
        """A data frame: segment_id, node_id, z_nm, y_nm, x_nm, e0 … e{dim-1}."""
        keys = pd.DataFrame(
            {
                "segment_id": self.segment_id,
                "node_id": self.node_id,
                "z_nm": self.position_nm[:, 0],
                "y_nm": self.position_nm[:, 1],
                "x_nm": self.position_nm[:, 2],
            }
        )
        # One 2D block for the embeddings: a column at a time would copy D times.
        values = pd.DataFrame(self.embedding, columns=[f"e{i}" for i in range(self.dim)])
        return pd.concat([keys, values], axis=1)


def as_segment_ids(values: object, *, name: str) -> np.ndarray:
    """``values`` as a 1D uint64 array; non-integers and negative ids are refused."""
    return _as_ids(values, name, np.dtype(np.uint64))


def as_node_ids(values: object, *, name: str) -> np.ndarray:
    """``values`` as a 1D int64 array; non-integers and ids beyond int64 are refused."""
    return _as_ids(values, name, np.dtype(np.int64))


def _as_ids(values: object, name: str, dtype: np.dtype) -> np.ndarray:
    array = np.atleast_1d(np.asarray(values))
    python_ints = False
    if array.dtype.kind in "fO" and not isinstance(values, np.ndarray):
        # A list mixing ints beyond int64 with small ones makes numpy guess
        # float64, which rounds ids: keep Python ints exact.
        items = np.asarray(values, dtype=object).ravel().tolist()
        python_ints = all(isinstance(v, int) and not isinstance(v, bool) for v in items)
        if python_ints:
            array = np.array(items, dtype=object)
    if array.size == 0:
        return np.zeros(0, dtype)
    if array.ndim != 1 or not (np.issubdtype(array.dtype, np.integer) or python_ints):
        raise SegmentationDtypeError(
            f"{name} must be a 1D array of integers, got {array.dtype} of shape {array.shape}"
        )
    limits = np.iinfo(dtype)
    low, high = array.min(), array.max()
    if low < limits.min:
        raise ValueError(f"{name} must not be negative, got {low}")
    if high > limits.max:
        raise ValueError(f"{name} must fit in {dtype}, got {high}")
    return array.astype(dtype, copy=False)


def first_of_each_key(segment_id: np.ndarray, node_id: np.ndarray) -> np.ndarray:
    """Indices of the first row of each (segment, node) key, ordered by key."""
    order = np.lexsort((node_id, segment_id))  # stable: equal keys keep their row order
    seg, node = segment_id[order], node_id[order]
    first = np.ones(len(order), bool)
    first[1:] = (seg[1:] != seg[:-1]) | (node[1:] != node[:-1])
    return order[first]


def pairs_in(
    segment_id: np.ndarray,
    node_id: np.ndarray,
    known_segment_id: np.ndarray,
    known_node_id: np.ndarray,
) -> np.ndarray:
    """Boolean mask: which (segment, node) pairs occur among the known pairs."""
    n_known = len(known_segment_id)
    if n_known == 0 or len(segment_id) == 0:
        return np.zeros(len(segment_id), bool)
    seg = np.concatenate([known_segment_id, segment_id])
    node = np.concatenate([known_node_id, node_id])
    is_query = np.arange(len(seg)) >= n_known
    # Sorted by key with known pairs first among equals: a query is known exactly
    # when the first row of its key's run is a known pair.
    order = np.lexsort((is_query, node, seg))
    seg, node, is_query = seg[order], node[order], is_query[order]
    starts = np.ones(len(order), bool)
    starts[1:] = (seg[1:] != seg[:-1]) | (node[1:] != node[:-1])
    run_start = np.maximum.accumulate(np.where(starts, np.arange(len(order)), 0))
    found = np.zeros(len(segment_id), bool)
    found[order[is_query] - n_known] = ~is_query[run_start[is_query]]
    return found

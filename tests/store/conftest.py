"""Embedding rows whose values follow from their keys, so any writer makes the same row."""

from __future__ import annotations

import numpy as np
import pytest

from napari_segclr.store import EmbeddingStore

SIGNATURE = {
    "model_hash": "abc123",
    "model": {"dim": 8},
    "data": {"em": "raw.zarr", "voxel_nm": [40, 8, 8]},
}
DIM = 8
BIG = 2**63 - 5  # segment ids straddle 2**63: uint64 only, lost in int64 or float64


def _rows_for(segment_ids, node_ids, dim: int = DIM):
    """(segment ids, node ids, positions, embeddings) computed from the keys alone."""
    seg = np.asarray(segment_ids, dtype=np.uint64)
    node = np.asarray(node_ids, dtype=np.int64)
    phase = (seg % np.uint64(1009)).astype(np.float64) + 0.001 * node
    position = np.stack([phase * 40, phase * 8 + 1, node * 8.0 + 0.5], axis=1)
    embedding = np.sin(phase[:, None] * np.arange(1, dim + 1)).astype(np.float32)
    return seg, node, position, embedding


def _grid(n_segments: int, n_nodes: int, *, first_segment: int = BIG, first_node: int = 0):
    """Rows for every (segment, node) of a grid of segments × nodes."""
    seg = np.repeat(np.arange(n_segments, dtype=np.uint64) + np.uint64(first_segment), n_nodes)
    node = np.tile(np.arange(first_node, first_node + n_nodes, dtype=np.int64), n_segments)
    return _rows_for(seg, node)


@pytest.fixture
def store(tmp_path) -> EmbeddingStore:
    return EmbeddingStore.create(tmp_path / "emb.zarr", signature=SIGNATURE, dim=DIM)


@pytest.fixture
def rows_for():
    """``rows_for(segment_ids, node_ids)`` → the four columns of those rows."""
    return _rows_for


@pytest.fixture
def grid():
    """``grid(n_segments, n_nodes, first_segment=…, first_node=…)`` → four columns."""
    return _grid


@pytest.fixture
def signature() -> dict:
    return dict(SIGNATURE)

"""The in-memory table and the key operations the store is built on."""

from __future__ import annotations

import numpy as np
import pytest

from napari_segclr.exceptions import SegmentationDtypeError, ShapeMismatchError
from napari_segclr.store import EmbeddingTable
from napari_segclr.store.table import first_of_each_key, pairs_in


def test_pairs_in_matches_a_python_set():
    rng = np.random.default_rng(0)
    known_seg = rng.integers(0, 5, 40).astype(np.uint64) + np.uint64(2**63)
    known_node = rng.integers(0, 8, 40)
    seg = rng.integers(0, 6, 100).astype(np.uint64) + np.uint64(2**63)
    node = rng.integers(0, 9, 100)
    known = set(zip(known_seg.tolist(), known_node.tolist(), strict=True))
    expected = [(s, n) in known for s, n in zip(seg.tolist(), node.tolist(), strict=True)]
    np.testing.assert_array_equal(pairs_in(seg, node, known_seg, known_node), expected)
    assert not pairs_in(seg, node, known_seg[:0], known_node[:0]).any()


def test_first_of_each_key_keeps_the_first_row_of_each_key():
    seg = np.array([3, 1, 3, 1, 3], np.uint64)
    node = np.array([0, 2, 0, 2, 1])
    np.testing.assert_array_equal(first_of_each_key(seg, node), [1, 0, 4])


def test_table_converts_and_validates_columns():
    table = EmbeddingTable(
        [2**64 - 1, 5], np.array([1, 2], np.uint32), [[1, 2, 3]] * 2, np.ones((2, 4))
    )
    assert table.segment_id.dtype == np.uint64 and table.segment_id[0] == 2**64 - 1
    assert table.node_id.dtype == np.int64 and table.embedding.dtype == np.float32
    assert len(table) == 2 and table.dim == 4
    np.testing.assert_array_equal(table.sorted().segment_id, [5, 2**64 - 1])
    with pytest.raises(ShapeMismatchError, match="positions"):
        EmbeddingTable([1, 2], [1, 2], np.zeros((2, 2)), np.ones((2, 4)))
    with pytest.raises(ShapeMismatchError):
        EmbeddingTable([1, 2], [1, 2], np.zeros((2, 3)), np.ones((3, 4)))
    with pytest.raises(SegmentationDtypeError, match="segment_ids"):
        EmbeddingTable([1.5, 2], [1, 2], np.zeros((2, 3)), np.ones((2, 4)))
    with pytest.raises(ValueError, match="node_ids must fit"):
        EmbeddingTable([1], np.array([2**63], np.uint64), np.zeros((1, 3)), np.ones((1, 4)))


def test_to_frame_has_one_column_per_value():
    table = EmbeddingTable([7], [3], [[10.0, 20.0, 30.0]], [[0.5, 0.25]])
    frame = table.to_frame()
    assert frame.to_dict("records") == [
        {
            "segment_id": 7,
            "node_id": 3,
            "z_nm": 10.0,
            "y_nm": 20.0,
            "x_nm": 30.0,
            "e0": 0.5,
            "e1": 0.25,
        }
    ]
    assert frame["segment_id"].dtype == np.uint64

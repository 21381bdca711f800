"""Labels of whole segments or single nodes, matched to embedding rows."""

from __future__ import annotations

import numpy as np
import pytest

from napari_segclr.exceptions import LabelError, SegmentNotFoundError
from napari_segclr.heads import select_labelled
from napari_segclr.store import EmbeddingTable

BIG = 2**64 - 3


@pytest.fixture
def table() -> EmbeddingTable:
    segments = np.array([5, BIG, 5, BIG, 9, 5], np.uint64)
    nodes = np.array([0, 0, 1, 1, 0, 2])
    return EmbeddingTable(segments, nodes, np.zeros((6, 3)), np.zeros((6, 2)))


def test_segments_label_all_their_nodes_and_nodes_themselves(table):
    rows, labels = select_labelled(
        table, [5, BIG, 9], ["axon", "glia", "axon"], node_ids=[np.nan, 1, np.nan]
    )
    assert rows.tolist() == [0, 2, 3, 4, 5]
    assert labels.tolist() == ["axon", "axon", "glia", "axon", "axon"]
    # A node labelled twice alike counts once.
    rows, _ = select_labelled(table, [5, 5], ["axon", "axon"], node_ids=[np.nan, 1])
    assert rows.tolist() == [0, 2, 5]


def test_unknown_segments_nodes_and_conflicts_are_refused(table):
    with pytest.raises(SegmentNotFoundError, match="segment 7"):
        select_labelled(table, [5, 7], ["axon", "glia"])
    with pytest.raises(SegmentNotFoundError, match=f"node 4 of segment {BIG}"):
        select_labelled(table, [BIG], ["glia"], node_ids=[4])
    with pytest.raises(LabelError, match="conflicting"):
        select_labelled(table, [5, 5], ["axon", "glia"], node_ids=[np.nan, 2])
    with pytest.raises(LabelError, match="integers"):
        select_labelled(table, [5], ["axon"], node_ids=[0.5])
    with pytest.raises(LabelError, match="missing"):
        select_labelled(table, [5, 9], ["axon", None])

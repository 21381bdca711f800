"""Radius aggregation against brute-force references, on branched skeletons."""

from __future__ import annotations

import numpy as np
import pytest

from napari_segclr.aggregate import Aggregation, aggregate_embeddings
from napari_segclr.exceptions import SegmentNotFoundError, ShapeMismatchError
from napari_segclr.skeleton import Skeleton, path_distances, resample
from napari_segclr.store import EmbeddingTable

SPACING = 1000.0
RADIUS_UM = 4.3  # no distance between nodes lies within rounding of it


def _branched(segment_id: int, shift: float, seed: int) -> Skeleton:
    """A trunk along x with two side branches; one turns back and runs 3 µm beside the
    trunk, so straight-line neighbours are not path neighbours there. Resampled at 1 µm."""
    rng = np.random.default_rng(seed)
    corners = np.array(
        [
            [0, 0, 0],  # 0 root
            [0, 0, 6000],  # 1 branch point
            [0, 0, 20000],  # 2 end of trunk
            [0, 3000, 6000],  # 3 branch turning
            [0, 3000, 16000],  # 4 beside the trunk
            [0, -7000, 12000],  # 5 a branch from the trunk at node 2's side
            [0, 0, 12000],  # 6 branch point on the trunk
        ],
        float,
    )
    corners += rng.normal(scale=40, size=corners.shape) + np.array([shift, 0, 0])
    parents = np.array([-1, 0, 6, 1, 3, 6, 1])
    return resample(Skeleton(segment_id, corners, parents, np.full(7, 100.0)), SPACING)


def _table(skeletons: list[Skeleton], rows: np.ndarray | None = None, seed: int = 0):
    segment = np.concatenate([np.full(len(s), s.segment_id, np.uint64) for s in skeletons])
    node = np.concatenate([np.arange(len(s)) for s in skeletons])
    position = np.concatenate([s.nodes for s in skeletons])
    embedding = np.random.default_rng(seed).normal(size=(len(segment), 5))
    table = EmbeddingTable(segment, node, position, embedding)
    return table if rows is None else table.take(rows)


def _brute_force(table: EmbeddingTable, close) -> np.ndarray:
    """Means over rows j of the same segment with close(i, j) true, one row at a time."""
    means = np.empty_like(table.embedding, dtype=np.float64)
    for i in range(len(table)):
        same = np.flatnonzero(table.segment_id == table.segment_id[i])
        keep = same[[close(i, j) for j in same]]
        means[i] = table.embedding[keep].astype(np.float64).mean(axis=0)
    return means


@pytest.fixture(scope="module")
def skeletons() -> dict[int, Skeleton]:
    # Two overlapping segments: averaging must never mix them.
    return {s.segment_id: s for s in (_branched(7, 0.0, 1), _branched(2**64 - 2, 500.0, 2))}


def test_path_means_match_brute_force_and_pass_through_missing_nodes(skeletons):
    full = _table(list(skeletons.values()))
    # Rows shuffled, a quarter of the nodes not embedded: paths still run through them.
    rng = np.random.default_rng(5)
    rows = rng.permutation(len(full))[: 3 * len(full) // 4]
    table = full.take(rows)
    dist = {sid: path_distances(s, np.arange(len(s))) for sid, s in skeletons.items()}

    def close(i, j):
        along = dist[int(table.segment_id[i])]
        return along[table.node_id[i], table.node_id[j]] <= RADIUS_UM * 1000

    out = aggregate_embeddings(table, radius_um=RADIUS_UM, skeletons=skeletons)
    np.testing.assert_allclose(out.embedding, _brute_force(table, close), rtol=1e-5, atol=1e-6)
    assert np.array_equal(out.segment_id, table.segment_id)
    assert np.array_equal(out.node_id, table.node_id)


def test_euclidean_means_match_brute_force(skeletons):
    table = _table(list(skeletons.values()), np.random.default_rng(6).permutation(80))

    def close(i, j):
        return np.linalg.norm(table.position_nm[i] - table.position_nm[j]) <= RADIUS_UM * 1000

    out = aggregate_embeddings(table, radius_um=RADIUS_UM, metric="euclidean")
    np.testing.assert_allclose(out.embedding, _brute_force(table, close), rtol=1e-5, atol=1e-6)


def test_path_without_skeletons_runs_along_the_node_graph(skeletons):
    table = _table(list(skeletons.values()))
    # The reference: each segment's skeleton rebuilt from the nodes linked within 1.5 spacings.
    rebuilt = {}
    for sid in skeletons:
        rows = np.flatnonzero(table.segment_id == sid)
        pos = table.position_nm[rows]
        gaps = np.linalg.norm(pos[:, None] - pos[None], axis=2)
        edges = np.argwhere(np.triu(gaps <= 1.5 * SPACING, k=1))
        skel = Skeleton.from_edges(sid, pos, edges, np.ones(len(pos)))
        order = np.lexsort(skel.nodes.T[::-1])  # from_edges renumbers: map back by position
        back = np.empty(len(pos), int)
        back[np.lexsort(pos.T[::-1])] = order
        rebuilt[sid] = (rows, back, path_distances(skel, np.arange(len(skel))))
    where = {}
    for sid, (rows, back, _) in rebuilt.items():
        where.update({int(r): (sid, back[k]) for k, r in enumerate(rows)})

    def close(i, j):
        sid, a = where[i]
        return rebuilt[sid][2][a, where[j][1]] <= RADIUS_UM * 1000

    out = aggregate_embeddings(table, radius_um=RADIUS_UM, spacing_nm=SPACING)
    np.testing.assert_allclose(out.embedding, _brute_force(table, close), rtol=1e-5, atol=1e-6)


def test_a_branch_passing_close_counts_in_space_but_not_along_the_path(skeletons):
    skel = skeletons[7]
    table = _table([skel])
    # Indicator of the branch that runs beside the trunk (y ≈ 3 µm).
    beside = (table.position_nm[:, 1] > 2500) & (table.position_nm[:, 2] > 9000)
    table = EmbeddingTable(table.segment_id, table.node_id, table.position_nm, beside[:, None])
    trunk = np.flatnonzero(
        (np.abs(table.position_nm[:, 1]) < 100) & (np.abs(table.position_nm[:, 2] - 15000) < 1500)
    )
    path = aggregate_embeddings(table, radius_um=RADIUS_UM, skeletons={7: skel})
    space = aggregate_embeddings(table, radius_um=RADIUS_UM, metric="euclidean")
    assert len(trunk) and (path.embedding[trunk] == 0).all()
    assert (space.embedding[trunk] > 0).all()


def test_deep_random_forests_match_brute_force():
    """Long chains and several trees per segment: the ancestor search at depth."""
    rng = np.random.default_rng(8)
    n = 600
    parents = np.array([-1] + [int(rng.integers(max(0, i - 3), i)) for i in range(1, n)])
    parents[300] = -1  # a second tree in the same segment
    steps = rng.normal(size=(n, 3))
    steps *= 900 / np.linalg.norm(steps, axis=1, keepdims=True)
    nodes = np.zeros((n, 3))
    for i in range(1, n):
        nodes[i] = (nodes[parents[i]] if parents[i] >= 0 else rng.normal(size=3) * 2000) + steps[i]
    skel = Skeleton(3, nodes, parents, np.ones(n))
    table = _table([skel])
    dist = path_distances(skel, np.arange(n))
    for radius_um in (2.5, 6.1):
        out = aggregate_embeddings(table, radius_um=radius_um, skeletons={3: skel})
        expected = _brute_force(table, lambda i, j, r=radius_um: dist[i, j] <= r * 1000)
        np.testing.assert_allclose(out.embedding, expected, rtol=1e-5, atol=1e-6)


def test_radius_zero_and_empty_tables_are_returned_as_is(skeletons):
    table = _table(list(skeletons.values()))
    assert aggregate_embeddings(table, radius_um=0) is table
    empty = EmbeddingTable.empty(5)
    assert aggregate_embeddings(empty, radius_um=3, metric="euclidean") is empty
    # Aggregation records its settings for a head and applies them alike.
    settings = Aggregation(2.0, "euclidean")
    np.testing.assert_array_equal(
        settings.apply(table).embedding,
        aggregate_embeddings(table, radius_um=2.0, metric="euclidean").embedding,
    )


def test_bad_settings_are_refused(skeletons):
    table = _table(list(skeletons.values()))
    with pytest.raises(SegmentNotFoundError, match=str(2**64 - 2)):
        aggregate_embeddings(table, radius_um=3, skeletons={7: skeletons[7]})
    small = {sid: resample(s, 4 * SPACING) for sid, s in skeletons.items()}
    with pytest.raises(ShapeMismatchError, match="beyond"):
        aggregate_embeddings(table, radius_um=3, skeletons=small)
    with pytest.raises(ValueError, match="spacing_nm"):
        aggregate_embeddings(table, radius_um=3)
    with pytest.raises(ValueError, match="metric"):
        aggregate_embeddings(table, radius_um=3, metric="cosine")
    with pytest.raises(ValueError, match="radius_um"):
        aggregate_embeddings(table, radius_um=-1, metric="euclidean")

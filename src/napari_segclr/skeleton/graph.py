"""Skeletons as forests of nodes in physical space, and distances along them.

A skeleton stores one parent per node (``-1`` for a root), so it is a forest by
construction: one tree per connected piece of the segment. Distances "along the
cell" are path lengths over its edges, computed with ``scipy.sparse.csgraph``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.sparse as sp
from scipy.sparse import csgraph

from ..exceptions import ShapeMismatchError

# Dense rows of distances computed at once when the output is sparse: bounds memory
# (about 32 MB of float64) whatever the number of sources and nodes.
_BATCH_ELEMENTS = 1 << 22


@dataclass(frozen=True, eq=False)
class Skeleton:
    """The skeleton of one segment: nodes, parent links and radii, all in nm.

    Attributes
    ----------
    segment_id
        The segment's id (a uint64 value as a Python int).
    nodes
        (N, 3) float node positions in nm, (z, y, x), in physical space (the
        volume's offset applied).
    parents
        (N,) int64 parent index of each node, ``-1`` for a root. A segment in
        several pieces has several roots.
    radii
        (N,) float distance from each node to the segment's boundary, in nm.
    truncated
        True when the segment reached past the region that was read, so the
        skeleton covers only part of it.

    The arrays are copied and made read-only. A skeleton has at least one node.
    """

    segment_id: int
    nodes: np.ndarray
    parents: np.ndarray
    radii: np.ndarray
    truncated: bool = False

    def __post_init__(self) -> None:
        nodes = np.array(self.nodes, dtype=np.float64)
        parents = np.array(self.parents, dtype=np.int64)
        radii = np.array(self.radii, dtype=np.float64)
        n = len(nodes)
        if nodes.ndim != 2 or nodes.shape[1] != 3 or n == 0:
            raise ShapeMismatchError(f"skeleton nodes must be (N >= 1, 3), got {nodes.shape}")
        if parents.shape != (n,) or radii.shape != (n,):
            raise ShapeMismatchError(
                f"skeleton parents {parents.shape} and radii {radii.shape} must be ({n},)"
            )
        if not (np.all(np.isfinite(nodes)) and np.all(np.isfinite(radii))):
            raise ValueError("skeleton nodes and radii must be finite")
        if np.any(parents < -1) or np.any(parents >= n) or np.any(parents == np.arange(n)):
            raise ValueError("skeleton parents must be -1 or the index of another node")
        child = np.flatnonzero(parents >= 0)
        links = sp.coo_array((np.ones(len(child)), (child, parents[child])), shape=(n, n))
        # Each piece of a forest holds exactly one root; a piece without one is a cycle.
        n_pieces = csgraph.connected_components(links, directed=False)[0]
        if n_pieces != n - len(child):
            raise ValueError("skeleton parents must form a forest (no cycles)")
        for arr in (nodes, parents, radii):
            arr.setflags(write=False)
        object.__setattr__(self, "segment_id", int(self.segment_id))
        object.__setattr__(self, "nodes", nodes)
        object.__setattr__(self, "parents", parents)
        object.__setattr__(self, "radii", radii)
        object.__setattr__(self, "truncated", bool(self.truncated))

    @classmethod
    def from_edges(
        cls,
        segment_id: int,
        nodes: np.ndarray,
        edges: np.ndarray,
        radii: np.ndarray,
        *,
        truncated: bool = False,
    ) -> Skeleton:
        """Build a skeleton from an undirected node graph.

        Cycles are cut (a minimum spanning forest keeps the shortest edges); each
        piece is rooted at its widest node; nodes are renumbered breadth-first so
        that every parent comes before its children.
        """
        nodes = np.asarray(nodes, dtype=np.float64).reshape(-1, 3)
        radii = np.asarray(radii, dtype=np.float64)
        edges = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
        n = len(nodes)
        if n == 0:
            raise ShapeMismatchError("a skeleton needs at least one node, got none")
        if radii.shape != (n,):
            raise ShapeMismatchError(f"skeleton radii {radii.shape} must be ({n},)")
        if edges.size and (edges.min() < 0 or edges.max() >= n):
            raise ValueError(f"skeleton edges must index the {n} nodes")
        lengths = np.linalg.norm(nodes[edges[:, 0]] - nodes[edges[:, 1]], axis=1)
        # A small constant keeps zero-length edges, which a sparse spanning tree would drop.
        weights = sp.coo_array((lengths + 1e-6, (edges[:, 0], edges[:, 1])), shape=(n, n))
        forest = csgraph.minimum_spanning_tree(weights.tocsr())
        labels = csgraph.connected_components(forest, directed=False)[1]
        by_width = np.lexsort((-radii, labels))
        roots = by_width[np.unique(labels[by_width], return_index=True)[1]]
        # One breadth-first walk from a virtual node linked to every root orders all pieces.
        tree = forest.tocoo()
        rows = np.concatenate([tree.row, np.full(len(roots), n)])
        cols = np.concatenate([tree.col, roots])
        walk = sp.coo_array((np.ones(len(rows)), (rows, cols)), shape=(n + 1, n + 1)).tocsr()
        order, pred = csgraph.breadth_first_order(walk, n, directed=False, return_predecessors=True)
        order = order[1:]
        new_index = np.empty(n + 1, dtype=np.int64)
        new_index[order] = np.arange(n)
        new_index[n] = -1
        return cls(
            segment_id,
            nodes[order],
            new_index[pred[order]],
            radii[order],
            truncated=truncated,
        )

    def __len__(self) -> int:
        return len(self.nodes)

    @property
    def edges(self) -> np.ndarray:
        """(E, 2) int64 edges as (child, parent) index pairs."""
        child = np.flatnonzero(self.parents >= 0)
        return np.stack([child, self.parents[child]], axis=1)

    @property
    def edge_lengths(self) -> np.ndarray:
        """(E,) length in nm of each edge, in the order of :attr:`edges`."""
        child, parent = self.edges.T
        return np.linalg.norm(self.nodes[child] - self.nodes[parent], axis=1)

    @property
    def cable_length(self) -> float:
        """Total length of the skeleton's edges in nm."""
        return float(self.edge_lengths.sum())

    @property
    def roots(self) -> np.ndarray:
        """Indices of the root nodes, one per connected piece."""
        return np.flatnonzero(self.parents < 0)

    @property
    def degrees(self) -> np.ndarray:
        """(N,) number of neighbours of each node (1: an end, 3 or more: a branch point)."""
        return np.bincount(self.edges.ravel(), minlength=len(self))

    @cached_property
    def graph(self) -> sp.csr_array:
        """(N, N) symmetric sparse matrix of edge lengths in nm."""
        child, parent = self.edges.T
        lengths = self.edge_lengths
        n = len(self)
        return sp.csr_array(
            (
                np.concatenate([lengths, lengths]),
                (np.concatenate([child, parent]), np.concatenate([parent, child])),
            ),
            shape=(n, n),
        )


def path_distances(
    skel: Skeleton, sources: int | np.ndarray, *, max_nm: float | None = None
) -> np.ndarray | sp.csr_array:
    """Distances in nm along the skeleton from source nodes to every node.

    Parameters
    ----------
    skel
        The skeleton.
    sources
        One node index or an array of S node indices.
    max_nm
        If given, only distances up to ``max_nm`` are computed and the result is a
        sparse (S, N) ``csr_array`` whose stored entries are exactly the nodes
        within ``max_nm`` of each source (the source itself is stored as an
        explicit 0); memory then stays bounded for skeletons of 10⁵ nodes.

    Returns
    -------
    Without ``max_nm``: a dense (S, N) array, or (N,) for a single source, with
    ``inf`` for nodes in other pieces. With ``max_nm``: the sparse matrix above.
    """
    src = _node_indices(skel, sources)
    if max_nm is None:
        dist = csgraph.dijkstra(skel.graph, directed=False, indices=src)
        return dist[0] if np.ndim(sources) == 0 else dist
    limit = _non_negative(max_nm, "max_nm")
    n = len(skel)
    batch = max(1, _BATCH_ELEMENTS // n)
    rows, cols, vals = [], [], []
    for start in range(0, len(src), batch):
        dist = csgraph.dijkstra(
            skel.graph, directed=False, indices=src[start : start + batch], limit=limit
        )
        r, c = np.nonzero(dist <= limit)
        rows.append(r + start)
        cols.append(c)
        vals.append(dist[r, c])
    return sp.csr_array(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(len(src), n),
    )


def nodes_within(skel: Skeleton, node: int, radius_nm: float) -> np.ndarray:
    """Sorted indices of the nodes at most ``radius_nm`` from ``node`` along the skeleton."""
    src = _node_indices(skel, node)
    limit = _non_negative(radius_nm, "radius_nm")
    dist = csgraph.dijkstra(skel.graph, directed=False, indices=src[0], limit=limit)
    return np.flatnonzero(dist <= limit)


def resample(skel: Skeleton, spacing_nm: float) -> Skeleton:
    """Place nodes about every ``spacing_nm`` along the skeleton.

    Ends, branch points and roots are kept where they are; each unbranched run
    between two of them is divided into equal steps as close to ``spacing_nm``
    as possible (at least one step), with positions and radii interpolated
    along the original path. Roots stay roots, so the tree structure is kept.
    """
    spacing = _non_negative(spacing_nm, "spacing_nm")
    if spacing == 0:
        raise ValueError("spacing_nm must be positive, got 0")
    parents = skel.parents
    key = (skel.degrees != 2) | (parents < 0)
    depth = csgraph.dijkstra(skel.graph, directed=False, indices=skel.roots, min_only=True)

    # Unbranched runs: each chain of non-key nodes hangs between a key node below
    # (``bottom``) and a key node above (``top``).
    inner = np.flatnonzero(~key)
    inner_edges = skel.edges[~key[skel.edges].any(axis=1)]
    chain_graph = sp.coo_array(
        (np.ones(len(inner_edges)), (inner_edges[:, 0], inner_edges[:, 1])),
        shape=(len(skel), len(skel)),
    )
    chain = csgraph.connected_components(chain_graph, directed=False)[1]
    inner = inner[np.lexsort((depth[inner], chain[inner]))]
    starts = np.flatnonzero(np.diff(chain[inner], prepend=-1))
    chain_nodes = {int(chain[run[0]]): run for run in np.split(inner, starts[1:]) if len(run)}

    key_idx = np.flatnonzero(key)
    new_index = np.full(len(skel), -1, dtype=np.int64)
    new_index[key_idx] = np.arange(len(key_idx))
    new_parents = np.full(len(key_idx), -1, dtype=np.int64)
    extra_nodes, extra_radii, extra_parents = [], [], []
    n_out = len(key_idx)
    for bottom in key_idx[parents[key_idx] >= 0]:
        above = parents[bottom]
        run = np.empty(0, dtype=np.int64) if key[above] else chain_nodes[chain[above]]
        top = above if len(run) == 0 else parents[run[0]]
        path = np.concatenate([[top], run, [bottom]])
        arc = depth[path] - depth[top]
        steps = max(1, round(arc[-1] / spacing))
        at = arc[-1] * np.arange(1, steps) / steps
        extra_nodes.append(
            np.stack([np.interp(at, arc, skel.nodes[path, k]) for k in range(3)], axis=1)
        )
        extra_radii.append(np.interp(at, arc, skel.radii[path]))
        chain_ids = n_out + np.arange(steps - 1)
        extra_parents.append(np.r_[new_index[top], chain_ids[:-1]][: steps - 1])
        new_parents[new_index[bottom]] = chain_ids[-1] if steps > 1 else new_index[top]
        n_out += steps - 1
    return Skeleton(
        skel.segment_id,
        np.concatenate([skel.nodes[key_idx], *extra_nodes]),
        np.concatenate([new_parents, *extra_parents]),
        np.concatenate([skel.radii[key_idx], *extra_radii]),
        truncated=skel.truncated,
    )


def smooth(skel: Skeleton, *, passes: int = 4) -> Skeleton:
    """Smooth node positions along unbranched runs; ends, branch points and roots stay.

    Each pass moves every other node to ``(parent + 2 × node + child) / 4``.
    Paths traced on a voxel grid zig-zag by a voxel, which can add 40 % to
    cable lengths; a few passes remove that while moving nodes by less than a
    voxel.
    """
    if passes < 0:
        raise ValueError(f"passes must be >= 0, got {passes}")
    child = np.flatnonzero(skel.parents >= 0)
    only_child = np.full(len(skel), -1, dtype=np.int64)
    only_child[skel.parents[child]] = child
    inner = np.flatnonzero((skel.degrees == 2) & (skel.parents >= 0))
    above, below = skel.parents[inner], only_child[inner]
    nodes = skel.nodes.copy()
    for _ in range(passes):
        nodes[inner] = (nodes[above] + 2 * nodes[inner] + nodes[below]) / 4
    return Skeleton(skel.segment_id, nodes, skel.parents, skel.radii, truncated=skel.truncated)


def _node_indices(skel: Skeleton, nodes: int | np.ndarray) -> np.ndarray:
    idx = np.atleast_1d(np.asarray(nodes))
    if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"node indices must be an integer or a 1D integer array, got {nodes!r}")
    if idx.size and (idx.min() < 0 or idx.max() >= len(skel)):
        raise IndexError(f"node index out of range for a skeleton of {len(skel)} nodes")
    return idx.astype(np.int64)


def _non_negative(value: float, name: str) -> float:
    value = float(value)
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite distance >= 0 nm, got {value}")
    return value

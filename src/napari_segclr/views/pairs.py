"""Positive pairs for contrastive training: two points of one segment, near along it.

A pair's first point is drawn uniformly along all the cable of all skeletons:
segments are weighted by cable length, and within a segment every µm of cable
is equally likely, whatever the node spacing of its skeleton (skeletonisers
put nodes densely at branches and sparsely along straight runs). The second
point is drawn uniformly along the cable within ``max_path_nm`` of the first,
measured along the skeleton. Both points may lie between nodes, on edges.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from ..skeleton.graph import Skeleton, path_distances
from .extract import JitterShape, Seed, VolumeSource, as_dataset, extract_views, jitter_centers
from .loader import as_tensor, count_arg, prefetch_arg, prefetch_map
from .spec import ViewSpec, as_view_spec


class Pairs(NamedTuple):
    """Positive pairs: ``segment_ids`` (n,) uint64 and two (n, 3) centre arrays in nm."""

    segment_ids: np.ndarray
    centers_a_nm: np.ndarray
    centers_b_nm: np.ndarray


class PairSampler:
    """Draws positive pairs along skeletons; build once, sample many batches.

    Parameters
    ----------
    skeletons
        Skeletons by segment id. Skeletons without cable (a single node) are
        never drawn.
    max_path_nm
        Largest distance between a pair's points, measured along the skeleton.
    """

    def __init__(self, skeletons: Mapping[int, Skeleton], *, max_path_nm: float) -> None:
        if not isinstance(skeletons, Mapping):
            raise TypeError(f"skeletons must map segment ids to skeletons, got {skeletons!r}")
        for key, skel in skeletons.items():
            if not isinstance(skel, Skeleton):
                raise TypeError(f"skeletons[{key}] must be a Skeleton, got {type(skel).__name__}")
            if int(key) != skel.segment_id:
                raise ValueError(f"skeletons[{key}] is the skeleton of segment {skel.segment_id}")
        if not (np.isfinite(max_path_nm) and max_path_nm > 0):
            raise ValueError(f"max_path_nm must be a positive number of nm, got {max_path_nm!r}")
        self.max_path_nm = float(max_path_nm)
        self.skeletons = [s for s in skeletons.values() if s.cable_length > 0]
        if not self.skeletons:
            raise ValueError("skeletons hold no cable to draw pairs from (none has an edge)")
        self._edge_ends = [np.cumsum(s.edge_lengths) for s in self.skeletons]
        self._segment_ends = np.cumsum([ends[-1] for ends in self._edge_ends])

    def sample(self, n_pairs: int, *, generator: Seed = None) -> Pairs:
        """``n_pairs`` pairs, drawn with ``generator`` (a seed or a numpy Generator)."""
        if isinstance(n_pairs, bool) or not isinstance(n_pairs, int | np.integer) or n_pairs < 0:
            raise ValueError(f"n_pairs must be a non-negative integer, got {n_pairs!r}")
        rng = np.random.default_rng(generator)
        along = rng.random(n_pairs) * self._segment_ends[-1]
        partner_draws = rng.random((n_pairs, 2))
        which = np.minimum(
            np.searchsorted(self._segment_ends, along, side="right"), len(self.skeletons) - 1
        )
        ids = np.zeros(n_pairs, dtype=np.uint64)
        a = np.zeros((n_pairs, 3))
        b = np.zeros((n_pairs, 3))
        for s in np.unique(which):
            members = np.flatnonzero(which == s)
            start = self._segment_ends[s - 1] if s else 0.0
            skel = self.skeletons[s]
            ids[members] = skel.segment_id
            a[members], b[members] = self._pairs_on(
                skel, self._edge_ends[s], along[members] - start, partner_draws[members]
            )
        return Pairs(ids, a, b)

    def _pairs_on(
        self, skel: Skeleton, edge_ends: np.ndarray, along: np.ndarray, draws: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Pairs on one skeleton, first points at ``along`` nm of its cable (edge order)."""
        lengths = skel.edge_lengths
        edge = np.minimum(np.searchsorted(edge_ends, along, side="right"), len(lengths) - 1)
        offset = np.clip(along - (edge_ends[edge] - lengths[edge]), 0, lengths[edge])
        child, parent = skel.edges[edge].T
        anchors = _on_edge(skel, child, offset / lengths[edge])
        dist = path_distances(
            skel, np.stack([child, parent], axis=1).ravel(), max_nm=self.max_path_nm
        )
        partners = np.array(
            [
                self._partner(skel, dist, i, child[i], lengths[edge[i]], offset[i], draws[i])
                for i in range(len(along))
            ]
        ).reshape(-1, 3)
        return anchors, partners

    def _partner(
        self,
        skel: Skeleton,
        dist: Any,
        i: int,
        child: int,
        length: float,
        offset: float,
        draws: np.ndarray,
    ) -> np.ndarray:
        """A point uniform on the cable within reach of the point ``offset`` nm up an edge."""
        reach = self.max_path_nm
        # Distance from the point to every node within reach, through either end of its edge.
        rows = [slice(dist.indptr[r], dist.indptr[r + 1]) for r in (2 * i, 2 * i + 1)]
        nodes = np.concatenate([dist.indices[r] for r in rows])
        through = np.concatenate(
            [dist.data[rows[0]] + offset, dist.data[rows[1]] + length - offset]
        )
        nodes, inverse = np.unique(nodes, return_inverse=True)
        node_dist = np.full(len(nodes), np.inf)
        np.minimum.at(node_dist, inverse, through)
        nodes, node_dist = nodes[node_dist <= reach], node_dist[node_dist <= reach]

        # Cable left to walk along each edge leaving a reached node: an edge is reached
        # from its child end over [0, a_child] and from its parent end over [L - a_parent, L].
        graph = skel.graph
        starts, counts = graph.indptr[nodes], np.diff(graph.indptr)[nodes]
        row = np.repeat(np.arange(len(nodes)), counts)
        pos = np.repeat(starts - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
        near, edge_len = graph.indices[pos], graph.data[pos]
        here = nodes[row]
        edge_child = np.where(skel.parents[near] == here, near, here)
        budget = np.clip(reach - node_dist[row], 0, edge_len)
        other = edge_child != child  # the point's own edge is handled below
        edge_child, budget, from_child = (
            edge_child[other],
            budget[other],
            (here == edge_child)[other],
        )
        keys, key_of = np.unique(edge_child, return_inverse=True)
        a_child = np.zeros(len(keys))
        a_parent = np.zeros(len(keys))
        np.add.at(a_child, key_of[from_child], budget[from_child])
        np.add.at(a_parent, key_of[~from_child], budget[~from_child])
        key_len = np.linalg.norm(skel.nodes[keys] - skel.nodes[skel.parents[keys]], axis=1)
        # The point's own edge is reached directly, over [offset - reach, offset + reach].
        own_lo = max(0.0, offset - reach)
        keys = np.append(keys, child)
        reached = np.append(
            np.minimum(a_child + a_parent, key_len), min(length, offset + reach) - own_lo
        )
        key_len = np.append(key_len, length)

        ends = np.cumsum(reached)
        pick = min(int(np.searchsorted(ends, draws[0] * ends[-1], side="right")), len(keys) - 1)
        x = draws[1] * reached[pick]
        if pick == len(keys) - 1:
            up = own_lo + x
        else:
            up = x if x < a_child[pick] else key_len[pick] - (x - a_child[pick])
        return _on_edge(skel, keys[pick : pick + 1], np.array([up / key_len[pick]]))[0]


def sample_pairs(
    skeletons: Mapping[int, Skeleton],
    n_pairs: int,
    *,
    max_path_nm: float,
    generator: Seed = None,
) -> Pairs:
    """Positive pairs: two points of one segment within ``max_path_nm`` along its skeleton.

    See :class:`PairSampler` (build one to draw many batches from the same skeletons).

    Examples
    --------
    >>> ids, a, b = sample_pairs(skeletons, 64, max_path_nm=3000, generator=0)  # doctest: +SKIP
    """
    return PairSampler(skeletons, max_path_nm=max_path_nm).sample(n_pairs, generator=generator)


class PairBatches:
    """Batches ``(views_a, views_b)`` of positive pairs for contrastive training.

    Each batch draws ``batch_size`` pairs (:class:`PairSampler`) and cuts both
    views of every pair in one :func:`extract_views` call, each with its own
    random centre shift; the two views of a pair are close, so they share crops.

    Parameters
    ----------
    source, spec
        The volumes and the views (see :func:`extract_views`).
    skeletons, max_path_nm
        See :class:`PairSampler`.
    batch_size
        Pairs per batch.
    n_batches
        Batches per iteration; None: endless.
    jitter_nm, jitter_shape
        Random shift of each view centre (see :func:`jitter_centers`).
    generator
        Seed or numpy Generator for pairs and shifts. Everything random is
        drawn in order on the iterating thread, so the batches do not depend
        on the workers; iterating again continues the stream.
    workers, prefetch, to_torch, snap
        As for :class:`ViewLoader`.
    """

    def __init__(
        self,
        source: VolumeSource,
        skeletons: Mapping[int, Skeleton],
        spec: ViewSpec,
        *,
        max_path_nm: float,
        batch_size: int = 32,
        n_batches: int | None = None,
        jitter_nm: float | Sequence[float] = 0.0,
        jitter_shape: JitterShape = "cube",
        generator: Seed = None,
        workers: int = 1,
        prefetch: int | None = None,
        to_torch: bool = False,
        snap: bool = True,
    ) -> None:
        self.dataset = as_dataset(source)
        self.sampler = PairSampler(skeletons, max_path_nm=max_path_nm)
        self.spec = as_view_spec(spec)
        self.batch_size = count_arg(batch_size, "batch_size", minimum=1)
        self.n_batches = None if n_batches is None else count_arg(n_batches, "n_batches", minimum=0)
        jitter_centers(np.zeros((0, 3)), jitter_nm, shape=jitter_shape)  # validates them
        self.jitter_nm = jitter_nm
        self.jitter_shape = jitter_shape
        self.rng = np.random.default_rng(generator)
        self.workers = count_arg(workers, "workers", minimum=0)
        self.prefetch = prefetch_arg(prefetch, self.workers)
        self.to_torch = bool(to_torch)
        self.snap = bool(snap)

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        count = itertools.count() if self.n_batches is None else range(self.n_batches)
        tasks = (self._draw() for _ in count)
        for views_a, views_b in prefetch_map(
            self._extract, tasks, workers=self.workers, ahead=self.prefetch
        ):
            if self.to_torch:
                yield as_tensor(views_a), as_tensor(views_b)
            else:
                yield views_a, views_b

    def _draw(self) -> tuple[Pairs, int]:
        """One batch of pairs, and a seed for their views' shifts."""
        pairs = self.sampler.sample(self.batch_size, generator=self.rng)
        return pairs, int(self.rng.integers(2**63))

    def _extract(self, task: tuple[Pairs, int]) -> tuple[np.ndarray, np.ndarray]:
        (ids, a, b), seed = task
        views = extract_views(
            self.dataset,
            np.concatenate([ids, ids]),
            np.concatenate([a, b]),
            self.spec,
            jitter_nm=self.jitter_nm,
            jitter_shape=self.jitter_shape,
            generator=seed,
            snap=self.snap,
        )
        return views[: len(ids)], views[len(ids) :]


def _on_edge(skel: Skeleton, child: np.ndarray, fraction: np.ndarray) -> np.ndarray:
    """Points a ``fraction`` of the way from each ``child`` node to its parent."""
    start = skel.nodes[child]
    return start + fraction[:, None] * (skel.nodes[skel.parents[child]] - start)

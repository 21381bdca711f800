"""Positive pairs along skeletons: same segment, close along the cell, cable-weighted."""

from __future__ import annotations

import numpy as np
import pytest

from napari_segclr.io import Dataset, Volume
from napari_segclr.skeleton import Skeleton, path_distances
from napari_segclr.views import PairBatches, PairSampler, ViewSpec, sample_pairs

ID = 2**60


def _comb(segment_id: int, offset: float) -> Skeleton:
    """A spine along x with three teeth along y, in the plane z = offset (nm)."""
    spine = [[offset, 0.0, x] for x in np.arange(0, 3001, 250)]
    nodes = list(spine)
    parents = [-1, *range(len(spine) - 1)]
    for root in (2, 6, 10):
        for k in range(1, 5):
            nodes.append([offset, 300.0 * k, spine[root][2]])
            parents.append(root if k == 1 else len(nodes) - 2)
    return Skeleton(segment_id, np.array(nodes), np.array(parents), np.full(len(nodes), 50.0))


def _locate(skel: Skeleton, point: np.ndarray) -> tuple[int, float]:
    """The edge (its child node) a point lies on, and its distance from that child."""
    child, parent = skel.edges.T
    a, b = skel.nodes[child], skel.nodes[parent]
    t = np.clip(np.einsum("ij,ij->i", point - a, b - a) / skel.edge_lengths**2, 0, 1)
    off = np.linalg.norm(a + t[:, None] * (b - a) - point, axis=1)
    e = int(np.argmin(off))
    assert off[e] < 1e-6
    return int(child[e]), float(t[e] * skel.edge_lengths[e])


def _path_nm(skel: Skeleton, p: np.ndarray, q: np.ndarray) -> float:
    """Distance along the skeleton between two points on its edges."""
    (cp, sp), (cq, sq) = _locate(skel, p), _locate(skel, q)
    lp, lq = (float(np.linalg.norm(skel.nodes[c] - skel.nodes[skel.parents[c]])) for c in (cp, cq))
    if cp == cq:
        return abs(sp - sq)
    ends_p = {cp: sp, int(skel.parents[cp]): lp - sp}
    ends_q = {cq: sq, int(skel.parents[cq]): lq - sq}
    dist = path_distances(skel, np.array(list(ends_p)))
    return min(
        dp + dist[i, node] + dq
        for i, dp in enumerate(ends_p.values())
        for node, dq in ends_q.items()
    )


@pytest.fixture(name="combs")
def combs_fixture() -> dict[int, Skeleton]:
    return {ID + 1: _comb(ID + 1, 0.0), ID + 2: _comb(ID + 2, 2000.0)}


def test_pairs_lie_on_one_segment_within_the_path_distance(combs):
    ids, a, b = sample_pairs(combs, 300, max_path_nm=700.0, generator=0)
    assert ids.dtype == np.uint64 and set(ids.tolist()) == set(combs)
    distances = np.array([_path_nm(combs[int(i)], p, q) for i, p, q in zip(ids, a, b, strict=True)])
    assert distances.max() <= 700.0 + 1e-6
    assert distances.max() > 600.0  # the whole reach is used
    # Far apart through space is fine when near along the cell: no pair jumps between teeth.
    assert np.all(np.linalg.norm(a - b, axis=1) <= distances + 1e-6)


def test_partners_spread_uniformly_along_an_unbranched_run():
    line = Skeleton(
        ID, np.array([[0.0, 0, x] for x in range(0, 20001, 400)]), np.arange(-1, 50), np.ones(51)
    )
    _, a, b = sample_pairs({ID: line}, 4000, max_path_nm=1000.0, generator=1)
    shift = b[:, 2] - a[:, 2]
    middle = (a[:, 2] > 1000) & (a[:, 2] < 19000)
    counts = np.histogram(shift[middle], bins=4, range=(-1000, 1000))[0]
    assert counts.min() > 0.85 * counts.mean()
    assert np.all(np.abs(shift) <= 1000.0 + 1e-6)


def test_segments_are_weighted_by_cable(combs):
    short = Skeleton(
        ID + 3, np.array([[5000.0, 0, 0], [5000, 0, 700]]), np.array([-1, 0]), np.ones(2)
    )
    skeletons = {**combs, ID + 3: short}
    ids = sample_pairs(skeletons, 6000, max_path_nm=300.0, generator=2).segment_ids
    cable = {k: s.cable_length for k, s in skeletons.items()}
    share = np.mean(ids == np.uint64(ID + 3))
    assert share == pytest.approx(cable[ID + 3] / sum(cable.values()), rel=0.2)


def test_pairs_are_seeded(combs):
    first = sample_pairs(combs, 20, max_path_nm=500.0, generator=5)
    again = sample_pairs(combs, 20, max_path_nm=500.0, generator=5)
    for x, y in zip(first, again, strict=True):
        np.testing.assert_array_equal(x, y)


def test_sampler_rejects_bad_input(combs):
    lone = Skeleton(ID + 4, np.zeros((1, 3)), np.array([-1]), np.ones(1))
    with pytest.raises(ValueError, match="no cable"):
        PairSampler({ID + 4: lone}, max_path_nm=100.0)
    with pytest.raises(ValueError, match="max_path_nm"):
        PairSampler(combs, max_path_nm=0.0)
    with pytest.raises(ValueError, match="is the skeleton of segment"):
        PairSampler({7: combs[ID + 1]}, max_path_nm=100.0)


def test_pair_batches_give_views_of_both_ends(combs):
    # A segmentation painted along each comb's cable, 40 nm voxels.
    shape = (64, 48, 96)
    seg = np.zeros(shape, dtype=np.uint64)
    for segment_id, skel in combs.items():
        child, parent = skel.edges.T
        for t in np.linspace(0, 1, 20):
            points = skel.nodes[child] + t * (skel.nodes[parent] - skel.nodes[child])
            z, y, x = np.round(points / 40.0).astype(int).T
            seg[z, y, x] = segment_id
    em = np.full(shape, 128, dtype=np.uint8)
    dataset = Dataset(Volume(em, 40.0), Volume(seg, 40.0, kind="labels"))
    spec = ViewSpec((5, 5, 5), 40.0, ("mask",))
    batches = PairBatches(
        dataset,
        combs,
        spec,
        max_path_nm=500.0,
        batch_size=8,
        n_batches=3,
        jitter_nm=20.0,
        generator=3,
        workers=2,
    )
    out = list(batches)
    assert len(out) == 3
    for views_a, views_b in out:
        assert views_a.shape == views_b.shape == (8, 1, 5, 5, 5)
        assert views_a.reshape(8, -1).any(axis=1).all() and views_b.reshape(8, -1).any(axis=1).all()
    again = list(
        PairBatches(
            dataset,
            combs,
            spec,
            max_path_nm=500.0,
            batch_size=8,
            n_batches=3,
            jitter_nm=20.0,
            generator=3,
            workers=0,
        )
    )
    for (a1, b1), (a2, b2) in zip(out, again, strict=True):
        np.testing.assert_array_equal(a1, a2)
        np.testing.assert_array_equal(b1, b2)

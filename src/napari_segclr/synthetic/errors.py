"""Segment ids and realistic segmentation errors, decided per group of cells.

Every cell gets a large sparse segment id (hashed from the seed and its cell
id). With ``split_rate`` a cell may lose a subtree (cut at a thin place: a
spine neck, a thin branch) to a new segment; with ``merge_rate`` a cell may be
merged into a touching cell of the same group, taking that cell's segment id.
Merge targets are never merge sources, so merges never chain and each decision
needs only the cells of one tile.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from .cell import Compartment
from .noise import make_ids, rng_for, uniform
from .skeletons import Skeletons

_SALT_SEG, _SALT_SPLIT, _SALT_MERGE, _SALT_PARTNER = 201, 202, 203, 204
_CONTACT_NM = 1000.0  # nodes farther apart than this never count as touching


def inject_errors(sk: Skeletons, *, seed: int, merge_rate: float, split_rate: float) -> list[dict]:
    """Fill ``sk.segment`` in place; return one record per injected error.

    Records: ``kind`` ("split" or "merge"), ``segment_id``, ``cell_ids``
    (tuple), ``nodes`` (node index within each of those cells: the first node
    of the split-off subtree, or the two touching nodes) and ``z_nm``,
    ``y_nm``, ``x_nm`` (the cut node, or the middle of the contact).
    """
    if not sk.n_cells:
        return []
    cid = sk.cell_id.astype(np.int64)
    base = make_ids(seed, cid, _SALT_SEG)
    seg = base[sk.cell]
    records: list[dict] = []
    first = np.searchsorted(sk.cell, np.arange(sk.n_cells))
    last = np.append(first[1:], sk.n_nodes)
    if split_rate > 0:
        for c in np.flatnonzero(uniform(seed, cid, _SALT_SPLIT) < split_rate):
            sub = _split(sk, first[c], last[c], rng_for(seed, int(cid[c]), _SALT_SPLIT))
            if sub is None:
                continue
            new_id = make_ids(seed, int(cid[c]), _SALT_SPLIT)[0]
            seg[first[c] + sub] = new_id
            cut = first[c] + sub[0]
            records.append(_record("split", new_id, [c], [cut], sk.pos[cut], sk))
    if merge_rate > 0:
        source = uniform(seed, cid, _SALT_MERGE) < merge_rate
        for c, i, j in _merges(sk, source, seed):
            target_seg = seg[j]
            seg[(sk.cell == c) & (seg == base[c])] = target_seg
            records.append(
                _record(
                    "merge", target_seg, [c, sk.cell[j]], [i, j], 0.5 * (sk.pos[i] + sk.pos[j]), sk
                )
            )
    sk.segment[:] = seg
    return records


def _record(
    kind: str, segment: int, cells: list, nodes: list, pos: np.ndarray, sk: Skeletons
) -> dict:
    return {
        "kind": kind,
        "segment_id": int(segment),
        "cell_ids": tuple(int(sk.cell_id[c]) for c in cells),
        "nodes": tuple(int(sk.node[n]) for n in nodes),
        "z_nm": float(pos[0]),
        "y_nm": float(pos[1]),
        "x_nm": float(pos[2]),
    }


def _split(sk: Skeletons, lo: int, hi: int, rng: np.random.Generator) -> np.ndarray | None:
    """Local indices (within the cell, subtree root first) of a subtree to split off."""
    parent = sk.parent[lo:hi] - lo
    n = hi - lo
    comp = sk.comp[lo:hi]
    candidates = np.flatnonzero((parent >= 0) & (comp != Compartment.SOMA))
    if n < 6 or not len(candidates):
        return None
    weight = 1.0 / sk.outer_radius[lo:hi][candidates]
    for _ in range(8):
        cut = int(rng.choice(candidates, p=weight / weight.sum()))
        inside = _subtree(parent, cut)
        size = int(inside.sum())
        if 2 <= size <= n - 3:
            return np.concatenate([[cut], np.flatnonzero(inside & (np.arange(n) != cut))])
    return None


def _subtree(parent: np.ndarray, root: int) -> np.ndarray:
    """Mask of the nodes whose ancestors (or themselves) include ``root``."""
    jump = np.where(parent >= 0, parent, np.arange(len(parent)))
    found = np.arange(len(parent)) == root
    for _ in range(int(np.ceil(np.log2(len(parent) + 1))) + 1):
        found |= found[jump]
        jump = jump[jump]
    return found


def _merges(sk: Skeletons, source: np.ndarray, seed: int) -> list[tuple[int, int, int]]:
    """(source cell, its node, touching node of the target) per realised merge."""
    if not source.any():
        return []
    body = sk.comp != Compartment.SOMA
    src = np.flatnonzero(body & source[sk.cell])
    dst = np.flatnonzero(body & ~source[sk.cell])
    if not len(src) or not len(dst):
        return []
    found = cKDTree(sk.pos[src]).sparse_distance_matrix(
        cKDTree(sk.pos[dst]), _CONTACT_NM, output_type="ndarray"
    )
    i, j = src[found["i"]], dst[found["j"]]
    gap = found["v"] - sk.outer_radius[i] - sk.outer_radius[j]
    touching = gap < 0
    i, j, gap = i[touching], j[touching], gap[touching]
    out = []
    cid = sk.cell_id.astype(np.int64)
    for c in np.unique(sk.cell[i]):
        mine = sk.cell[i] == c
        partners = np.unique(sk.cell[j[mine]])
        pick = partners[np.argmin(uniform(seed, cid[c], cid[partners], _SALT_PARTNER))]
        both = np.flatnonzero(mine & (sk.cell[j] == pick))
        best = both[np.argmin(gap[both])]
        out.append((int(c), int(i[best]), int(j[best])))
    return out

"""Whole-cell morphometrics and the random-forest baseline they feed.

Classic shape statistics of a reconstructed cell, computed from its skeleton
alone: cable length, branch points and tips per compartment, primary
neurites, path and straight-line reach, extent along each axis and along
the cell's own principal axes, caliber, branch order and a Sholl profile
(how many neurites cross spheres of growing radius around the soma). A
random forest on them is the baseline that embedding-based cell typing must
beat (:func:`~napari_segclr.evaluate.baselines.fit_forest`).

>>> features = morphometric_table(cells)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..synthetic import Cell, Compartment

#: Radii (µm) of the Sholl spheres around the soma.
SHOLL_RADII_UM: tuple[float, ...] = tuple(float(r) for r in range(25, 501, 25))
#: Compartments with their own cable, branch and tip counts.
COMPARTMENTS = {
    "axon": Compartment.AXON,
    "dendrite": Compartment.DENDRITE,
    "apical": Compartment.APICAL,
}


def soma_centre(cell: Cell) -> np.ndarray:
    """The mean position of the soma nodes (nm), or of the first root without any."""
    soma = cell.compartments == Compartment.SOMA
    if soma.any():
        return cell.nodes[soma].mean(axis=0)
    return cell.nodes[np.flatnonzero(cell.parents < 0)[0]]


def morphometric_features(
    cell: Cell, *, sholl_radii_um: Sequence[float] = SHOLL_RADII_UM
) -> dict[str, float]:
    """Whole-cell shape statistics, lengths in µm.

    Edges run from each node to its parent and belong to the child's
    compartment; edges between two soma nodes are not cable. Per compartment
    (axon, dendrite, apical) and in all:

    - ``cable_um_*``: cable length;
    - ``branch_points_*``: non-soma nodes with two or more children;
    - ``tips_*``: non-soma nodes without children;
    - ``radius_um_*``: mean radius weighted by cable (0 without cable);
    - ``reach_um_*``: largest straight-line distance from the soma centre.

    And ``stems`` (neurites leaving the soma; leaving the roots where there is
    no soma), ``soma_radius_um``, ``max_path_um`` (longest path from a node to
    its root), ``max_branch_order`` (most branch points between a node and its
    root), ``extent_{z,y,x}_um`` (bounding box of the nodes), ``spread_{1,2,3}_um``
    (standard deviations of the cable along its principal axes, largest
    first) and ``sholl_<r>um`` (edges crossing the sphere of radius r around
    the soma centre).
    """
    nodes_um = cell.nodes / 1000.0
    radii_um = cell.radii / 1000.0
    parents = cell.parents
    is_soma = cell.compartments == Compartment.SOMA
    child = np.flatnonzero(parents >= 0)
    parent = parents[child]
    length = np.linalg.norm(nodes_um[child] - nodes_um[parent], axis=1)
    cable = ~(is_soma[child] & is_soma[parent])
    n_children = np.bincount(parent, minlength=cell.n_nodes)
    branch = (n_children >= 2) & ~is_soma
    tip = (n_children == 0) & ~is_soma
    centre = soma_centre(cell) / 1000.0
    distance = np.linalg.norm(nodes_um - centre, axis=1)

    features: dict[str, float] = {}
    groups = {"total": ~is_soma, **{k: cell.compartments == c for k, c in COMPARTMENTS.items()}}
    for name, member in groups.items():
        edges = cable & member[child]
        features[f"cable_um_{name}"] = float(length[edges].sum())
        features[f"branch_points_{name}"] = float(np.count_nonzero(branch & member))
        features[f"tips_{name}"] = float(np.count_nonzero(tip & member))
        weight = length[edges]
        features[f"radius_um_{name}"] = (
            float(np.average(radii_um[child[edges]], weights=weight)) if weight.sum() > 0 else 0.0
        )
        features[f"reach_um_{name}"] = float(distance[member].max()) if member.any() else 0.0

    start = is_soma if is_soma.any() else parents < 0
    features["stems"] = float(np.count_nonzero(start[parent] & ~is_soma[child]))
    features["soma_radius_um"] = float(radii_um[is_soma].max()) if is_soma.any() else 0.0
    edge_length = np.zeros(cell.n_nodes)
    edge_length[child] = length
    features["max_path_um"] = float(_root_sums(parents, edge_length).max())
    features["max_branch_order"] = float(_root_sums(parents, branch.astype(np.float64)).max())

    extent = nodes_um.max(axis=0) - nodes_um.min(axis=0)
    for axis, value in zip("zyx", extent, strict=True):
        features[f"extent_{axis}_um"] = float(value)
    spread = _principal_spread(
        (nodes_um[child[cable]] + nodes_um[parent[cable]]) / 2, length[cable]
    )
    for k, value in enumerate(spread, start=1):
        features[f"spread_{k}_um"] = float(value)

    radii = np.asarray(sholl_radii_um, dtype=np.float64)
    inner = np.minimum(distance[child], distance[parent])[cable]
    outer = np.maximum(distance[child], distance[parent])[cable]
    # An edge crosses the sphere of radius r when inner < r <= outer: radii first:last.
    first = np.searchsorted(radii, inner, side="right")
    last = np.searchsorted(radii, outer, side="right")
    counts = np.zeros(len(radii) + 1)
    np.add.at(counts, first, 1.0)
    np.add.at(counts, last, -1.0)
    for r, value in zip(radii, np.cumsum(counts)[:-1], strict=True):
        features[f"sholl_{r:g}um"] = float(value)
    return features


def morphometric_table(
    cells: Sequence[Cell], *, sholl_radii_um: Sequence[float] = SHOLL_RADII_UM
) -> pd.DataFrame:
    """:func:`morphometric_features` of each cell, one row per cell indexed by cell id."""
    rows = [morphometric_features(c, sholl_radii_um=sholl_radii_um) for c in cells]
    return pd.DataFrame(rows, index=pd.Index([c.cell_id for c in cells], name="cell_id"))


def _root_sums(parents: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Sum of ``values`` over each node and its ancestors up to its root (pointer jumping)."""
    total = values.astype(np.float64)
    up = parents.copy()
    while True:
        linked = np.flatnonzero(up >= 0)
        if not len(linked):
            return total
        total[linked] += total[up[linked]]
        up[linked] = up[up[linked]]


def _principal_spread(points: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted standard deviations of ``points`` along their principal axes, largest first."""
    if len(points) == 0 or weights.sum() <= 0:
        return np.zeros(3)
    mean = np.average(points, axis=0, weights=weights)
    centred = points - mean
    covariance = (centred * weights[:, None]).T @ centred / weights.sum()
    return np.sqrt(np.clip(np.linalg.eigvalsh(covariance)[::-1], 0, None))

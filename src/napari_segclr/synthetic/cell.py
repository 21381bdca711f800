"""The cell model shared by procedural and real (SWC / mesh) cells.

A cell is a skeleton graph in physical units: node positions (nm, z y x), a
parent per node, a radius per node and a compartment per node. Rendering turns
the capsules between each node and its parent into voxels on demand; a cell
may instead carry a closed surface mesh, which is then rendered in place of
the capsules while the skeleton still gives per-node ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np


class Compartment(IntEnum):
    """Ground-truth compartment of a node or voxel.

    Codes 1–4 equal the SWC node types (soma, axon, basal dendrite, apical
    dendrite), so SWC files map onto them unchanged.
    """

    NONE = 0
    SOMA = 1
    AXON = 2
    DENDRITE = 3
    APICAL = 4
    GLIA = 5


@dataclass(frozen=True, eq=False)
class Mesh:
    """A closed triangle surface; vertices in nm (z, y, x)."""

    vertices: np.ndarray  # (V, 3) float64
    faces: np.ndarray  # (F, 3) int64


@dataclass(frozen=True, eq=False)
class Cell:
    """One cell: a skeleton in nm with per-node radius and compartment.

    ``parents[i]`` is the index of node ``i``'s parent, ``-1`` for a root.
    ``cell_id`` is the ground-truth body id (a uint64 value, never 0).
    """

    cell_id: int
    cell_type: str
    nodes: np.ndarray  # (N, 3) float64, nm, (z, y, x)
    parents: np.ndarray  # (N,) int64
    radii: np.ndarray  # (N,) float64, nm
    compartments: np.ndarray  # (N,) uint8, Compartment codes
    mesh: Mesh | None = None
    attributes: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.nodes)
        if self.nodes.shape != (n, 3):
            raise ValueError(f"nodes must have shape (N, 3), got {self.nodes.shape}")
        for name in ("parents", "radii", "compartments"):
            if getattr(self, name).shape != (n,):
                raise ValueError(f"{name} must have shape ({n},), got {getattr(self, name).shape}")
        if self.cell_id <= 0:
            raise ValueError(f"cell_id must be positive, got {self.cell_id}")

    @property
    def n_nodes(self) -> int:
        return len(self.nodes)

    def bounds_nm(self) -> tuple[np.ndarray, np.ndarray]:
        """Physical bounding box (lo, hi) in nm, radii (or mesh) included."""
        if self.mesh is not None:
            return self.mesh.vertices.min(axis=0), self.mesh.vertices.max(axis=0)
        r = self.radii[:, None]
        return (self.nodes - r).min(axis=0), (self.nodes + r).max(axis=0)

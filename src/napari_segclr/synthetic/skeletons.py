"""Many skeletons in flat arrays.

:class:`Skeletons` holds the nodes of many cells in one set of arrays (the
cells of a tile, or of all tiles around a crop), plus per-cell and
per-organelle tables that point into them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from .cell import Cell, Compartment

#: Organelle kinds (also the values of ``Crop.organelles``).
MITO, NUCLEUS, VESICLES, LYSOSOME, MYELIN = 1, 2, 3, 4, 5
#: Astrocytic sheets reach this far (nm) from the nodes of astrocyte processes
#: marked ``fill``.
FILL_REACH_NM = 2500.0

_NODE = (
    "pos",
    "parent",
    "radius",
    "sheath",
    "comp",
    "cell",
    "node",
    "bouton",
    "spine",
    "fill",
    "segment",
)
_CELL = ("cell_id", "cell_type", "cell_class", "has_soma", "shade", "mesh")
_ORG = ("org_kind", "org_a", "org_b", "org_off_a", "org_off_b", "org_radius")


@dataclass
class Skeletons:
    """Nodes, cells and organelles of many cells in flat arrays (lengths in nm).

    Node arrays (N): ``parent`` indexes this set (-1: root), ``cell`` the cell
    arrays, ``node`` is the node's index within its cell, ``sheath`` the myelin
    thickness, ``fill`` marks astrocyte nodes whose surroundings get glial
    sheets, ``segment`` the segment id after errors. Organelle arrays (M): a
    capsule from ``pos[org_a] + org_off_a`` to ``pos[org_b] + org_off_b``.
    """

    pos: np.ndarray
    parent: np.ndarray
    radius: np.ndarray
    sheath: np.ndarray
    comp: np.ndarray
    cell: np.ndarray
    node: np.ndarray
    bouton: np.ndarray
    spine: np.ndarray
    fill: np.ndarray
    segment: np.ndarray
    cell_id: np.ndarray
    cell_type: np.ndarray  # object array of str
    cell_class: np.ndarray  # object array of str
    has_soma: np.ndarray
    shade: np.ndarray
    mesh: np.ndarray  # object array of Mesh | None
    org_kind: np.ndarray
    org_a: np.ndarray
    org_b: np.ndarray
    org_off_a: np.ndarray
    org_off_b: np.ndarray
    org_radius: np.ndarray

    @property
    def n_nodes(self) -> int:
        return len(self.pos)

    @property
    def n_cells(self) -> int:
        return len(self.cell_id)

    @property
    def outer_radius(self) -> np.ndarray:
        """Radius including the myelin sheath."""
        return self.radius + self.sheath

    @classmethod
    def concat(cls, parts: list[Skeletons]) -> Skeletons:
        """One set from several, indices shifted."""
        parts = [p for p in parts if p.n_cells]
        if not parts:
            return empty_skeletons()
        node_off = np.cumsum([0] + [p.n_nodes for p in parts])[:-1]
        cell_off = np.cumsum([0] + [p.n_cells for p in parts])[:-1]
        out = {}
        for f in fields(cls):
            arrays = [getattr(p, f.name) for p in parts]
            if f.name == "parent":
                arrays = [
                    np.where(a >= 0, a + o, -1) for a, o in zip(arrays, node_off, strict=True)
                ]
            elif f.name in ("org_a", "org_b"):
                arrays = [a + o for a, o in zip(arrays, node_off, strict=True)]
            elif f.name == "cell":
                arrays = [a + o for a, o in zip(arrays, cell_off, strict=True)]
            out[f.name] = np.concatenate(arrays) if arrays else np.empty(0)
        return cls(**out)

    def take_cells(self, keep: np.ndarray) -> Skeletons:
        """The subset of cells where ``keep`` (per cell) is true, re-indexed."""
        node_keep = keep[self.cell]
        new_node = np.cumsum(node_keep) - 1
        new_cell = np.cumsum(keep) - 1
        org_keep = node_keep[self.org_a] if len(self.org_a) else np.zeros(0, bool)
        out = {}
        for f in fields(self):
            a = getattr(self, f.name)
            if f.name in _NODE:
                a = a[node_keep]
            elif f.name in _CELL:
                a = a[keep]
            else:
                a = a[org_keep]
            out[f.name] = a
        out["parent"] = np.where(out["parent"] >= 0, new_node[np.maximum(out["parent"], 0)], -1)
        out["cell"] = new_cell[out["cell"]]
        out["org_a"] = new_node[out["org_a"]]
        out["org_b"] = new_node[out["org_b"]]
        return Skeletons(**out)

    @classmethod
    def from_cells(cls, cells: list[Cell], *, shades: np.ndarray) -> Skeletons:
        """Given cells (e.g. real reconstructions) as one set; nothing moves.

        Radii are clamped to at least 20 nm; organelles are not added.
        """
        parts = []
        for cell, shade in zip(cells, shades, strict=True):
            n = cell.n_nodes
            comp = np.asarray(cell.compartments, dtype=np.uint8)
            radius = np.maximum(np.asarray(cell.radii, dtype=np.float32), 20.0)
            parent = np.asarray(cell.parents, dtype=np.int64)
            is_glia = bool(np.any(comp == Compartment.GLIA))
            parts.append(
                cls(
                    pos=np.asarray(cell.nodes, dtype=np.float64),
                    parent=parent,
                    radius=radius,
                    sheath=np.zeros(n, np.float32),
                    comp=comp,
                    cell=np.zeros(n, np.int64),
                    node=np.arange(n, dtype=np.int64),
                    bouton=np.zeros(n, bool),
                    spine=np.zeros(n, bool),
                    fill=np.zeros(n, bool),
                    segment=np.zeros(n, np.uint64),
                    cell_id=np.array([cell.cell_id], np.uint64),
                    cell_type=np.array([cell.cell_type], object),
                    cell_class=np.array(["glia" if is_glia else "neuron"], object),
                    has_soma=np.array([bool(np.any(comp == Compartment.SOMA))]),
                    shade=np.array([shade], np.float32),
                    mesh=_object_array([cell.mesh]),
                    **empty_organelles(),
                )
            )
        return cls.concat(parts) if parts else empty_skeletons()


def _object_array(items: list) -> np.ndarray:
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


def empty_organelles() -> dict[str, np.ndarray]:
    """Organelle arrays of length 0, as keyword arguments of :class:`Skeletons`."""
    return {
        "org_kind": np.zeros(0, np.uint8),
        "org_a": np.zeros(0, np.int64),
        "org_b": np.zeros(0, np.int64),
        "org_off_a": np.zeros((0, 3), np.float32),
        "org_off_b": np.zeros((0, 3), np.float32),
        "org_radius": np.zeros(0, np.float32),
    }


def empty_skeletons() -> Skeletons:
    """A set with no cells."""
    e3 = np.zeros((0, 3))
    return Skeletons(
        pos=e3,
        parent=np.zeros(0, np.int64),
        radius=np.zeros(0, np.float32),
        sheath=np.zeros(0, np.float32),
        comp=np.zeros(0, np.uint8),
        cell=np.zeros(0, np.int64),
        node=np.zeros(0, np.int64),
        bouton=np.zeros(0, bool),
        spine=np.zeros(0, bool),
        fill=np.zeros(0, bool),
        segment=np.zeros(0, np.uint64),
        cell_id=np.zeros(0, np.uint64),
        cell_type=_object_array([]),
        cell_class=_object_array([]),
        has_soma=np.zeros(0, bool),
        shade=np.zeros(0, np.float32),
        mesh=_object_array([]),
        **empty_organelles(),
    )

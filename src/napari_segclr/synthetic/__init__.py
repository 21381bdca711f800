"""Synthetic neuropil with full ground truth: the built-in sample and the test bed.

Cells are skeleton graphs (:class:`Cell`) grown procedurally tile by tile (or
given, e.g. real reconstructions); :class:`Neuropil` renders any crop of a
virtual volume on demand as EM-like image, segmentation (with optional merge
and split errors), true cell ids and compartments, and lists the ground truth
per skeleton node, per cell and per injected error.
"""

from .cell import Cell, Compartment, Mesh
from .config import NeuropilConfig
from .export import write_neuropil
from .mesh import mesh_inside, read_obj
from .neuropil import Crop, Neuropil, render_all, render_dataset, sample_neuropil
from .real import (
    cell_box,
    place_cells,
    read_hemibrain_neuron,
    read_morphology_table,
    read_swc,
    stable_cell_id,
    subsample_nodes,
    transform_cell,
)

__all__ = [
    "Cell",
    "Compartment",
    "Crop",
    "Mesh",
    "Neuropil",
    "NeuropilConfig",
    "cell_box",
    "mesh_inside",
    "place_cells",
    "read_hemibrain_neuron",
    "read_morphology_table",
    "read_obj",
    "read_swc",
    "render_all",
    "render_dataset",
    "sample_neuropil",
    "stable_cell_id",
    "subsample_nodes",
    "transform_cell",
    "write_neuropil",
]

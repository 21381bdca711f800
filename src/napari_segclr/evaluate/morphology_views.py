"""Mask views of reconstructed cells: a lazy volume drawn from SWC capsules, and view nodes.

Cells hundreds of µm wide are never rendered whole. :func:`cells_dataset` lays
the cells out side by side in one virtual volume, and a crop is voxelised
from the capsules (a node, its parent and their radii, as the synthetic
renderer draws SWC cells) that reach into it, only when a view reads it.
One volume for all cells lets one :class:`~napari_segclr.train.TrainingData`
draw contrastive pairs from every cell, and one loader cut all their views.

Each cell moves by whole voxels, so it is voxelised identically wherever it
is placed: a cell's views do not depend on which other cells share the volume.
Neighbours are at least one field of view apart, so a view sees one cell.

:func:`view_nodes` picks where views are cut: a few random *sites* along the
cable of a cell and all nodes about ``spacing`` apart within the context
radius of a site, so that the mean embedding within R µm of each site
(:func:`~napari_segclr.aggregate.aggregate_embeddings`) is complete while
only a small part of a long cell is embedded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..io import Dataset, Volume
from ..model.presets import ModelConfig, get_preset
from ..skeleton import Skeleton, path_distances, resample
from ..synthetic import Cell, subsample_nodes, transform_cell

#: Mask-only encoders for reconstructed cells, by name. All take 33³ views and a
#: ResNet-18 of half the "lite" widths (0.055 GFLOP a view, a third of "lite"),
#: so an encoder trains for hundreds of steps in minutes on two CPU cores; they
#: differ in the scale they see.
#:
#: - "morphology": 16 µm voxels, a 528 µm view: most of a cortical cell's
#:   arbor around a node (its extent, density, the directions of its
#:   branches). Neurites are drawn at least 14 µm thick
#:   (:func:`drawn_min_radius_nm`), so the mask is an occupancy map of the
#:   arbor, and calibers are lost. Cell types of cells hundreds of µm wide are
#:   told apart at this scale and not at the scale of EM views: on the 66
#:   cells of scala2019_l4 (8 types, untrained encoder, 5-fold
#:   cross-validation), macro F1 was 0.26 with 256 nm voxels (8 µm views),
#:   0.23 with 500 nm, 0.33 with 1 µm, 0.42 with 2 µm and 0.52 with 4 µm (32
#:   sites a cell, mean of 3 fold draws); with 16 sites, best over R ≤ 50 µm,
#:   0.48 with 4 µm, 0.57 with 8 µm, 0.63 with 16 µm (0.67 at R = 200 µm) and
#:   0.61 with 32 µm (at R = 0; 0.55–0.58 with averaging).
#: - "morphology-local": 256 nm voxels, an 8.4 µm view: calibers, branch
#:   points and tortuosity, as SegCLR sees EM (for compartments).
#: - "tiny": 17³ views at 256 nm, for tests.
MORPHOLOGY_PRESETS: dict[str, ModelConfig] = {
    "morphology": ModelConfig(
        view_shape=(33, 33, 33),
        voxel_size_nm=(16000.0, 16000.0, 16000.0),
        input_kinds=("mask",),
        stage_widths=(8, 16, 32, 64),
        embedding_hidden=(128, 128),
        projection_hidden=(32, 32),
    ),
    "morphology-local": ModelConfig(
        view_shape=(33, 33, 33),
        voxel_size_nm=(256.0, 256.0, 256.0),
        input_kinds=("mask",),
        stage_widths=(8, 16, 32, 64),
        embedding_hidden=(128, 128),
        projection_hidden=(32, 32),
    ),
    "tiny": replace(get_preset("tiny"), input_kinds=("mask",)),
}

#: Candidate voxels scored at once when drawing capsules (bounds temporary memory).
_DRAW_BATCH = 1 << 20


def morphology_preset(name: str) -> ModelConfig:
    """The mask-only model config called ``name`` (see :data:`MORPHOLOGY_PRESETS`)."""
    try:
        return MORPHOLOGY_PRESETS[name]
    except KeyError:
        raise ValueError(
            f"unknown morphology preset {name!r}; choose one of {', '.join(MORPHOLOGY_PRESETS)}"
        ) from None


def drawn_min_radius_nm(voxel_size_nm: float | Sequence[float]) -> float:
    """Thinnest radius drawn at a voxel size: half a voxel's diagonal.

    Every point of a capsule at least this thick has a voxel centre inside
    it, so thin neurites stay connected in the mask and the voxel nearest a
    skeleton node always belongs to the cell.
    """
    return float(np.sqrt(3.0) / 2.0 * np.max(voxel_size_nm))


class CellMasks:
    """Cells as a lazy uint64 label array: each crop is voxelised from capsules when read.

    Voxel ``i`` has its centre at ``i * voxel_size`` nm (z, y, x). A voxel holds
    the id of a cell when it lies within a capsule of the cell (radius
    interpolated linearly from node to parent, at least
    :func:`drawn_min_radius_nm`; roots are balls), else 0. A skeleton whose
    nodes lie far closer together than a voxel is drawn resampled to half a
    voxel (:func:`~napari_segclr.skeleton.resample`: branch points, ends and
    roots stay, paths move by less than half a voxel).

    Parameters
    ----------
    cells
        Cells in the volume's frame (nm), with distinct ids.
    shape
        Shape of the volume in voxels.
    voxel_size_nm
        Voxel size (z, y, x) in nm.
    """

    def __init__(
        self,
        cells: Sequence[Cell],
        shape: tuple[int, int, int],
        voxel_size_nm: tuple[float, float, float],
    ) -> None:
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(np.uint64)
        self.ndim = 3
        self.voxel_size = np.asarray(voxel_size_nm, dtype=np.float64)
        floor = drawn_min_radius_nm(self.voxel_size)
        self._cells = []
        for cell in cells:
            nodes, parents, radii = _drawing_skeleton(cell, float(self.voxel_size.min()) / 2)
            own = np.arange(len(nodes))
            other = np.where(parents >= 0, parents, own)
            radii = np.maximum(radii, floor)
            p0, p1 = nodes, nodes[other]
            r0, r1 = radii[:, None], radii[other][:, None]
            lo = np.minimum(p0 - r0, p1 - r1)
            hi = np.maximum(p0 + r0, p1 + r1)
            self._cells.append(
                (np.uint64(cell.cell_id), p0, p1, radii, radii[other], lo, hi, lo.min(0), hi.max(0))
            )

    def __getitem__(self, key: tuple[slice, slice, slice]) -> np.ndarray:
        start = np.array([k.start for k in key], dtype=np.int64)
        stop = np.array([k.stop for k in key], dtype=np.int64)
        out = np.zeros(tuple(np.maximum(stop - start, 0)), dtype=np.uint64)
        if not out.size:
            return out
        box_lo, box_hi = start * self.voxel_size, (stop - 1) * self.voxel_size
        for cell_id, p0, p1, r0, r1, lo, hi, cell_lo, cell_hi in self._cells:
            if np.any(cell_lo > box_hi) or np.any(cell_hi < box_lo):
                continue
            near = np.flatnonzero(np.all((lo <= box_hi) & (hi >= box_lo), axis=1))
            if len(near):
                i0 = np.maximum(np.ceil(lo[near] / self.voxel_size), start).astype(np.int64)
                i1 = np.minimum(np.floor(hi[near] / self.voxel_size) + 1, stop).astype(np.int64)
                self._draw(out, start, cell_id, p0[near], p1[near], r0[near], r1[near], i0, i1)
        return out

    def _draw(
        self,
        out: np.ndarray,
        start: np.ndarray,
        value: np.uint64,
        p0: np.ndarray,
        p1: np.ndarray,
        r0: np.ndarray,
        r1: np.ndarray,
        i0: np.ndarray,
        i1: np.ndarray,
    ) -> None:
        """Set ``value`` in the voxels of boxes ``[i0, i1)`` that lie inside their capsule.

        The voxels of all boxes are enumerated at once (a ragged range per
        capsule), in batches of about :data:`_DRAW_BATCH` voxels.
        """
        dims = np.maximum(i1 - i0, 0)
        sizes = np.prod(dims, axis=1)
        ends = np.cumsum(sizes)
        batch_start = 0
        while batch_start < len(sizes):
            done = ends[batch_start - 1] if batch_start else 0
            batch_stop = max(batch_start + 1, int(np.searchsorted(ends, done + _DRAW_BATCH)))
            rows = np.arange(batch_start, batch_stop)
            batch_start = batch_stop
            counts = sizes[rows]
            total = int(counts.sum())
            if total == 0:
                continue
            cap = np.repeat(rows, counts)
            local = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
            ny, nx = dims[cap, 1], dims[cap, 2]
            index = np.stack([local // (ny * nx), (local // nx) % ny, local % nx], axis=1)
            index += i0[cap]
            w = index * self.voxel_size - p0[cap]
            axis = p1[cap] - p0[cap]
            length2 = np.einsum("ij,ij->i", axis, axis)
            t = np.einsum("ij,ij->i", w, axis) / np.where(length2 > 0, length2, 1.0)
            np.clip(t, 0.0, 1.0, out=t)
            w -= t[:, None] * axis
            radius = r0[cap] + t * (r1[cap] - r0[cap])
            inside = np.einsum("ij,ij->i", w, w) <= radius * radius
            z, y, x = (index[inside] - start).T
            out[z, y, x] = value


def _drawing_skeleton(cell: Cell, spacing_nm: float) -> tuple[np.ndarray, ...]:
    """Nodes, parents and radii to draw a cell from: its own, or resampled to
    ``spacing_nm`` where its nodes are much denser (most capsules would then
    fall within one voxel, and drawing costs in proportion to capsules)."""
    skeleton = cell_skeleton(cell)
    lengths = skeleton.edge_lengths
    if len(lengths) and np.median(lengths) < spacing_nm / 2:
        skeleton = resample(skeleton, spacing_nm)
    return skeleton.nodes, skeleton.parents, skeleton.radii


@dataclass(frozen=True, eq=False)
class CellsVolume:
    """Cells laid out in one lazy mask volume.

    Attributes
    ----------
    dataset
        The mask volume, standing in as both EM and segmentation (mask-only
        views never read the EM).
    cells
        The cells moved into the volume's frame, in the order given.
    translations_nm
        (n_cells, 3) how far each cell was moved (whole voxels).
    """

    dataset: Dataset
    cells: tuple[Cell, ...]
    translations_nm: np.ndarray

    def skeletons(self) -> dict[int, Skeleton]:
        """Each cell's skeleton in the volume's frame; node ids are the cell's node indices."""
        return {c.cell_id: cell_skeleton(c) for c in self.cells}


def cells_dataset(
    cells: Sequence[Cell], voxel_size_nm: float | Sequence[float], *, margin_nm: float
) -> CellsVolume:
    """Lay cells out along x, ``2 * margin_nm`` apart, in a lazy mask volume.

    ``margin_nm`` should be at least half a view plus its jitter, so that no
    view reaches a neighbouring cell. Cell ids must be distinct.
    """
    if not cells:
        raise ValueError("cells must hold at least one cell")
    ids = [c.cell_id for c in cells]
    if len(set(ids)) != len(ids):
        raise ValueError("cells: cell ids must be distinct")
    if not margin_nm >= 0:
        raise ValueError(f"margin_nm must be >= 0, got {margin_nm!r}")
    vs = np.broadcast_to(np.asarray(voxel_size_nm, dtype=np.float64), (3,)).copy()
    floor = drawn_min_radius_nm(vs)
    pad = np.ceil(margin_nm / vs)
    placed, shifts = [], []
    cursor = 0.0
    height = np.zeros(3)
    for cell in cells:
        reach = np.maximum(cell.radii, floor)[:, None]
        first = np.floor((cell.nodes - reach).min(axis=0) / vs) - pad
        last = np.ceil((cell.nodes + reach).max(axis=0) / vs) + pad
        target = np.array([0.0, 0.0, cursor])
        shift = (target - first) * vs
        placed.append(transform_cell(cell, translation_nm=shift))
        shifts.append(shift)
        size = last - first + 1
        cursor += size[2]
        height = np.maximum(height, size)
    shape = (int(height[0]), int(height[1]), int(cursor))
    labels = CellMasks(placed, shape, tuple(vs))
    source = f"{len(placed)} reconstructed cells drawn at {vs[0]:g} nm"
    volume = Volume(labels, tuple(vs), (0.0, 0.0, 0.0), kind="labels", source=source)
    return CellsVolume(Dataset(volume, volume), tuple(placed), np.asarray(shifts))


def cell_skeleton(cell: Cell) -> Skeleton:
    """A cell's skeleton (node ``i`` is the cell's node ``i``), for path distances."""
    return Skeleton(cell.cell_id, cell.nodes, cell.parents, cell.radii)


@dataclass(frozen=True)
class ViewNodes:
    """Where one cell's views are cut.

    Attributes
    ----------
    nodes
        Sorted node indices of the cell to embed.
    sites
        Which of ``nodes`` are sites (where predictions are made and scored).
    """

    nodes: np.ndarray
    sites: np.ndarray


def view_nodes(
    cell: Cell,
    *,
    spacing_nm: float,
    sites: int | None,
    context_nm: float,
    seed: int,
    skeleton: Skeleton | None = None,
) -> ViewNodes:
    """Sites along a cell and the nodes around them to embed.

    Nodes about ``spacing_nm`` apart along the cable are the candidates
    (:func:`~napari_segclr.synthetic.subsample_nodes`). ``sites`` of them are
    drawn at random (all when None or when there are fewer), and every
    candidate within ``context_nm`` of a site along the skeleton is embedded,
    so averages within that radius of a site see all their neighbours.
    """
    if sites is not None and sites < 1:
        raise ValueError(f"sites must be a positive number or None, got {sites!r}")
    if not context_nm >= 0:
        raise ValueError(f"context_nm must be >= 0, got {context_nm!r}")
    candidates = subsample_nodes(cell, spacing_nm, seed=seed)
    if sites is None or sites >= len(candidates):
        return ViewNodes(candidates, np.ones(len(candidates), dtype=bool))
    rng = np.random.default_rng([seed, cell.cell_id % 2**32])
    chosen = np.sort(rng.choice(candidates, size=sites, replace=False))
    if context_nm == 0:
        return ViewNodes(chosen, np.ones(len(chosen), dtype=bool))
    skeleton = cell_skeleton(cell) if skeleton is None else skeleton
    near = path_distances(skeleton, chosen, max_nm=context_nm)
    reached = np.zeros(cell.n_nodes, dtype=bool)
    reached[near.indices] = True
    keep = np.union1d(candidates[reached[candidates]], chosen)
    return ViewNodes(keep, np.isin(keep, chosen))


def render_settings(
    voxel_size_nm: float | Sequence[float],
    *,
    min_radius_nm: float,
    fixed_radius_nm: float | None,
) -> dict[str, Any]:
    """How cells are drawn, as stored with an encoder and reused when it is evaluated."""
    return {
        "voxel_size_nm": [float(v) for v in np.broadcast_to(voxel_size_nm, (3,))],
        "min_radius_nm": float(min_radius_nm),
        "fixed_radius_nm": None if fixed_radius_nm is None else float(fixed_radius_nm),
        "drawn_min_radius_nm": round(drawn_min_radius_nm(voxel_size_nm), 3),
    }

"""The synthetic neuropil: a virtual EM volume with full ground truth, rendered on demand.

>>> from napari_segclr.synthetic import NeuropilConfig, Neuropil
>>> neuropil = Neuropil(NeuropilConfig(shape=(64, 64, 64), seed=1))
>>> crop = neuropil.render((slice(0, 32), slice(0, 32), slice(0, 32)))
>>> crop.em.dtype, crop.segmentation.dtype, crop.compartments.dtype
(dtype('uint8'), dtype('uint64'), dtype('uint8'))

Nothing of the whole volume's size is ever built: a crop gathers the cells of
the tiles around it (see :mod:`.growth`) and rasterises them (see
:mod:`.render`). Every value is a function of the seed and the global voxel or
node, so overlapping crops agree exactly.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..exceptions import ShapeMismatchError
from ..io.dataset import Dataset
from ..io.volume import Volume
from .cell import Cell, Compartment
from .cell_types import CELL_TYPES, TYPE_NAMES
from .config import NeuropilConfig
from .errors import inject_errors
from .growth import OVERHANG_NM, REACH_NM, TileGrower, norm3, tiles_around
from .noise import uniform
from .render import (
    Capsules,
    Grid,
    MeshCell,
    Organelles,
    margin_nm,
    paint,
    rasterize,
    textures,
)
from .skeletons import FILL_REACH_NM, Skeletons

#: Rendered fields, in the order of :class:`Crop`.
FIELDS = ("em", "segmentation", "cells", "compartments", "organelles")
_DTYPES = {
    "em": np.uint8,
    "segmentation": np.uint64,
    "cells": np.uint64,
    "compartments": np.uint8,
    "organelles": np.uint8,
}
_CHUNK = 64
_SLAB_VOXELS = 2**21
_CACHE_BYTES = 384 * 2**20
_ERROR_COLUMNS = ["kind", "segment_id", "cell_ids", "nodes", "z_nm", "y_nm", "x_nm"]


@dataclass(frozen=True, eq=False)
class Crop:
    """One rendered crop, all arrays (z, y, x) of the crop's shape.

    ``em``: the EM image; ``segmentation``: segment ids with the configured
    errors; ``cells``: true cell ids (0 in extracellular space);
    ``compartments``: :class:`~napari_segclr.synthetic.cell.Compartment` codes
    (0 outside cells); ``organelles``: 1 mitochondrion, 2 nucleus, 3 vesicle
    cloud, 4 lysosome, 5 myelin, 0 none.
    """

    em: np.ndarray
    segmentation: np.ndarray
    cells: np.ndarray
    compartments: np.ndarray
    organelles: np.ndarray


class Neuropil:
    """A virtual synthetic EM neuropil volume with ground truth.

    Parameters
    ----------
    config
        Size, voxel size, seed and look; see :class:`NeuropilConfig`.
    cells
        Cells to render instead of procedural ones (e.g. real reconstructions
        placed in the volume). A cell with a ``mesh`` is rendered from its
        surface, the others from their skeleton capsules; ``cell_id`` must be
        unique. Procedural cells are grown lazily, tile by tile.
    """

    def __init__(self, config: NeuropilConfig, cells: Sequence[Cell] | None = None) -> None:
        if not isinstance(config, NeuropilConfig):
            raise TypeError(f"config must be a NeuropilConfig, got {type(config).__name__}")
        self.config = config
        self._grower = TileGrower(config) if cells is None else None
        self._given: tuple[Skeletons, list[dict]] | None = None
        if cells is not None:
            cells = list(cells)
            ids = [c.cell_id for c in cells]
            if len(set(ids)) != len(ids):
                raise ValueError("cells: cell_id values must be unique")
            shades = 10.0 * (uniform(config.seed, np.asarray(ids, np.int64), 7) - 0.5)
            sk = Skeletons.from_cells(cells, shades=np.atleast_1d(shades)[: len(cells)])
            errors = inject_errors(
                sk, seed=config.seed, merge_rate=config.merge_rate, split_rate=config.split_rate
            )
            self._given = (sk, errors)
        self._chunks: OrderedDict[tuple[int, int, int], Crop] = OrderedDict()
        self.renders = 0  # number of render calls that did work (for cache checks)

    # -- geometry ------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int]:
        return self.config.shape

    @property
    def voxel_size(self) -> tuple[float, float, float]:
        return self.config.voxel_size

    def _bounds(self, box: Sequence[slice] | None) -> tuple[np.ndarray, np.ndarray]:
        """Validated (start, stop) voxel indices of a box (the whole volume if None)."""
        if box is None:
            return np.zeros(3, np.int64), np.asarray(self.shape, np.int64)
        if len(box) != 3 or any(
            not isinstance(s, slice) or s.start is None or s.stop is None or s.step not in (None, 1)
            for s in box
        ):
            raise ShapeMismatchError(
                f"box must be three slices with bounds and step 1, got {box!r}"
            )
        start = np.array([s.start for s in box], np.int64)
        stop = np.array([s.stop for s in box], np.int64)
        if np.any(start < 0) or np.any(stop > self.shape) or np.any(stop <= start):
            raise ShapeMismatchError(
                f"box {box!r} is empty or outside the synthetic volume of shape {self.shape}"
            )
        return start, stop

    def _grid(self, start: np.ndarray, stop: np.ndarray) -> Grid:
        return Grid(
            tuple(int(s) for s in start),
            tuple(int(b - a) for a, b in zip(start, stop, strict=True)),
            self.voxel_size,
            self.config.offset,
        )

    # -- cells around a region -------------------------------------------------------
    def _scene(self, lo: np.ndarray, hi: np.ndarray, margin: float) -> tuple[Skeletons, list[dict]]:
        """All cells whose geometry may come within ``margin`` nm of [lo, hi]."""
        if self._given is not None:
            sk, errors = self._given
            if not sk.n_cells:
                return sk, errors
            ext = sk.outer_radius[:, None] + margin
            near = np.all((sk.pos + ext > lo) & (sk.pos - ext < hi), axis=1)
            keep = np.bincount(sk.cell[near], minlength=sk.n_cells) > 0
            for c, m in enumerate(sk.mesh):
                if m is not None:
                    keep[c] |= bool(
                        np.all(
                            (m.vertices.max(0) + margin > lo) & (m.vertices.min(0) - margin < hi)
                        )
                    )
            ids = set(sk.cell_id[keep].tolist())
            return sk.take_cells(keep), [e for e in errors if e["cell_ids"][0] in ids]
        parts = [self._grower.tile(t) for t in tiles_around(lo, hi, margin)]
        sk = Skeletons.concat([p[0] for p in parts])
        return sk, [e for p in parts for e in p[1]]

    def _nearby(self, lo: np.ndarray, hi: np.ndarray, extra: float) -> tuple[Skeletons, np.ndarray]:
        """Cells near [lo, hi] (nm), and which of their nodes have a capsule
        (node to parent, grown by ``extra`` nm) that can reach [lo, hi]."""
        sk, _ = self._scene(lo, hi, extra)
        if not sk.n_nodes:
            return sk, np.zeros(0, bool)
        par = np.where(sk.parent >= 0, sk.parent, np.arange(sk.n_nodes))
        seg_len = norm3(sk.pos - sk.pos[par])
        outer = sk.outer_radius
        size = np.maximum(outer, outer[par]) + seg_len + extra
        size = np.where(sk.fill, np.maximum(size, FILL_REACH_NM + 1000.0 + extra), size)
        gap = np.maximum(np.maximum(lo - sk.pos, sk.pos - hi), 0)
        need = norm3(gap) <= size
        need[par[need]] = True
        return sk, need

    # -- rendering -------------------------------------------------------------------
    def render(self, box: Sequence[slice]) -> Crop:
        """Render the crop ``box`` (three slices of voxel indices) of the virtual volume."""
        start, stop = self._bounds(box)
        return self._render(start, stop)

    def _render(self, start: np.ndarray, stop: np.ndarray) -> Crop:
        self.renders += 1
        grid = self._grid(start, stop)
        lo, hi = grid.bounds_nm
        margin = margin_nm(grid)
        sk, need = self._nearby(lo, hi, margin)
        scene = _Scene(sk, need, lo, hi, margin)
        # z slabs of a few million voxels keep temporaries small, and slabs of
        # equal thickness keep their number (a capsule crossing slabs is
        # scored once per slab) as low as that allows.
        nz, ny, nx = grid.shape
        out = Crop(*(np.empty(grid.shape, _DTYPES[f]) for f in FIELDS))
        n_slabs = -(-nz // max(1, _SLAB_VOXELS // (ny * nx)))
        step = -(-nz // n_slabs)
        for z in range(0, nz, step):
            n = min(step, nz - z)
            slab = Grid(
                (grid.start[0] + z, *grid.start[1:]), (n, ny, nx), grid.voxel_size, grid.offset
            )
            self._render_slab(slab, scene, out, z)
        return out

    def _render_slab(self, grid: Grid, scene: _Scene, out: Crop, z: int) -> None:
        cfg = self.config
        sk = scene.sk
        tex = textures(grid, cfg.seed)
        raster = rasterize(
            grid,
            scene.caps,
            scene.orgs,
            fill_pos=scene.fill_pos,
            fill_node=scene.fill_node,
            node_cell=sk.cell,
            meshes=scene.meshes,
            fill_noise=tex[1],
        )
        # Per-node tables end in a sentinel for extracellular space (node -1).
        sl = slice(z, z + grid.shape[0])
        np.take(scene.comp, raster.node, out=out.compartments[sl])
        np.take(scene.segment, raster.node, out=out.segmentation[sl])
        np.take(scene.cell_id, raster.node, out=out.cells[sl])
        out.organelles[sl] = raster.organelle_labels()
        out.em[sl] = paint(
            grid,
            raster,
            out.compartments[sl],
            tex,
            shade=np.append(sk.shade, 0).astype(np.float32),
            glycogen=np.append(sk.cell_type == "astrocyte", False).astype(bool),
            seed=cfg.seed,
            noise=cfg.noise,
            contrast_variation=cfg.contrast_variation,
        )

    # -- lazy volumes ------------------------------------------------------------------
    def volumes(self) -> dict[str, Volume]:
        """Lazily rendered volumes: ``em`` (image), ``segmentation``, ``cells``,
        ``compartments`` (labels). Reads render whole 64³ chunks, kept in a small
        LRU cache shared by the four volumes."""
        kinds = {
            "em": "image",
            "segmentation": "labels",
            "cells": "labels",
            "compartments": "labels",
        }
        return {
            name: Volume(
                _RenderedArray(self, name),
                self.voxel_size,
                self.config.offset,
                kind=kind,
                source=f"synthetic neuropil (seed {self.config.seed}): {name}",
            )
            for name, kind in kinds.items()
        }

    def _read(self, field: str, start: np.ndarray, stop: np.ndarray) -> np.ndarray:
        """One field of [start, stop) through the chunk cache (renders missing chunks)."""
        c0 = start // _CHUNK
        c1 = (stop - 1) // _CHUNK + 1
        keys = [
            (z, y, x)
            for z in range(c0[0], c1[0])
            for y in range(c0[1], c1[1])
            for x in range(c0[2], c1[2])
        ]
        missing = [k for k in keys if k not in self._chunks]
        if missing:
            m = np.asarray(missing)
            r_start = m.min(axis=0) * _CHUNK
            r_stop = np.minimum((m.max(axis=0) + 1) * _CHUNK, self.shape)
            crop = self._render(r_start, r_stop)
            for k in map(tuple, m):
                a = np.asarray(k) * _CHUNK - r_start
                b = np.minimum(a + _CHUNK, r_stop - r_start)
                sl = tuple(slice(int(i), int(j)) for i, j in zip(a, b, strict=True))
                self._store(k, Crop(*(getattr(crop, f)[sl] for f in FIELDS)))
        out = np.empty(tuple(stop - start), _DTYPES[field])
        for k in keys:
            chunk = self._chunks.get(k)
            if chunk is None:  # evicted while storing a large read: render it alone
                a = np.asarray(k) * _CHUNK
                chunk = self._render(a, np.minimum(a + _CHUNK, self.shape))
            else:
                self._chunks.move_to_end(k)
            origin = np.asarray(k) * _CHUNK
            lo = np.maximum(start, origin)
            hi = np.minimum(stop, origin + np.asarray(getattr(chunk, field).shape))
            src = tuple(
                slice(int(a - o), int(b - o)) for a, b, o in zip(lo, hi, origin, strict=True)
            )
            dst = tuple(
                slice(int(a - s), int(b - s)) for a, b, s in zip(lo, hi, start, strict=True)
            )
            out[dst] = getattr(chunk, field)[src]
        return out

    def _store(self, key: tuple[int, int, int], crop: Crop) -> None:
        self._chunks[key] = crop
        size = sum(getattr(c, f).nbytes for c in self._chunks.values() for f in FIELDS)
        while size > _CACHE_BYTES and len(self._chunks) > 1:
            _, old = self._chunks.popitem(last=False)
            size -= sum(getattr(old, f).nbytes for f in FIELDS)

    # -- ground truth tables -------------------------------------------------------------
    def _physical(self, start: np.ndarray, stop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Physical extent (outer voxel faces) of a voxel box."""
        vs = np.asarray(self.voxel_size)
        origin = np.asarray(self.config.offset) - vs / 2
        return origin + start * vs, origin + stop * vs

    def nodes(self, box: Sequence[slice] | None = None) -> pd.DataFrame:
        """One row per skeleton node inside ``box`` (whole volume if None).

        Columns: ``cell_id``, ``node`` (index within the cell), ``parent``
        (-1 for a root), ``z_nm``, ``y_nm``, ``x_nm`` (rendered position),
        ``radius_nm``, ``myelin_nm``, ``compartment`` (Compartment code),
        ``cell_type``, ``segment_id`` (after segmentation errors).
        """
        lo, hi = self._physical(*self._bounds(box))
        sk, _ = self._scene(lo, hi, 0.0)
        if not sk.n_nodes:
            return _empty_nodes()
        pos = sk.pos
        inside = np.all((pos >= lo) & (pos < hi), axis=1)
        idx = np.flatnonzero(inside)
        par = sk.parent[idx]
        return pd.DataFrame(
            {
                "cell_id": sk.cell_id[sk.cell[idx]],
                "node": sk.node[idx],
                "parent": np.where(par >= 0, sk.node[np.maximum(par, 0)], -1),
                "z_nm": pos[idx, 0],
                "y_nm": pos[idx, 1],
                "x_nm": pos[idx, 2],
                "radius_nm": sk.radius[idx].astype(np.float64),
                "myelin_nm": sk.sheath[idx].astype(np.float64),
                "compartment": sk.comp[idx],
                "cell_type": sk.cell_type[sk.cell[idx]].astype(str),
                "segment_id": sk.segment[idx],
            }
        )

    def somata(self, box: Sequence[slice] | None = None) -> pd.DataFrame:
        """Soma centres inside ``box`` (whole volume if None), without growing cells.

        Columns: ``cell_id``, ``cell_type``, ``z_nm``, ``y_nm``, ``x_nm``,
        ``radius_nm``. Cheap even for huge volumes: a way to find a soma.
        """
        lo, hi = self._physical(*self._bounds(box))
        if self._given is not None:
            sk, _ = self._given
            soma = np.flatnonzero(sk.comp == Compartment.SOMA)
            first = soma[np.unique(sk.cell[soma], return_index=True)[1]] if len(soma) else soma
            ids, types = sk.cell_id[sk.cell[first]], sk.cell_type[sk.cell[first]]
            pos, radius = sk.pos[first], sk.radius[first].astype(np.float64)
        else:
            tiles = tiles_around(lo, hi, -REACH_NM - OVERHANG_NM)
            found = [self._grower.somata(t) for t in tiles]
            pos = np.concatenate([f.pos for f in found]).reshape(-1, 3)
            radius = np.concatenate([f.radius for f in found])
            ids = np.concatenate([f.cell_id for f in found]).astype(np.uint64)
            types = np.array([TYPE_NAMES[c] for f in found for c in f.type_code], dtype=object)
        inside = np.all((pos >= lo) & (pos < hi), axis=1)
        return pd.DataFrame(
            {
                "cell_id": ids[inside].astype(np.uint64),
                "cell_type": types[inside].astype(str),
                "z_nm": pos[inside, 0],
                "y_nm": pos[inside, 1],
                "x_nm": pos[inside, 2],
                "radius_nm": radius[inside],
            }
        )

    def cell_table(self, box: Sequence[slice] | None = None) -> pd.DataFrame:
        """One row per cell with nodes inside ``box`` (whole volume if None).

        Columns: ``cell_id``, ``cell_type``, ``cell_class`` (neuron / glia),
        ``has_soma``, ``n_nodes`` (inside the box), ``cable_um`` (inside the
        box), ``segment_ids`` (tuple, after errors).
        """
        columns = [
            "cell_id",
            "cell_type",
            "cell_class",
            "has_soma",
            "n_nodes",
            "cable_um",
            "segment_ids",
        ]
        nodes = self.nodes(box)
        if not len(nodes):
            return pd.DataFrame(columns=columns)
        sk, _ = self._scene(*self._physical(*self._bounds(box)), 0.0)
        info = pd.DataFrame(
            {
                "cell_id": sk.cell_id,
                "cell_class": sk.cell_class.astype(str),
                "has_soma": sk.has_soma,
            }
        ).drop_duplicates("cell_id")
        parent_pos = nodes.set_index(["cell_id", "node"])[["z_nm", "y_nm", "x_nm"]]
        key = pd.MultiIndex.from_arrays([nodes["cell_id"], nodes["parent"]])
        ppos = parent_pos.reindex(key).to_numpy()
        seg_len = np.linalg.norm(nodes[["z_nm", "y_nm", "x_nm"]].to_numpy() - ppos, axis=1)
        nodes = nodes.assign(seg_um=np.nan_to_num(seg_len) / 1000.0)
        grouped = nodes.groupby("cell_id", sort=True)
        table = pd.DataFrame(
            {
                "cell_type": grouped["cell_type"].first(),
                "n_nodes": grouped.size(),
                "cable_um": grouped["seg_um"].sum(),
                "segment_ids": grouped["segment_id"].agg(lambda s: tuple(sorted(set(s.tolist())))),
            }
        ).reset_index()
        return table.merge(info, on="cell_id", how="left")[columns]

    @property
    def errors(self) -> pd.DataFrame:
        """Injected segmentation errors touching the volume, one row each.

        An error is listed when one of its cells reaches into the volume.
        Columns: ``kind`` (merge / split), ``segment_id`` (the merged segment,
        or the new one split off), ``cell_ids`` (tuple), ``nodes`` (node index
        within each of those cells), ``z_nm``, ``y_nm``, ``x_nm`` (the cut, or
        the contact).
        """
        lo, hi = self._physical(*self._bounds(None))
        sk, records = self._scene(lo, hi, 0.0)
        ext = sk.outer_radius[:, None]
        touching = np.all((sk.pos + ext >= lo) & (sk.pos - ext < hi), axis=1)
        present = set(sk.cell_id[np.unique(sk.cell[touching])].tolist())
        rows = [r for r in records if present.intersection(r["cell_ids"])]
        return pd.DataFrame(rows, columns=_ERROR_COLUMNS)


def _empty_nodes() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "cell_id": np.zeros(0, np.uint64),
            "node": np.zeros(0, np.int64),
            "parent": np.zeros(0, np.int64),
            "z_nm": np.zeros(0),
            "y_nm": np.zeros(0),
            "x_nm": np.zeros(0),
            "radius_nm": np.zeros(0),
            "myelin_nm": np.zeros(0),
            "compartment": np.zeros(0, np.uint8),
            "cell_type": np.zeros(0, str),
            "segment_id": np.zeros(0, np.uint64),
        }
    )


def _capsules(
    sk: Skeletons, need: np.ndarray, lo: np.ndarray, hi: np.ndarray, margin: float
) -> Capsules:
    """Capsules (node → parent, roots as spheres) that can touch [lo, hi], draw order set.

    The order is fixed by global keys, so ties break the same way in every
    crop; somata come last, so that a soma wins the voxels inside it over its
    own neurites.
    """
    idx = np.flatnonzero(need)
    par = sk.parent[idx]
    other = np.where(par >= 0, par, idx)
    p0, p1 = sk.pos[idx], sk.pos[other]
    outer = sk.outer_radius
    r0, r1 = outer[idx], outer[other]
    reach = np.maximum(r0, r1)[:, None] + margin
    hit = np.all((np.minimum(p0, p1) - reach <= hi) & (np.maximum(p0, p1) + reach >= lo), axis=1)
    idx, other, p0, p1, r0, r1 = idx[hit], other[hit], p0[hit], p1[hit], r0[hit], r1[hit]
    soma = (sk.comp[idx] == Compartment.SOMA) & (sk.comp[other] == Compartment.SOMA)
    mesh = (
        np.array([m is not None for m in sk.mesh], bool)[sk.cell[idx]]
        if len(idx)
        else np.zeros(0, bool)
    )
    order = np.lexsort((sk.node[idx], sk.cell_id[sk.cell[idx]], soma))
    order = order[~mesh[order]]
    return Capsules(
        p0=p0[order],
        p1=p1[order],
        r0=r0[order].astype(np.float64),
        r1=r1[order].astype(np.float64),
        cell=sk.cell[idx][order],
        node=idx[order],
        soma=soma[order],
        sheath=sk.sheath[idx][order].astype(np.float32),
        open_end=(other != idx)[order],
    )


def _organelles(sk: Skeletons, need: np.ndarray) -> Organelles:
    """Organelle capsules attached to the needed nodes, in a fixed order."""
    keep = need[sk.org_a] & need[sk.org_b] if len(sk.org_a) else np.zeros(0, bool)
    a, b = sk.org_a[keep], sk.org_b[keep]
    order = np.lexsort((sk.node[a], sk.cell_id[sk.cell[a]]))
    a, b = a[order], b[order]
    return Organelles(
        p0=sk.pos[a] + sk.org_off_a[keep][order],
        p1=sk.pos[b] + sk.org_off_b[keep][order],
        radius=sk.org_radius[keep][order].astype(np.float64),
        kind=sk.org_kind[keep][order],
        cell=sk.cell[a],
    )


class _Scene:
    """What a crop's slabs share: the cells near it, their capsules and organelles."""

    def __init__(
        self, sk: Skeletons, need: np.ndarray, lo: np.ndarray, hi: np.ndarray, margin: float
    ) -> None:
        pos = sk.pos
        self.sk = sk
        self.caps = _capsules(sk, need, lo, hi, margin)
        self.orgs = _organelles(sk, need)
        self.comp = np.append(sk.comp, 0).astype(np.uint8)
        self.segment = np.append(sk.segment, 0).astype(np.uint64)
        self.cell_id = np.append(sk.cell_id[sk.cell], 0).astype(np.uint64)
        fill = need & sk.fill
        self.fill_pos = pos[fill]
        self.fill_node = np.flatnonzero(fill)
        self.meshes = [
            MeshCell(c, m, pos[sk.cell == c], np.flatnonzero(sk.cell == c))
            for c, m in enumerate(sk.mesh)
            if m is not None
        ]


class _RenderedArray:
    """A lazy array over one field of a :class:`Neuropil` (renders on indexing)."""

    def __init__(self, neuropil: Neuropil, field: str) -> None:
        self._neuropil = neuropil
        self._field = field

    @property
    def shape(self) -> tuple[int, int, int]:
        return self._neuropil.shape

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(_DTYPES[self._field])

    @property
    def ndim(self) -> int:
        return 3

    def __getitem__(self, key: object) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        if any(k is Ellipsis for k in key):
            i = next(i for i, k in enumerate(key) if k is Ellipsis)
            key = key[:i] + (slice(None),) * (3 - len(key) + 1) + key[i + 1 :]
        key = key + (slice(None),) * (3 - len(key))
        if len(key) != 3:
            raise IndexError(f"too many indices for a 3D volume: {key!r}")
        starts, stops, steps, drop = [], [], [], []
        for axis, (k, n) in enumerate(zip(key, self.shape, strict=True)):
            if isinstance(k, slice):
                a, b, s = k.indices(n)
                if s <= 0:
                    raise IndexError("negative or zero steps are not supported")
                b = max(a, b)
            elif isinstance(k, (int, np.integer)):
                a = int(k) + n if k < 0 else int(k)
                if not 0 <= a < n:
                    raise IndexError(f"index {k} is out of bounds for axis {axis} with size {n}")
                b, s = a + 1, 1
                drop.append(axis)
            else:
                raise IndexError(f"unsupported index {k!r}: use integers and slices")
            starts.append(a)
            stops.append(b)
            steps.append(s)
        start, stop = np.array(starts), np.array(stops)
        if np.any(stop <= start):
            out = np.empty(
                tuple(len(range(a, b, s)) for a, b, s in zip(starts, stops, steps, strict=True)),
                self.dtype,
            )
        else:
            out = self._neuropil._read(self._field, start, stop)
            out = out[tuple(slice(None, None, s) for s in steps)]
        return out.reshape([d for i, d in enumerate(out.shape) if i not in drop]) if drop else out

    def __array__(self, dtype: object = None, copy: object = None) -> np.ndarray:
        out = self[:, :, :]
        return out if dtype is None else out.astype(dtype)


def render_all(neuropil: Neuropil, *, progress: Callable[[int, int], None] | None = None) -> Crop:
    """Render the whole volume, slab by slab, calling ``progress(done, total)``.

    For volumes that fit in memory (the sample, test volumes); read crops of
    :meth:`Neuropil.volumes` for larger ones.
    """
    nz, ny, nx = neuropil.shape
    out = Crop(*(np.empty(neuropil.shape, _DTYPES[f]) for f in FIELDS))
    starts = range(0, nz, _CHUNK)
    for done, z in enumerate(starts, start=1):
        box = (slice(z, min(z + _CHUNK, nz)), slice(0, ny), slice(0, nx))
        crop = neuropil.render(box)
        for f in FIELDS:
            getattr(out, f)[box[0]] = getattr(crop, f)
        if progress is not None:
            progress(done, len(starts))
    return out


def render_dataset(
    neuropil: Neuropil,
    *,
    name: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[Crop, Dataset]:
    """Render the whole volume into memory: its crop (all ground truth) and EM + segmentation.

    The volumes' sources read ``"<name>: em"`` and ``"<name>: segmentation"``;
    ``name`` defaults to ``"synthetic neuropil (seed N)"``.
    """
    config = neuropil.config
    crop = render_all(neuropil, progress=progress)
    name = name or f"synthetic neuropil (seed {config.seed})"
    em = Volume(crop.em, config.voxel_size, config.offset, source=f"{name}: em")
    segmentation = Volume(
        crop.segmentation,
        config.voxel_size,
        config.offset,
        kind="labels",
        source=f"{name}: segmentation",
    )
    return crop, Dataset(em, segmentation)


def sample_neuropil(seed: int = 0) -> Neuropil:
    """The built-in sample: 128×256×256 voxels at 32 nm (4.1×8.2×8.2 µm).

    The window is placed on the smallest neuron soma grown near the origin,
    its centre just beyond the left edge, so the view shows part of a soma
    with its nucleus next to dense neuropil with glia.
    """
    shape = (128, 256, 256)
    vs = 32.0
    grower = TileGrower(NeuropilConfig(seed=seed))
    best = None
    near = range(-2, 3)
    for tile in [(z, y, x) for z in near for y in near for x in near]:
        somata = grower.somata(tile)
        for i, code in enumerate(somata.type_code):
            if CELL_TYPES[TYPE_NAMES[code]].cell_class == "neuron":
                key = (somata.radius[i], tile, i)
                if best is None or key < best[0]:
                    best = (key, somata.pos[i], somata.radius[i])
    offset = (0.0, 0.0, 0.0)
    if best is not None:
        _, centre, radius = best
        extent = np.asarray(shape) * vs
        offset = tuple(centre - np.array([extent[0] / 2, extent[1] / 2, -0.4 * radius]))
    return Neuropil(NeuropilConfig(shape=shape, voxel_size=vs, seed=seed, offset=offset))

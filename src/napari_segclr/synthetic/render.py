"""Voxels from skeletons: labels, compartments and an EM-like image.

Each capsule (a node and its parent, radius interpolated) scores the voxels of
its own small bounding box with the relative distance ``s = d / r`` to its
axis (``s < 1`` inside). A voxel belongs to the cell with the smallest score,
so where capsules of two cells overlap the thinner one keeps its core; the
runner-up score of another cell gives the distance to the interface, where a
membrane is drawn. Astrocytes fill part of the remaining extracellular gaps
near their processes with thin irregular sheets. Organelles (mitochondria,
nuclei, vesicle clouds, lysosomes) mark voxels of their own cell only.

All textures come from :mod:`.noise`, keyed by global coordinates, and every
length is physical (nm), so a voxel renders the same in any crop and the scene
is the same at any voxel size.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from .cell import Compartment
from .noise import (
    hash64,
    interpolate_lattice,
    lattice_range,
    rehash,
    uniform,
    value_noise,
    voxel_normal,
)
from .skeletons import FILL_REACH_NM, LYSOSOME, MITO, MYELIN, NUCLEUS, VESICLES

_FILL_LATTICE = 250.0
_FILL_ECS = 12.0  # nm of extracellular space kept between a sheet and a neurite
_MESH_DEPTH = 200.0  # nm over which the depth inside a mesh cell is resolved


@dataclass(frozen=True)
class Grid:
    """Where a crop sits: global index of its first voxel, shape, voxel size, offset (nm)."""

    start: tuple[int, int, int]
    shape: tuple[int, int, int]
    voxel_size: tuple[float, float, float]
    offset: tuple[float, float, float]

    @functools.cached_property
    def axes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Physical voxel-centre coordinates (nm) along z, y, x."""
        return tuple(
            o + (s + np.arange(n, dtype=np.float64)) * v
            for o, s, n, v in zip(self.offset, self.start, self.shape, self.voxel_size, strict=True)
        )

    @functools.cached_property
    def axes32(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:attr:`axes` in float32."""
        return tuple(a.astype(np.float32) for a in self.axes)

    @property
    def indices(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Global voxel indices along z, y, x."""
        return tuple(s + np.arange(n) for s, n in zip(self.start, self.shape, strict=True))

    @property
    def bounds_nm(self) -> tuple[np.ndarray, np.ndarray]:
        """Physical centres of the first and last voxels."""
        lo = np.asarray(self.offset) + np.asarray(self.start) * np.asarray(self.voxel_size)
        return lo, lo + (np.asarray(self.shape) - 1) * np.asarray(self.voxel_size)

    @property
    def blur_nm(self) -> float:
        """Effective resolution (nm): the geometric mean voxel size."""
        return float(np.prod(self.voxel_size) ** (1 / 3))


@dataclass
class Capsules:
    """Render primitives: capsules ``p0``–``p1`` (nm) with radii ``r0``, ``r1``.

    ``cell`` indexes the per-cell arrays given to :func:`rasterize`, ``soma``
    capsules win over other capsules of their own cell, ``sheath`` is the
    myelin thickness, ``node`` the index of the capsule's child node in the
    caller's node arrays. ``open_end``: the ball at ``p1`` is drawn by another
    capsule (the parent's), so this one skips it. Capsules are drawn in array
    order.
    """

    p0: np.ndarray
    p1: np.ndarray
    r0: np.ndarray
    r1: np.ndarray
    cell: np.ndarray
    node: np.ndarray
    soma: np.ndarray
    sheath: np.ndarray
    open_end: np.ndarray


@dataclass
class Organelles:
    """Organelle capsules (nm) with kind, radius and owning cell index."""

    p0: np.ndarray
    p1: np.ndarray
    radius: np.ndarray
    kind: np.ndarray
    cell: np.ndarray


@dataclass
class MeshCell:
    """A cell rendered from its surface: cell index, mesh, and its skeleton
    nodes (positions, indices in the caller's node arrays) for per-voxel
    compartments."""

    cell: int
    mesh: object
    node_pos: np.ndarray
    node: np.ndarray


@dataclass
class Raster:
    """Per-voxel geometry of a crop.

    ``node``: node (caller's index) whose capsule (or astrocytic sheet) owns
    the voxel, -1 in extracellular space; ``cell``: cell index or -1;
    ``membrane``: darkness (grey levels) of cell
    membranes; ``org_kind``/``org_depth``: organelle and depth inside it (nm,
    negative outside); ``vesicles``: inside a vesicle cloud; ``myelin``:
    inside a myelin sheath, ``myelin_depth`` its depth below the surface (nm).
    """

    node: np.ndarray
    cell: np.ndarray
    membrane: np.ndarray
    org_kind: np.ndarray
    org_depth: np.ndarray
    vesicles: np.ndarray
    myelin: np.ndarray
    myelin_depth: np.ndarray

    def organelle_labels(self) -> np.ndarray:
        """uint8 organelle code per voxel (see :mod:`.skeletons`)."""
        out = np.where(self.org_depth > 0, self.org_kind, 0).astype(np.uint8)
        out[(out == 0) & self.vesicles] = VESICLES
        out[self.myelin] = MYELIN
        return out


def margin_nm(grid: Grid) -> float:
    """How far outside a surface the membrane profile still matters (nm)."""
    return 1.5 * float(np.hypot(20.0, grid.blur_nm)) + 0.5 * max(grid.voxel_size)


def _boxes(
    grid: Grid, lo: np.ndarray, hi: np.ndarray
) -> list[tuple[int, tuple[slice, slice, slice]]]:
    """(row, crop slices) of the boxes [lo, hi] (nm, one per row) that hold voxel centres."""
    origin, _ = grid.bounds_nm
    vs = np.asarray(grid.voxel_size)
    i0 = np.maximum(np.ceil((lo - origin) / vs), 0).astype(int)
    i1 = np.minimum(np.floor((hi - origin) / vs) + 1, grid.shape).astype(int)
    rows = np.flatnonzero(np.all(i1 > i0, axis=1))
    return [
        (int(r), (slice(a[0], b[0]), slice(a[1], b[1]), slice(a[2], b[2])))
        for r, a, b in zip(rows, i0[rows].tolist(), i1[rows].tolist(), strict=True)
    ]


def _capsule_bounds(caps: Capsules, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (nm) holding every voxel a capsule scores (see :func:`_capsule_scores`).

    The voxels a capsule reaches (its radius grown by ``margin``) lie in the
    ball around ``p0``, the shaft (a truncated cone ending in a disc at
    ``p1``) and, unless that end is open, the ball around ``p1``. Bounding
    these, rather than a capsule of the largest radius with two balls, leaves
    about 30 % fewer voxels to score. One nm of slack covers float32 rounding.
    """
    axis = caps.p1 - caps.p0
    length = np.linalg.norm(axis, axis=1, keepdims=True)
    shaft = length > 1e-3
    unit = np.where(shaft, axis / np.where(shaft, length, 1.0), 0.0)
    reach0 = (caps.r0 + margin)[:, None]
    reach1 = (caps.r1 + margin)[:, None]
    # Extent along each axis of the disc of radius reach1 perpendicular to the shaft.
    disc1 = np.sqrt(np.clip(1 - unit * unit, 0, 1)) * reach1
    ball1 = np.where(caps.open_end[:, None] & shaft, disc1, reach1)
    lo = np.minimum(caps.p0 - reach0, caps.p1 - ball1)
    hi = np.maximum(caps.p0 + reach0, caps.p1 + ball1)
    return lo - 1.0, hi + 1.0


def _relative(grid: Grid, sl: tuple[slice, slice, slice], p: np.ndarray) -> tuple[np.ndarray, ...]:
    """Voxel coordinates relative to ``p``, float32, shaped to broadcast."""
    z, y, x = grid.axes32
    return (
        (z[sl[0]] - np.float32(p[0]))[:, None, None],
        (y[sl[1]] - np.float32(p[1]))[None, :, None],
        (x[sl[2]] - np.float32(p[2]))[None, None, :],
    )


def _capsule_distance(
    grid: Grid, sl: tuple[slice, slice, slice], p0: np.ndarray, p1: np.ndarray, r0: float, r1: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distance ``d`` (nm) to a capsule's axis, its local radius ``r`` and the
    position ``t`` (0 at ``p0``, 1 at ``p1``) of the closest axis point."""
    wz, wy, wx = _relative(grid, sl, p0)
    d = (p1 - p0).astype(np.float32)
    l2 = float(d @ d)
    # Every voxel of every capsule box passes here: the z and y terms are
    # summed on the small (z, y) plane, and the box-sized steps work in place.
    w2 = (wz * wz + wy * wy) + wx * wx
    if l2 > 1e-6:
        proj = (wz * d[0] + wy * d[1]) + wx * d[2]
        t = proj * np.float32(1.0 / l2)
        np.maximum(t, 0, out=t)  # np.clip(t, 0, 1), without its call overhead
        np.minimum(t, 1, out=t)
        # dist² = w² - t (2 proj - t l²), evaluated in this order: another
        # order rounds differently and moves voxels at cell boundaries.
        proj *= 2
        r = t * np.float32(l2)
        proj -= r
        proj *= t
        w2 -= proj
        np.multiply(t, np.float32(r1 - r0), out=r)
        r += np.float32(r0)
    else:
        r = np.full(w2.shape, r0, np.float32)
        t = np.zeros(w2.shape, np.float32)
    np.maximum(w2, 0, out=w2)
    return np.sqrt(w2, out=w2), r, t


def _capsule_scores(
    grid: Grid, caps: Capsules, c: int, sl: tuple[slice, slice, slice], margin: float
) -> tuple[np.ndarray, np.ndarray]:
    """Score ``s = d / r`` of capsule ``c`` over box ``sl`` (inf where it does
    not reach) and the local radius ``r``."""
    d, r, t = _capsule_distance(grid, sl, caps.p0[c], caps.p1[c], caps.r0[c], caps.r1[c])
    far = d >= r + np.float32(margin)
    if caps.open_end[c]:
        far |= t >= 1
    s = np.divide(d, r, out=d)
    np.copyto(s, np.inf, where=far)
    return s, r


@dataclass
class _Fold:
    """Per-voxel state while capsules are folded in (views of one box, or the
    crop): best score ``s1`` with its radius ``r1``, its capsule ``owner`` and
    that capsule's ``cell``; runner-up score ``s2`` (of another cell) with its
    radius ``r2``."""

    s1: np.ndarray
    r1: np.ndarray
    s2: np.ndarray
    r2: np.ndarray
    owner: np.ndarray
    cell: np.ndarray

    def __getitem__(self, sl: tuple[slice, slice, slice]) -> _Fold:
        return _Fold(
            self.s1[sl], self.r1[sl], self.s2[sl], self.r2[sl], self.owner[sl], self.cell[sl]
        )


def _fold_in(
    fold: _Fold, s: np.ndarray, r: np.ndarray, c: int, k: int, soma_flags: np.ndarray | None
) -> None:
    """Fold one capsule's scores ``s`` (inf where it does not reach) and radii
    ``r`` into ``fold`` (of the same shape), as capsule ``c`` of cell ``k``.

    A voxel goes to the capsule with the smallest score; the runner-up keeps
    the smallest score of any other cell. A soma capsule (``soma_flags`` given:
    which owners are soma capsules) takes every voxel inside it from the other,
    non-soma capsules of its own cell.
    """
    own = fold.cell == k
    better = s < fold.s1
    new = better > own  # better & ~own: the old owner becomes the runner-up
    if new.any():
        np.copyto(fold.s2, fold.s1, where=new)
        np.copyto(fold.r2, fold.r1, where=new)
    second = s < fold.s2
    second &= ~own
    second &= ~better
    if second.any():
        np.copyto(fold.s2, s, where=second)
        np.copyto(fold.r2, r, where=second)
    if soma_flags is None:
        take = better
    else:
        take = (own & (s <= 1) & (better | ~soma_flags[fold.owner])) | new
    np.copyto(fold.s1, s, where=take)
    np.copyto(fold.r1, r, where=take)
    np.copyto(fold.owner, c, where=take)
    np.copyto(fold.cell, k, where=take)


def rasterize(
    grid: Grid,
    caps: Capsules,
    orgs: Organelles,
    *,
    fill_pos: np.ndarray,
    fill_node: np.ndarray,
    node_cell: np.ndarray,
    meshes: list[MeshCell],
    fill_noise: np.ndarray,
) -> Raster:
    """Geometry of one crop from capsules, organelles and astrocyte fill nodes.

    ``fill_pos``/``fill_node`` are the astrocyte process nodes whose
    neighbourhood may be filled with sheets (positions nm, node indices);
    ``node_cell`` maps node indices to cell indices; ``fill_noise`` (unit
    smooth noise over the crop) shapes the sheets.
    """
    shape = grid.shape
    margin = margin_nm(grid)
    fold = _Fold(
        s1=np.full(shape, np.inf, np.float32),
        r1=np.ones(shape, np.float32),
        s2=np.full(shape, np.inf, np.float32),
        r2=np.ones(shape, np.float32),
        owner=np.full(shape, -1, np.int32),
        cell=np.full(shape, -1, np.int32),
    )
    soma_flags = np.append(caps.soma, np.zeros(len(meshes) + 1, bool))  # per owner, -1 last
    for c, sl in _boxes(grid, *_capsule_bounds(caps, margin)):
        s, r = _capsule_scores(grid, caps, c, sl, margin)
        _fold_in(fold[sl], s, r, c, caps.cell[c], soma_flags if caps.soma[c] else None)
    mesh_owner = len(caps.r0)
    for m, mc in enumerate(meshes):
        _mesh_update(grid, mc, mesh_owner + m, fold)
    s1, r1, owner = fold.s1, fold.r1, fold.owner
    node = np.append(caps.node, np.full(len(meshes) + 1, -1)).astype(np.int32)[owner]
    for m, mc in enumerate(meshes):
        sel = np.nonzero(owner == mesh_owner + m)
        if len(sel[0]) and len(mc.node_pos):
            pts = np.stack([a[i] for a, i in zip(grid.axes, sel, strict=True)], axis=1)
            node[sel] = mc.node[cKDTree(mc.node_pos).query(pts)[1]]
    membrane = _membranes(fold, margin, grid.blur_nm)
    inside = s1 <= 1
    sheath = np.append(caps.sheath, np.zeros(len(meshes) + 1, np.float32))
    myelin, myelin_depth = _myelin(s1, r1, inside, sheath, owner)
    glia_fill, fill_owner = _glia_fill(grid, s1, r1, membrane, fill_pos, fill_node, fill_noise)
    np.copyto(node, -1, where=~inside)
    np.copyto(node, fill_owner, where=glia_fill)
    cell = np.append(node_cell, -1).astype(np.int32)[node]
    org_kind, org_depth, vesicles = _organelles(grid, orgs, cell, margin)
    return Raster(
        node=node,
        cell=cell,
        membrane=membrane,
        org_kind=org_kind,
        org_depth=org_depth,
        vesicles=vesicles,
        myelin=myelin,
        myelin_depth=myelin_depth,
    )


def _membranes(fold: _Fold, margin: float, blur: float) -> np.ndarray:
    """Membrane darkness (grey levels) at cell surfaces facing extracellular
    space and at borders between cells."""
    flat_s1, flat_r1 = fold.s1.reshape(-1), fold.r1.reshape(-1)
    membrane = np.zeros(fold.s1.shape, np.float32)
    flat_m = membrane.reshape(-1)
    surface = np.subtract(flat_s1, 1)
    np.abs(surface, out=surface)
    surface *= flat_r1
    near = np.flatnonzero(surface < margin)
    flat_m[near] = _SURFACE * _profile(surface[near], 14.0, blur)
    flat_s2 = fold.s2.reshape(-1)
    pair = np.flatnonzero((flat_s1 <= 1) & (flat_s2 < np.inf))
    border = (flat_s2[pair] - flat_s1[pair]) / (1 / flat_r1[pair] + 1 / fold.r2.reshape(-1)[pair])
    flat_m[pair] = np.maximum(flat_m[pair], _BORDER * _profile(border, 20.0, blur))
    return membrane


def _myelin(
    s1: np.ndarray, r1: np.ndarray, inside: np.ndarray, sheath: np.ndarray, owner: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Voxels in a myelin sheath (``sheath``: thickness per owner), and their
    depth below the sheath's surface (nm)."""
    myelin = np.zeros(s1.shape, bool)
    depth_out = np.zeros(s1.shape, np.float32)
    if np.any(sheath > 0):
        # Only voxels inside myelinated capsules can lie in a sheath.
        at = np.flatnonzero(np.take(sheath > 0, owner) & inside)
        depth = (1 - s1.reshape(-1)[at]) * r1.reshape(-1)[at]
        in_sheath = depth < sheath[owner.reshape(-1)[at]]
        myelin.reshape(-1)[at] = in_sheath
        depth_out.reshape(-1)[at[in_sheath]] = depth[in_sheath]
    return myelin, depth_out


def _mesh_update(grid: Grid, mc: MeshCell, index: int, fold: _Fold) -> None:
    """Fold a mesh cell's inside mask (with depth from a distance transform) in."""
    from . import mesh as mesh_module  # lazily: only cells with a surface need it

    vs = np.asarray(grid.voxel_size)
    pad = np.ceil(_MESH_DEPTH / vs).astype(int) + 1
    v_lo, v_hi = mc.mesh.vertices.min(axis=0), mc.mesh.vertices.max(axis=0)
    origin, _ = grid.bounds_nm
    i0 = np.maximum(np.floor((v_lo - origin) / vs).astype(int) - 1, 0)
    i1 = np.minimum(np.ceil((v_hi - origin) / vs).astype(int) + 2, grid.shape)
    if np.any(i1 <= i0):
        return
    lo_p, hi_p = i0 - pad, i1 + pad
    inside = mesh_module.mesh_inside(mc.mesh, origin + lo_p * vs, tuple(hi_p - lo_p), tuple(vs))
    depth = ndimage.distance_transform_edt(inside, sampling=vs)
    out = ndimage.distance_transform_edt(~inside, sampling=vs)
    inner = tuple(slice(int(p), int(p + b - a)) for p, a, b in zip(pad, i0, i1, strict=True))
    depth = np.minimum(depth[inner], _MESH_DEPTH)
    out = np.minimum(out[inner], _MESH_DEPTH)
    s = np.where(inside[inner], 1 - depth / _MESH_DEPTH, 1 + out / _MESH_DEPTH).astype(np.float32)
    sl = tuple(slice(int(a), int(b)) for a, b in zip(i0, i1, strict=True))
    s[s >= 2] = np.inf
    _fold_in(fold[sl], s, np.full(s.shape, _MESH_DEPTH, np.float32), index, mc.cell, None)


def _glia_fill(
    grid: Grid,
    s1: np.ndarray,
    r1: np.ndarray,
    membrane: np.ndarray,
    fill_pos: np.ndarray,
    fill_node: np.ndarray,
    noise: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Astrocytic sheets in extracellular space near astrocyte processes.

    A coarse lattice (anchored at 0 nm) records, per point, the nearest process
    node within ``FILL_REACH_NM`` and the depth into that reach; smoothed to
    voxels, intersected with smooth noise and kept a few nm off neurites.
    Returns the sheet mask and the owning node per voxel; draws the sheets'
    membranes into ``membrane``.
    """
    if not len(fill_pos):
        return np.zeros(grid.shape, bool), np.full(grid.shape, -1, np.int32)
    axes = grid.axes
    ranges = [lattice_range(a, _FILL_LATTICE) for a in axes]
    # The owner lookup rounds to the nearest lattice point: cover that too.
    ranges = [
        (
            min(a, int(np.floor(ax[0] / _FILL_LATTICE))),
            max(b, int(np.ceil(ax[-1] / _FILL_LATTICE)) + 1),
        )
        for (a, b), ax in zip(ranges, axes, strict=True)
    ]
    lz, ly, lx = (np.arange(a, b) * _FILL_LATTICE for a, b in ranges)
    pts = np.stack(np.meshgrid(lz, ly, lx, indexing="ij"), axis=-1).reshape(-1, 3)
    dist, idx = cKDTree(fill_pos).query(pts, distance_upper_bound=FILL_REACH_NM)
    found = np.isfinite(dist)
    depth = np.where(found, FILL_REACH_NM - dist, -_FILL_LATTICE).reshape(len(lz), len(ly), len(lx))
    owner_lat = np.where(found, fill_node[np.minimum(idx, len(fill_node) - 1)], -1)
    owner_lat = owner_lat.astype(np.int32).reshape(depth.shape)
    lo = tuple(a for a, _ in ranges)
    reach = interpolate_lattice(depth, lo, axes, _FILL_LATTICE)
    # Owner of each voxel: the node of its nearest lattice point (a lookup per axis).
    who = owner_lat
    for axis, (a, l0) in enumerate(zip(axes, lo, strict=True)):
        who = np.take(who, np.rint(a / _FILL_LATTICE).astype(int) - l0, axis=axis)
    # Sheets: extracellular voxels within reach of a process. Most of the crop
    # is a candidate, so whole arrays beat picking the candidates out.
    cand = (s1 > 1) & (reach > -_FILL_LATTICE)
    sheet = np.subtract(s1, 1)  # the gap to the nearest neurite ...
    sheet *= r1
    sheet -= _FILL_ECS
    np.minimum(sheet, reach, out=sheet)  # ... within reach ...
    np.add(noise, 0.5, out=reach)
    reach *= 150.0
    np.minimum(sheet, reach, out=sheet)  # ... where the noise allows
    fill = cand & (sheet > 0) & (who >= 0)
    who[~fill] = -1
    # Sheet membranes, on both sides of the sheet boundary.
    edge = np.flatnonzero(cand & (np.abs(sheet) < margin_nm(grid)))
    flat_m = membrane.reshape(-1)
    flat_m[edge] = np.maximum(
        flat_m[edge], _SURFACE * _profile(sheet.reshape(-1)[edge], 14.0, grid.blur_nm)
    )
    return fill, who


def _organelles(
    grid: Grid, orgs: Organelles, cell: np.ndarray, margin: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    kind = np.zeros(grid.shape, np.uint8)
    depth = np.full(grid.shape, -np.inf, np.float32)
    vesicles = np.zeros(grid.shape, bool)
    reach = orgs.radius + margin
    lo = np.minimum(orgs.p0, orgs.p1) - reach[:, None]
    hi = np.maximum(orgs.p0, orgs.p1) + reach[:, None]
    for o, sl in _boxes(grid, lo, hi):
        radius = np.float32(orgs.radius[o])
        dist, _, _ = _capsule_distance(grid, sl, orgs.p0[o], orgs.p1[o], radius, radius)
        mine = cell[sl] == orgs.cell[o]
        mine &= dist < radius + np.float32(margin)
        d = np.subtract(radius, dist, out=dist)  # depth inside the organelle
        if orgs.kind[o] == VESICLES:
            vesicles[sl] |= mine & (d > 0)
            continue
        better = d > depth[sl]
        better &= mine
        np.copyto(depth[sl], d, where=better)
        np.copyto(kind[sl], orgs.kind[o], where=better)
    return kind, depth, vesicles


# -- EM appearance ---------------------------------------------------------------

# Grey levels before acquisition effects: extracellular space, cytoplasm,
# mitochondria, lysosomes, nucleoplasm, myelin; peak darkening of a cell
# surface and of the border between two cells.
_ECS, _CYTO, _MITO, _LYSO, _NUCLEUS, _MYELIN = 196.0, 152.0, 100.0, 70.0, 172.0, 46.0
_SURFACE, _BORDER = 190.0, 190.0


def _profile(d: np.ndarray, width: float, blur: float) -> np.ndarray:
    """Darkness (0–1) of a membrane ``width`` nm thick seen from ``d`` nm, blurred.

    The integral of the profile is the membrane's width whatever the blur, so
    membranes fade, not vanish, at coarse voxel sizes.
    """
    w_eff = float(np.hypot(width, blur))
    sigma = w_eff / 2.355
    return np.float32(width / w_eff) * np.exp(np.float32(-0.5 / sigma**2) * d * d)


def paint(
    grid: Grid,
    raster: Raster,
    comp: np.ndarray,
    textures: tuple[np.ndarray, np.ndarray],
    *,
    shade: np.ndarray,
    glycogen: np.ndarray,
    seed: int,
    noise: float,
    contrast_variation: float,
) -> np.ndarray:
    """The EM image (uint8) of a rasterised crop.

    ``comp`` are the voxel compartments, ``textures`` a fine and a medium
    unit noise field (:func:`textures`); ``shade`` (grey offset) and
    ``glycogen`` (bool) are per cell, indexed by ``raster.cell`` (-1: none).
    """
    blur = grid.blur_nm
    fine, mid = (t.reshape(-1) for t in textures)
    cell = raster.cell.reshape(-1)
    # Cytoplasm almost everywhere: whole arrays beat picking the voxels out.
    img = np.take(shade, cell)
    img += _CYTO
    tmp = np.multiply(fine, 6.0)
    img += tmp
    np.multiply(mid, 5.0, out=tmp)
    img += tmp
    np.multiply(fine, 4.0, out=tmp)
    tmp += _ECS
    np.copyto(img, tmp, where=cell < 0)
    # Somata: darker, rougher cytoplasm (endoplasmic reticulum, ribosomes).
    sub = np.flatnonzero(comp.reshape(-1) == Compartment.SOMA)
    img[sub] -= 10.0 + 8.0 * np.abs(fine[sub]) + 30.0 * np.clip(fine[sub] - 1.2, 0, None)
    # Glycogen granules in astrocytes: sparse dark specks.
    sub = np.flatnonzero(glycogen[cell] & (fine > 1.6))
    img[sub] -= 70.0 * (fine[sub] - 1.6) * np.clip(mid[sub] + 0.5, 0, 1)
    od = raster.org_depth.reshape(-1)
    kind = raster.org_kind.reshape(-1)
    org = np.flatnonzero(od > 0)
    ok, odo = kind[org], od[org]
    sub = org[ok == MITO]
    img[sub] = _MITO + 14.0 * fine[sub] + 0.1 * shade[cell[sub]]
    sub = org[ok == LYSOSOME]
    img[sub] = _LYSO + 8.0 * mid[sub]
    nuc = ok == NUCLEUS
    sub = org[nuc]
    # Heterochromatin: clumps, and a band under the envelope.
    chromatin = 45.0 * np.clip(mid[sub] - 0.3, 0, 1) + 40.0 * np.exp(-odo[nuc] / 120.0)
    img[sub] = _NUCLEUS + 0.5 * shade[cell[sub]] + 6.0 * fine[sub] - chromatin
    ves = np.flatnonzero(raster.vesicles.reshape(-1) & ~(od > 0))
    if len(ves):
        img[ves] -= _vesicle_dots(grid, ves, blur, seed)
    my = np.flatnonzero(raster.myelin.reshape(-1))
    if len(my):
        lamellae = np.exp(-((np.pi * blur / 12.0) ** 2) / 2)
        depth = raster.myelin_depth.reshape(-1)[my]
        img[my] = _MYELIN + 6.0 * fine[my] + 20.0 * lamellae * np.cos(2 * np.pi * depth / 12.0)
    # Membranes: cell surfaces and borders, organelle envelopes.
    img -= raster.membrane.reshape(-1)
    env = np.flatnonzero(np.isfinite(od) & (np.abs(od) < margin_nm(grid)))
    ke = kind[env]
    strength = np.where(ke == NUCLEUS, 130.0, 90.0).astype(np.float32)
    img[env] -= np.maximum(
        strength * _profile(od[env], 14.0, blur) - raster.membrane.reshape(-1)[env], 0
    )
    return _acquire(grid, img.reshape(grid.shape), seed, noise, contrast_variation)


def textures(grid: Grid, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Fine (≈80 nm, at least 2.5 voxels) and medium (220 nm) unit noise fields."""
    axes = grid.axes
    fine = value_noise(axes, max(80.0, 2.5 * min(grid.voxel_size)), seed * 16 + 1)
    return fine, value_noise(axes, 220.0, seed * 16 + 2)


def _vesicle_dots(grid: Grid, flat: np.ndarray, blur: float, seed: int) -> np.ndarray:
    """Darkening from synaptic vesicles (≈40 nm, on a jittered 55 nm lattice)
    at the voxels with flat indices ``flat``."""
    spacing, radius = 55.0, 20.0
    idx = np.unravel_index(flat, grid.shape)
    # Per axis (z, y, x) throughout: 1-D arrays are cheaper than (n, 3) ones.
    pts = [a[i] for a, i in zip(grid.axes, idx, strict=True)]
    base = [np.floor(p / spacing - 0.5).astype(np.int64) for p in pts]
    # The eight lattice cells around each voxel; their hashes share prefixes.
    hz = [hash64(seed, base[0] + dz) for dz in (0, 1)]
    hzy = {(dz, dy): rehash(hz[dz], base[1] + dy) for dz in (0, 1) for dy in (0, 1)}
    # Squared distance to the nearest dot (one square root at the end: it
    # preserves order, so the result is the same).
    best = np.full(len(flat), np.inf)
    for corner in np.ndindex(2, 2, 2):
        h = rehash(hzy[corner[:2]], base[2] + corner[2])
        d2 = None
        for a in range(3):
            j = ((h >> np.uint64(16 * a)) & np.uint64(0xFFFF)).astype(np.float64)
            centre = (base[a] + corner[a] + 0.25 + 0.5 * j / 65536.0) * spacing
            off = pts[a] - centre
            d2 = off * off if d2 is None else d2 + off * off
        present = (h >> np.uint64(48)) < np.uint64(int(0.8 * 65536))
        np.minimum(best, d2, out=best, where=present)
    np.sqrt(best, out=best)
    sigma = np.hypot(radius / 1.2, blur / 2.355)
    return (90.0 * (radius / 1.2 / sigma) ** 2 * np.exp(-0.5 * (best / sigma) ** 2)).astype(
        np.float32
    )


def _acquire(grid: Grid, img: np.ndarray, seed: int, noise: float, variation: float) -> np.ndarray:
    """Detector effects: slow drift, per-slice jitter (FIB-SEM), shot/Gaussian noise."""
    if variation > 0:
        slow = value_noise(grid.axes, 6000.0, seed * 16 + 5)
        iz = grid.indices[0]
        slice_gain = (uniform(seed, iz, 11) - 0.5).astype(np.float32)[:, None, None]
        slice_off = (uniform(seed, iz, 12) - 0.5).astype(np.float32)[:, None, None]
        # img = 128 + (img - 128) (1 + v (0.5 slow + 0.3 gain)) + v (30 slow + 25 off),
        # in place.
        gain = np.multiply(slow, 0.5)
        gain += 0.3 * slice_gain
        gain *= variation
        gain += 1
        img -= 128.0
        img *= gain
        slow *= 30.0
        slow += 25.0 * slice_off
        slow *= variation
        slow += 128.0
        img += slow
    if noise > 0:
        scale = np.maximum(img, 8.0)
        scale *= np.float32(1 / 128.0)
        np.sqrt(scale, out=scale)
        scale *= voxel_normal(grid.indices, seed * 16 + 7)
        scale *= np.float32(noise)
        img += scale
    np.clip(img, 0, 255, out=img)
    return np.rint(img, out=img).astype(np.uint8)

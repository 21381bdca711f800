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
from .noise import hash64, interpolate_lattice, lattice_range, uniform, value_noise, voxel_normal
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
) -> tuple[np.ndarray, np.ndarray]:
    """Distance ``d`` (nm) to a capsule's axis, its local radius ``r`` and the
    position ``t`` (0 at ``p0``, 1 at ``p1``) of the closest axis point."""
    wz, wy, wx = _relative(grid, sl, p0)
    d = (p1 - p0).astype(np.float32)
    l2 = float(d @ d)
    w2 = wz * wz + wy * wy + wx * wx
    if l2 > 1e-6:
        proj = wz * d[0] + wy * d[1] + wx * d[2]
        t = proj * np.float32(1.0 / l2)
        np.clip(t, 0, 1, out=t)
        dist2 = w2 - t * (2 * proj - t * np.float32(l2))
        r = np.float32(r0) + t * np.float32(r1 - r0)
    else:
        dist2 = w2
        r = np.full(w2.shape, r0, np.float32)
        t = np.zeros(w2.shape, np.float32)
    np.maximum(dist2, 0, out=dist2)
    return np.sqrt(dist2, out=dist2), r, t


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
    # Per voxel: best score, its radius, runner-up score (of another cell),
    # its radius, owning capsule and its cell.
    s1 = np.full(shape, np.inf, np.float32)
    r1 = np.ones(shape, np.float32)
    s2 = np.full(shape, np.inf, np.float32)
    r2 = np.ones(shape, np.float32)
    owner = np.full(shape, -1, np.int32)
    flat = (*(a.reshape(-1) for a in (s1, r1, s2, r2, owner)), np.full(s1.size, -1, np.int32))
    soma_flags = np.append(caps.soma, np.zeros(len(meshes) + 1, bool))  # per owner, -1 last
    reach = np.maximum(caps.r0, caps.r1) + margin
    lo = np.minimum(caps.p0, caps.p1) - reach[:, None]
    hi = np.maximum(caps.p0, caps.p1) + reach[:, None]
    for c, sl in _boxes(grid, lo, hi):
        d, r, t = _capsule_distance(grid, sl, caps.p0[c], caps.p1[c], caps.r0[c], caps.r1[c])
        near = d < r + np.float32(margin)
        if caps.open_end[c]:
            near &= t < 1
        near = np.nonzero(near)
        r = r[near]
        idx = _flat_index(grid.shape, sl, near)
        _update(flat, idx, d[near] / r, r, c, caps.cell[c], soma_flags if caps.soma[c] else None)
    mesh_owner = len(caps.r0)
    for m, mc in enumerate(meshes):
        _mesh_update(grid, mc, mesh_owner + m, flat)
    node = np.append(caps.node, np.full(len(meshes) + 1, -1)).astype(np.int32)[owner]
    for m, mc in enumerate(meshes):
        sel = np.nonzero(owner == mesh_owner + m)
        if len(sel[0]) and len(mc.node_pos):
            pts = np.stack([a[i] for a, i in zip(grid.axes, sel, strict=True)], axis=1)
            node[sel] = mc.node[cKDTree(mc.node_pos).query(pts)[1]]
    inside = s1 <= 1
    blur = grid.blur_nm
    membrane = np.zeros(shape, np.float32)
    flat_m, flat_s1, flat_r1 = membrane.reshape(-1), s1.reshape(-1), r1.reshape(-1)
    # Cell surfaces (facing extracellular space) and borders between cells.
    near = np.flatnonzero(np.abs(flat_s1 - 1) * flat_r1 < margin)
    surface = np.abs(flat_s1[near] - 1) * flat_r1[near]
    flat_m[near] = _SURFACE * _profile(surface, 14.0, blur)
    flat_s2 = s2.reshape(-1)
    pair = np.flatnonzero(inside.reshape(-1) & (flat_s2 < np.inf))
    border = (flat_s2[pair] - flat_s1[pair]) / (1 / flat_r1[pair] + 1 / r2.reshape(-1)[pair])
    flat_m[pair] = np.maximum(flat_m[pair], _BORDER * _profile(border, 20.0, blur))
    myelin = np.zeros(shape, bool)
    myelin_depth = np.zeros(shape, np.float32)
    if np.any(caps.sheath > 0):
        sheath = np.append(caps.sheath, np.zeros(len(meshes) + 1, np.float32))[owner]
        depth = (1 - s1) * r1
        myelin = inside & (depth < sheath)
        myelin_depth = np.where(myelin, depth, 0)
    glia_fill, fill_owner = _glia_fill(grid, s1, r1, membrane, fill_pos, fill_node, fill_noise)
    owned = inside | glia_fill
    node = np.where(glia_fill, fill_owner, np.where(inside, node, -1))
    cell = np.append(node_cell, -1)[np.where(owned, node, -1)]
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


def _flat_index(shape, sl, near) -> np.ndarray:
    """Flat indices into an array of ``shape`` of the voxels ``near`` of box ``sl``."""
    iz, iy, ix = (n + s.start for n, s in zip(near, sl, strict=True))
    return (iz * shape[1] + iy) * shape[2] + ix


def _update(
    flat: tuple[np.ndarray, ...],
    idx: np.ndarray,
    s: np.ndarray,
    r: np.ndarray,
    c: int,
    k: int,
    soma_flags: np.ndarray | None,
) -> None:
    """Fold one capsule's scores ``s`` (radii ``r``) at flat voxel indices ``idx``
    into the per-voxel state ``flat`` (see :func:`rasterize`).

    A voxel goes to the capsule with the smallest score; the runner-up keeps
    the smallest score of any other cell. A soma capsule (``soma_flags`` given:
    which owners are soma capsules) takes every voxel inside it from the other,
    non-soma capsules of its own cell.
    """
    s1, r1, s2, r2, owner, cell = flat
    best, own = s1[idx], cell[idx] == k
    better = s < best
    new = better & ~own
    if new.any():
        demoted = idx[new]
        s2[demoted] = best[new]
        r2[demoted] = r1[demoted]
    second = ~own & ~better
    if second.any():
        cand, s_c = idx[second], s[second]
        closer = s_c < s2[cand]
        s2[cand[closer]] = s_c[closer]
        r2[cand[closer]] = r[second][closer]
    if soma_flags is None:
        take = better
    else:
        take = (own & (s <= 1) & (better | ~soma_flags[owner[idx]])) | new
    won = idx[take]
    s1[won] = s[take]
    r1[won] = r[take]
    owner[won] = c
    cell[won] = k


def _mesh_update(grid: Grid, mc: MeshCell, index: int, flat: tuple[np.ndarray, ...]) -> None:
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
    near = np.nonzero(s < 2)
    idx = _flat_index(grid.shape, sl, near)
    r = np.full(len(idx), _MESH_DEPTH, np.float32)
    _update(flat, idx, s[near], r, index, mc.cell, None)


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
    fill = np.zeros(grid.shape, bool)
    owner = np.full(grid.shape, -1, np.int64)
    if not len(fill_pos):
        return fill, owner
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
    owner_lat = np.where(found, fill_node[np.minimum(idx, len(fill_node) - 1)], -1).reshape(
        depth.shape
    )
    lo = tuple(a for a, _ in ranges)
    reach = interpolate_lattice(depth, lo, axes, _FILL_LATTICE).reshape(-1)
    nearest = [np.rint(a / _FILL_LATTICE).astype(int) - l0 for a, l0 in zip(axes, lo, strict=True)]
    # Candidates: extracellular voxels within reach of a process.
    flat_s1 = s1.reshape(-1)
    cand = np.flatnonzero((flat_s1 > 1) & (reach > -_FILL_LATTICE))
    gap = (flat_s1[cand] - 1) * r1.reshape(-1)[cand] - _FILL_ECS
    sheet = np.minimum(np.minimum(gap, reach[cand]), (noise.reshape(-1)[cand] + 0.5) * 150.0)
    iz, iy, ix = np.unravel_index(cand, grid.shape)
    who = owner_lat[nearest[0][iz], nearest[1][iy], nearest[2][ix]]
    inside = (sheet > 0) & (who >= 0)
    fill.reshape(-1)[cand[inside]] = True
    owner.reshape(-1)[cand[inside]] = who[inside]
    # Sheet membranes, on both sides of the sheet boundary.
    edge = np.abs(sheet) < margin_nm(grid)
    flat_m = membrane.reshape(-1)
    flat_m[cand[edge]] = np.maximum(
        flat_m[cand[edge]], _SURFACE * _profile(sheet[edge], 14.0, grid.blur_nm)
    )
    return fill, owner


def _organelles(
    grid: Grid, orgs: Organelles, cell: np.ndarray, margin: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    kind = np.zeros(grid.shape, np.uint8)
    depth = np.full(grid.shape, -np.inf, np.float32)
    vesicles = np.zeros(grid.shape, bool)
    reach = orgs.radius + margin
    lo = np.minimum(orgs.p0, orgs.p1) - reach[:, None]
    hi = np.maximum(orgs.p0, orgs.p1) + reach[:, None]
    flat_cell, flat_kind, flat_depth, flat_ves = (
        a.reshape(-1) for a in (cell, kind, depth, vesicles)
    )
    for o, sl in _boxes(grid, lo, hi):
        radius = np.float32(orgs.radius[o])
        dist, _, _ = _capsule_distance(grid, sl, orgs.p0[o], orgs.p1[o], radius, radius)
        near = np.nonzero(dist < radius + np.float32(margin))
        idx = _flat_index(grid.shape, sl, near)
        d = radius - dist[near]
        mine = flat_cell[idx] == orgs.cell[o]
        if orgs.kind[o] == VESICLES:
            flat_ves[idx[mine & (d > 0)]] = True
            continue
        better = mine & (d > flat_depth[idx])
        flat_depth[idx[better]] = d[better]
        flat_kind[idx[better]] = orgs.kind[o]
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
    img = np.full(cell.shape, _ECS, np.float32)
    img += 4.0 * fine
    c = np.flatnonzero(cell >= 0)
    k = cell[c]
    img[c] = _CYTO + shade[k] + 6.0 * fine[c] + 5.0 * mid[c]
    # Somata: darker, rougher cytoplasm (endoplasmic reticulum, ribosomes).
    sub = c[comp.reshape(-1)[c] == Compartment.SOMA]
    img[sub] -= 10.0 + 8.0 * np.abs(fine[sub]) + 30.0 * np.clip(fine[sub] - 1.2, 0, None)
    # Glycogen granules in astrocytes: sparse dark specks.
    sub = c[glycogen[k] & (fine[c] > 1.6)]
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
    pts = np.stack([a[i] for a, i in zip(grid.axes, idx, strict=True)], axis=1)
    base = np.floor(pts / spacing - 0.5).astype(np.int64)
    best = np.full(len(pts), np.inf)
    for corner in np.ndindex(2, 2, 2):
        cellz = base + np.asarray(corner)
        h = hash64(seed, cellz[:, 0], cellz[:, 1], cellz[:, 2])
        j = np.stack([(h >> np.uint64(16 * a)) & np.uint64(0xFFFF) for a in range(3)], axis=1)
        centre = (cellz + 0.25 + 0.5 * j.astype(np.float64) / 65536.0) * spacing
        present = (h >> np.uint64(48)) < np.uint64(int(0.8 * 65536))
        d = np.where(present, np.linalg.norm(pts - centre, axis=1), np.inf)
        best = np.minimum(best, d)
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
        img -= 128.0
        img *= 1 + variation * (0.5 * slow + 0.3 * slice_gain)
        img += 128.0 + variation * (30.0 * slow + 25.0 * slice_off)
    if noise > 0:
        scale = np.sqrt(np.maximum(img, 8.0) * np.float32(1 / 128.0))
        scale *= voxel_normal(grid.indices, seed * 16 + 7)
        img += np.float32(noise) * scale
    np.clip(img, 0, 255, out=img)
    return np.rint(img, out=img).astype(np.uint8)

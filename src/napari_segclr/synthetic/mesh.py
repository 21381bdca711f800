"""Triangle surface meshes: reading OBJ files and voxelising a surface in a crop.

``mesh_inside`` rasterises a closed surface into one crop at a time without
touching the rest of the volume. It casts one ray along z through every voxel
column centre: a triangle whose (y, x) projection covers the column crosses it
once, at a height found from barycentric weights, and a voxel is inside where
the winding number (crossings counted with the sign of the triangle's
orientation) below it is non-zero. Columns exactly on a shared edge or vertex
count the crossing once: ties are broken by one fixed symbolic shift of the
column centre, the rasteriser's "top-left rule", so no jitter is needed.

Real meshes are rarely perfect: reconstructions carry small holes, duplicated
faces and zero-thickness fins. Signed crossings cancel fins and opposite
duplicates, and a voxel must look inside both from below and from above, so
that a column passing through a hole loses at most the stretch next to the hole
instead of flipping to "inside" all the way to the end of the crop.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path

import numpy as np

from ..exceptions import MorphologyFormatError
from ..io.volume import as_vec3, as_voxel_size
from .cell import Mesh

#: Candidate (triangle, column) pairs evaluated at once; bounds peak memory.
_BATCH = 1 << 21


def read_obj(path: str | Path, *, voxel_size_nm: float | Sequence[float] = 8.0) -> Mesh:
    """Read a Wavefront OBJ surface with vertices ``x y z`` in voxels.

    Parameters
    ----------
    path
        An ``.obj`` file; only ``v`` and ``f`` records are used, polygons are
        split into triangle fans, texture/normal indices (``f 1/2/3 …``) and
        negative (relative) indices are understood.
    voxel_size_nm
        Size of the file's voxel unit in nm, one number or (z, y, x).

    Returns
    -------
    Mesh
        Vertices in nm, (z, y, x) order.
    """
    path = Path(path)
    scale = np.asarray(as_voxel_size(voxel_size_nm, str(path)))
    vertices: list[list[float]] = []
    faces: list[list[int]] = []
    with path.open(encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            tokens = line.split()
            if not tokens:
                continue
            try:
                if tokens[0] == "v":
                    vertices.append([float(t) for t in tokens[1:4]])
                    if len(tokens) < 4:
                        raise ValueError
                elif tokens[0] == "f":
                    corners = [int(t.split("/", 1)[0]) for t in tokens[1:]]
                    if len(corners) < 3:
                        raise ValueError
                    corners = [c - 1 if c > 0 else len(vertices) + c for c in corners]
                    faces.extend([corners[0], b, c] for b, c in pairwise(corners[1:]))
            except ValueError:
                raise MorphologyFormatError(
                    f"{path}: line {lineno}: malformed {tokens[0]!r} record: {line.strip()!r}"
                ) from None
    if not faces:
        raise MorphologyFormatError(f"{path}: no faces, not a surface mesh")
    xyz = np.asarray(vertices, dtype=np.float64)
    tri = np.asarray(faces, dtype=np.int64)
    if tri.min() < 0 or tri.max() >= len(xyz):
        raise MorphologyFormatError(f"{path}: a face refers to a vertex that does not exist")
    if not np.all(np.isfinite(xyz)):
        raise MorphologyFormatError(f"{path}: vertex coordinates must be finite numbers")
    return Mesh(vertices=xyz[:, ::-1] * scale, faces=tri)


def mesh_inside(
    mesh: Mesh,
    origin_nm: float | Sequence[float],
    shape: Sequence[int],
    voxel_size: float | Sequence[float],
) -> np.ndarray:
    """Which voxel centres of a crop lie inside a closed surface.

    Parameters
    ----------
    mesh
        Closed, consistently oriented triangle surface in nm (z, y, x); small
        holes and duplicated faces are tolerated (see the module notes).
    origin_nm
        Physical centre (nm, z y x) of the crop's first voxel.
    shape
        Crop shape in voxels (z, y, x).
    voxel_size
        Voxel size in nm, one number or (z, y, x).

    Returns
    -------
    numpy.ndarray
        Boolean array of ``shape``.
    """
    vs = np.asarray(as_voxel_size(voxel_size, "mesh_inside"))
    origin = np.asarray(as_vec3(origin_nm, "origin_nm"))
    dims = tuple(int(s) for s in shape)
    if len(dims) != 3 or min(dims) < 0:
        raise ValueError(f"shape must be three non-negative voxel counts (z, y, x), got {shape!r}")
    nz, ny, nx = dims
    if nz * ny * nx == 0 or len(mesh.faces) == 0:
        return np.zeros(dims, dtype=bool)

    # Crop-local voxel units: voxel centres sit on integer coordinates.
    local = (np.asarray(mesh.vertices, dtype=np.float64) - origin) / vs
    faces = np.asarray(mesh.faces, dtype=np.int64)
    ty, tx = local[faces, 1], local[faces, 2]
    y0 = np.maximum(np.ceil(ty.min(axis=1)), 0).astype(np.int64)
    y1 = np.minimum(np.floor(ty.max(axis=1)), ny - 1).astype(np.int64)
    x0 = np.maximum(np.ceil(tx.min(axis=1)), 0).astype(np.int64)
    x1 = np.minimum(np.floor(tx.max(axis=1)), nx - 1).astype(np.int64)
    overlaps = (y0 <= y1) & (x0 <= x1)
    if not overlaps.any():
        return np.zeros(dims, dtype=bool)
    edges = _Edges(local, faces[overlaps])
    keep = edges.orient != 0  # triangles seen edge-on cover no column
    edges = edges.subset(keep)
    y0 = y0[overlaps][keep]
    # One scanline per (triangle, row): the columns the triangle spans on that row.
    tri, k = _expand(y1[overlaps][keep] - y0 + 1)
    iy = y0[tri] + k
    x_lo, x_hi = edges.row_span(tri, iy)
    x_lo = np.maximum(np.ceil(x_lo), 0).astype(np.int64)
    counts = np.maximum(np.minimum(np.floor(x_hi), nx - 1).astype(np.int64) - x_lo + 1, 0)

    # Winding-number increments at the first voxel above each crossing;
    # layer nz collects crossings above the crop, needed for the column total.
    winding = np.zeros((nz + 1, ny, nx), dtype=np.int16)
    bounds = np.searchsorted(np.cumsum(counts), np.arange(_BATCH, counts.sum(), _BATCH))
    for batch in np.split(np.arange(len(counts)), np.unique(bounds)):
        row, k = _expand(counts[batch])
        row = batch[row]
        cols = x_lo[row] + k
        hit, z = edges.crossings(tri[row], iy[row], cols)
        level = np.clip(np.floor(z) + 1, 0, nz).astype(np.int64)
        np.add.at(winding, (level, iy[row[hit]], cols[hit]), edges.orient[tri[row[hit]]])
    for i in range(1, nz + 1):  # cumulative sum along z, slice by slice (fast in C order)
        winding[i] += winding[i - 1]
    below, total = winding[:nz], winding[nz]
    return (below != 0) & (below != total)


def _expand(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Owner index and rank within its owner for ``counts[i]`` items per owner."""
    owner = np.repeat(np.arange(len(counts)), counts)
    rank = np.arange(len(owner)) - np.repeat(np.cumsum(counts) - counts, counts)
    return owner, rank


class _Edges:
    """The three edge functions of each triangle in the (y, x) plane.

    Every edge is evaluated from its lower-numbered vertex and then signed, so
    the two triangles sharing an edge get exactly opposite values and a column
    on the edge is decided identically for both. Arrays are (3, T): edge k runs
    from corner k to corner k + 1 and faces corner k + 2.
    """

    def __init__(self, local: np.ndarray, faces: np.ndarray) -> None:
        start, end = faces.T, np.roll(faces, -1, axis=1).T
        lo, hi = np.minimum(start, end), np.maximum(start, end)
        self.ay, self.ax = local[lo, 1], local[lo, 2]
        self.dy, self.dx = local[hi, 1] - self.ay, local[hi, 2] - self.ax
        self.z = local[np.roll(faces, -2, axis=1).T, 0]  # height of the corner facing each edge
        flip = np.where(start < end, 1.0, -1.0)
        # Twice the signed projected area: edge 0's function at corner 2.
        c = local[faces[:, 2]]
        area = flip[0] * (self.dy[0] * (c[:, 2] - self.ax[0]) - self.dx[0] * (c[:, 1] - self.ay[0]))
        self.orient = np.sign(area).astype(np.int16)
        self.flip = flip * self.orient  # makes every edge function positive inside
        # A column exactly on an edge belongs to the side that one fixed
        # infinitesimal shift of the column, (-eta, 1) in (y, x), falls on.
        fy, fx = self.flip * self.dy, self.flip * self.dx
        self.owns_edge = (fy > 0) | ((fy == 0) & (fx > 0))

    def subset(self, keep: np.ndarray) -> _Edges:
        out = object.__new__(_Edges)
        for name, value in vars(self).items():
            setattr(out, name, value[..., keep])
        return out

    def row_span(self, tri: np.ndarray, iy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """x extent of triangles ``tri`` on rows ``iy``, widened a little for rounding."""
        y = iy - self.ay[:, tri]
        dy, dx, ax = self.dy[:, tri], self.dx[:, tri], self.ax[:, tri]
        flat = dy == 0
        with np.errstate(divide="ignore", invalid="ignore"):
            t = y / dy
        crosses = np.where(flat, y == 0, (t >= 0) & (t <= 1))  # edges that meet the row
        x = ax + np.where(flat, 0.0, t) * dx
        lo = np.where(crosses, np.where(flat, ax + np.minimum(dx, 0), x), np.inf)
        hi = np.where(crosses, np.where(flat, ax + np.maximum(dx, 0), x), -np.inf)
        return lo.min(axis=0) - 1e-6, hi.max(axis=0) + 1e-6

    def crossings(
        self, tri: np.ndarray, iy: np.ndarray, ix: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Which columns (iy, ix) triangles ``tri`` cover, and the crossing heights."""
        hit = np.arange(len(tri))
        values = []
        for k in range(3):
            t = tri[hit]
            e = self.dy[k, t] * (ix[hit] - self.ax[k, t]) - self.dx[k, t] * (
                iy[hit] - self.ay[k, t]
            )
            e *= self.flip[k, t]
            inside = (e > 0) | ((e == 0) & self.owns_edge[k, t])
            hit = hit[inside]
            values = [v[inside] for v in values] + [e[inside]]
        t = tri[hit]
        weighted = sum(v * self.z[k, t] for k, v in enumerate(values))
        return hit, weighted / sum(values)

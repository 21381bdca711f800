"""Procedural cells, grown tile by tile.

Space is cut into cubes of ``TILE_NM``; the cells rooted in a tile (somata
placed in it and fragments whose root lies in it) are a pure function of the
seed and the tile index, and their walks never leave the tile grown by
``REACH_NM``. So the cells near any crop come from the few tiles around it, and
a crop at the far corner of a huge virtual volume costs what a crop of a small
one does.

A cell grows as branching random walks with persistence (tortuosity), 1 µm
steps smoothed by Catmull–Rom splines into nodes every 500 nm (every 1 µm on
neurites thicker than ``THICK_NM``, whose capsules are long anyway), with
tapering radii. Walks steer around the somata of nearby tiles. Spines
(neck + head), boutons (varicosities with vesicle clouds), myelin,
mitochondria, nuclei and lysosomes are added along the way.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .cell import Compartment
from .cell_types import CELL_TYPES, TYPE_NAMES, BranchSpec, CellTypeSpec, expected_cable
from .config import NeuropilConfig
from .errors import inject_errors
from .noise import make_ids, rng_for
from .skeletons import (
    FILL_REACH_NM,
    LYSOSOME,
    MITO,
    NUCLEUS,
    VESICLES,
    Skeletons,
    empty_organelles,
    empty_skeletons,
)

TILE_NM = 12_000.0
REACH_NM = 8_000.0
STEP_NM = 1_000.0
THICK_NM = 400.0
#: Largest radius of a neurite (soma excepted); nothing sticks out of a cell's
#: reach box by more (spines that would are not grown).
OVERHANG_NM = 1_500.0
#: Astrocyte processes stay this much further inside the reach box, so that the
#: glial sheets around them (up to ``FILL_REACH_NM`` away) stay within reach too.
_FILL_SHRINK = FILL_REACH_NM + 1_000.0 - OVERHANG_NM
_SOFT = 1_500.0  # walks turn away from the reach box within this distance
_SOMA_GAP = 300.0  # walks stay this far outside other somata
_TILE_VOLUME = (TILE_NM / 10_000.0) ** 3  # in units of 1000 µm³
_SALT_SOMA, _SALT_GROW, _SALT_FRAG = 101, 102, 103

Tile = tuple[int, int, int]


@dataclass(frozen=True)
class Somata:
    """Somata of one tile: centre (nm), radius, type index, priority, cell id."""

    pos: np.ndarray
    radius: np.ndarray
    type_code: np.ndarray
    priority: np.ndarray
    cell_id: np.ndarray
    extent: np.ndarray  # radius of a sphere holding the soma with its apex or poles

    def take(self, keep: np.ndarray) -> Somata:
        return Somata(*(getattr(self, f.name)[keep] for f in dataclasses.fields(self)))


_NO_SOMATA = Somata(
    np.zeros((0, 3)),
    np.zeros(0),
    np.zeros(0, np.int64),
    np.zeros(0),
    np.zeros(0, np.uint64),
    np.zeros(0),
)


def tiles_around(lo_nm: np.ndarray, hi_nm: np.ndarray, margin: float) -> list[Tile]:
    """Tiles whose cells' geometry can reach the box [lo, hi] (nm) grown by ``margin``."""
    reach = REACH_NM + OVERHANG_NM + margin
    first = np.floor((np.asarray(lo_nm) - reach) / TILE_NM).astype(int)
    last = np.floor((np.asarray(hi_nm) + reach) / TILE_NM).astype(int)
    return [
        (int(z), int(y), int(x))
        for z in range(first[0], last[0] + 1)
        for y in range(first[1], last[1] + 1)
        for x in range(first[2], last[2] + 1)
    ]


class _Lru(OrderedDict):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def get_or(self, key: object, make: Callable[[], object]) -> object:
        if key in self:
            self.move_to_end(key)
            return self[key]
        value = make()
        self[key] = value
        if len(self) > self.size:
            self.popitem(last=False)
        return value


class TileGrower:
    """Grows (and caches) the cells of tiles for one configuration."""

    def __init__(self, config: NeuropilConfig, *, cache_tiles: int = 192) -> None:
        self.config = config
        specs = [CELL_TYPES[name] for name in TYPE_NAMES]
        self._soma_rates = np.array(
            [
                s.soma_density * config.soma_density * config.type_weight(s.name) * _TILE_VOLUME
                for s in specs
            ]
        )
        self._soma_radii = np.array([s.soma_radius for s in specs], dtype=float)
        self._soma_shaped = np.array([1.0 if s.soma_shape == "round" else 1.4 for s in specs])
        self._candidates = _Lru(4096)
        self._somata = _Lru(4096)
        self._tiles = _Lru(cache_tiles)

    def candidates(self, tile: Tile) -> Somata:
        """Somata drawn for a tile before overlapping ones are dropped."""
        return self._candidates.get_or(tile, lambda: self._draw_somata(tile))

    def somata(self, tile: Tile) -> Somata:
        """Somata of a tile that do not overlap a higher-priority one nearby."""
        return self._somata.get_or(tile, lambda: self._keep_somata(tile))

    def tile(self, tile: Tile) -> tuple[Skeletons, list[dict]]:
        """Cells rooted in a tile with segment ids, and the errors injected there."""
        return self._tiles.get_or(tile, lambda: self._grow(tile))

    def _draw_somata(self, tile: Tile) -> Somata:
        rng = rng_for(self.config.seed, *tile, _SALT_SOMA)
        n = rng.poisson(self._soma_rates.sum())
        if n == 0:
            return _NO_SOMATA
        code = rng.choice(len(TYPE_NAMES), n, p=self._soma_rates / self._soma_rates.sum())
        lo_r, hi_r = self._soma_radii[code].T
        radius = rng.uniform(lo_r, hi_r)
        return Somata(
            pos=np.asarray(tile) * TILE_NM + rng.random((n, 3)) * TILE_NM,
            radius=radius,
            type_code=code,
            priority=rng.random(n),
            cell_id=make_ids(self.config.seed, *tile, _SALT_SOMA, np.arange(n)),
            extent=radius * self._soma_shaped[code],
        )

    def _keep_somata(self, tile: Tile) -> Somata:
        own = self.candidates(tile)
        if not len(own.radius):
            return own
        others = [self.candidates(t) for t in _neighbours(tile, 2)]
        o_pos = np.concatenate([o.pos for o in others])
        o_ext = np.concatenate([o.extent for o in others])
        o_pri = np.concatenate([o.priority for o in others])
        dist = norm3(own.pos[:, None] - o_pos[None])
        clash = (dist < own.extent[:, None] + o_ext[None] + 1000.0) & (
            o_pri[None] > own.priority[:, None]
        )
        return own.take(~clash.any(axis=1))

    def _grow(self, tile: Tile) -> tuple[Skeletons, list[dict]]:
        cfg = self.config
        rng = rng_for(cfg.seed, *tile, _SALT_GROW)
        lo = np.asarray(tile, dtype=float) * TILE_NM
        box = (lo - REACH_NM, lo + TILE_NM + REACH_NM)
        near = [self.somata(t) for t in _neighbours(tile, 2)]
        obstacles = _soma_spheres(near, box)
        builder = _Builder(rng, box, obstacles)
        own = self.somata(tile)
        for i in range(len(own.radius)):
            builder.add_soma_cell(
                CELL_TYPES[TYPE_NAMES[own.type_code[i]]], own.pos[i], own.radius[i], own.cell_id[i]
            )
        n_frag = 0
        for name in TYPE_NAMES:
            spec = CELL_TYPES[name]
            for frag in spec.fragments:
                cable = frag.density * cfg.density * cfg.type_weight(name) * TILE_NM**3 / 1e9  # µm
                n = rng.poisson(cable / (2 * expected_cable(frag.branch)))
                ids = make_ids(cfg.seed, *tile, _SALT_FRAG, n_frag + np.arange(n))
                n_frag += n
                builder.add_fragments(spec, frag.branch, frag.direction, lo, ids)
        sk = builder.finish()
        errors = inject_errors(
            sk, seed=cfg.seed, merge_rate=cfg.merge_rate, split_rate=cfg.split_rate
        )
        return sk, errors


def _neighbours(tile: Tile, r: int) -> list[Tile]:
    z, y, x = tile
    rng_ = range(-r, r + 1)
    return [(z + a, y + b, x + c) for a in rng_ for b in rng_ for c in rng_]


def _soma_spheres(
    somata: list[Somata], box: tuple[np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Soma spheres (centre, radius) near a reach box, apex spheres included."""
    centres, radii = [], []
    for s in somata:
        for i in range(len(s.radius)):
            spec = CELL_TYPES[TYPE_NAMES[s.type_code[i]]]
            for offset, ratio in _soma_nodes(spec, s.radius[i], None):
                centres.append(s.pos[i] + offset)
                radii.append(s.radius[i] * ratio)
    if not centres:
        return np.zeros((0, 3)), np.zeros(0)
    c, r = np.asarray(centres), np.asarray(radii)
    lo, hi = box
    inside = np.all((c + r[:, None] + 3000 > lo) & (c - r[:, None] - 3000 < hi), axis=1)
    return c[inside], r[inside]


def _soma_nodes(
    spec: CellTypeSpec, radius: float, axis: np.ndarray | None
) -> list[tuple[np.ndarray, float]]:
    """(offset from centre, radius ratio) of a soma's nodes; the centre first."""
    up = np.array([0.0, 1.0, 0.0])
    nodes = [(np.zeros(3), 1.0)]
    if spec.soma_shape == "teardrop":
        nodes.append((up * 0.9 * radius, 0.45))
    elif spec.soma_shape == "spindle":
        nodes += [(up * 0.8 * radius, 0.45), (-up * 0.8 * radius, 0.45)]
    elif spec.soma_shape == "elongated" and axis is not None:
        nodes.append((axis * 0.7 * radius, 0.6))
    return nodes


def norm3(v: np.ndarray) -> np.ndarray:
    """Length of 3-vectors along the last axis.

    The same sum, in the same order, as ``np.linalg.norm(v, axis=-1)``, but
    several times faster: numpy reduces a length-3 axis element by element.
    """
    return np.sqrt((v[..., 0] * v[..., 0] + v[..., 1] * v[..., 1]) + v[..., 2] * v[..., 2])


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(norm3(v)[..., None], 1e-12)


def _rows(value: object, n: int, dtype: type | None = None) -> np.ndarray:
    """A new array of ``n`` rows from ``value``: a scalar, or already ``n`` rows.

    (Not ``np.broadcast_to(...).copy()``: its overhead dominates for the small
    arrays of a growth step.)
    """
    a = np.asarray(value, dtype)
    return np.full(n, a) if a.ndim == 0 else a.copy()


def _random_dirs(rng: np.random.Generator, n: int) -> np.ndarray:
    return _unit(rng.standard_normal((n, 3)))


def _perpendicular(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    """Random unit vectors perpendicular to unit vectors ``t``."""
    v = rng.standard_normal(t.shape)
    v -= np.einsum("ij,ij->i", v, t)[:, None] * t
    return _unit(v)


_WALKER_FIELDS = ("cell", "start", "pos", "dir", "spec", "order", "r0", "length", "initial")


class _Builder:
    """Accumulates the nodes, cells and organelles of one tile."""

    def __init__(
        self,
        rng: np.random.Generator,
        box: tuple[np.ndarray, np.ndarray],
        obstacles: tuple[np.ndarray, np.ndarray],
    ) -> None:
        self.rng = rng
        self.box = box
        self.obstacles = obstacles
        self.nodes: dict[str, list[np.ndarray]] = {
            k: []
            for k in (
                "pos",
                "parent",
                "radius",
                "sheath",
                "comp",
                "cell",
                "bouton",
                "spine",
                "fill",
            )
        }
        self.n_nodes = 0
        self.cells: dict[str, list] = {
            k: [] for k in ("cell_id", "cell_type", "cell_class", "has_soma", "shade")
        }
        self.orgs: dict[str, list[np.ndarray]] = {
            k: [] for k in ("kind", "a", "b", "off_a", "off_b", "radius")
        }
        self.specs: list[BranchSpec] = []
        self.walkers: dict[str, list[np.ndarray]] = {k: [] for k in _WALKER_FIELDS}

    # -- bookkeeping -------------------------------------------------------------
    def _spec_index(self, spec: BranchSpec) -> int:
        for i, s in enumerate(self.specs):
            if s is spec:
                return i
        self.specs.append(spec)
        return len(self.specs) - 1

    def _add_cells(self, cell_ids: np.ndarray, spec: CellTypeSpec, has_soma: bool) -> np.ndarray:
        c = self.cells
        first = len(c["cell_id"])
        n = len(cell_ids)
        c["cell_id"].extend(int(i) for i in cell_ids)
        c["cell_type"].extend([spec.name] * n)
        c["cell_class"].extend([spec.cell_class] * n)
        c["has_soma"].extend([has_soma] * n)
        c["shade"].extend(spec.shade + self.rng.uniform(-10, 10, n))
        return first + np.arange(n)

    def _add_nodes(
        self, pos: np.ndarray, parent: np.ndarray, radius: np.ndarray, **flags
    ) -> np.ndarray:
        n = len(pos)
        idx = self.n_nodes + np.arange(n)
        d = self.nodes
        d["pos"].append(np.asarray(pos, float).reshape(n, 3))
        d["parent"].append(np.asarray(parent, np.int64))
        d["radius"].append(np.asarray(radius, np.float32))
        defaults = {
            "sheath": 0.0,
            "comp": 0,
            "cell": 0,
            "bouton": False,
            "spine": False,
            "fill": False,
        }
        dtypes = {
            "sheath": np.float32,
            "comp": np.uint8,
            "cell": np.int64,
            "bouton": bool,
            "spine": bool,
            "fill": bool,
        }
        for k, default in defaults.items():
            d[k].append(_rows(flags.get(k, default), n, dtypes[k]))
        self.n_nodes += n
        return idx

    def _add_orgs(self, kind: int, a, b, off_a, off_b, radius) -> None:
        n = len(np.atleast_1d(a))
        o = self.orgs
        o["kind"].append(np.full(n, kind, np.uint8))
        o["a"].append(np.asarray(a, np.int64).reshape(n))
        o["b"].append(np.asarray(b, np.int64).reshape(n))
        o["off_a"].append(np.asarray(off_a, np.float32).reshape(n, 3))
        o["off_b"].append(np.asarray(off_b, np.float32).reshape(n, 3))
        o["radius"].append(np.asarray(radius, np.float32).reshape(n))

    def _add_walkers(self, **arrays) -> None:
        n = len(arrays["pos"])
        for k in _WALKER_FIELDS:
            self.walkers[k].append(_rows(arrays[k], n))

    # -- cells ---------------------------------------------------------------------
    def add_soma_cell(
        self, spec: CellTypeSpec, centre: np.ndarray, radius: float, cell_id: int
    ) -> None:
        rng = self.rng
        c = int(self._add_cells(np.array([cell_id]), spec, True)[0])
        axis = _random_dirs(rng, 1)[0]
        shape = _soma_nodes(spec, radius, axis)
        offsets = np.array([o for o, _ in shape])
        radii = np.array([radius * r for _, r in shape])
        parents = np.where(np.arange(len(shape)) == 0, -1, self.n_nodes)
        idx = self._add_nodes(centre + offsets, parents, radii, comp=Compartment.SOMA, cell=c)
        nuc_r = spec.nucleus * radius
        nuc_off = _random_dirs(rng, 1) * rng.uniform(0, 0.1 * radius)
        self._add_orgs(NUCLEUS, idx[0], idx[0], nuc_off, nuc_off, nuc_r)
        volume_um3 = 4 / 3 * np.pi * (radius / 1000) ** 3
        self._soma_bodies(
            MITO,
            rng.poisson(spec.soma_mitos * volume_um3),
            idx[0],
            nuc_r,
            radius,
            (90, 150),
            (250, 700),
        )
        if any(p.branch.lysosome_rate for p in spec.primaries):
            self._soma_bodies(
                LYSOSOME, rng.integers(3, 7), idx[0], nuc_r, radius, (150, 300), (0, 100)
            )
        for prim in spec.primaries:
            n = int(rng.integers(prim.count[0], prim.count[1] + 1))
            dirs, starts = self._primary_dirs(prim.direction, n, spec, idx)
            node_pos = centre + offsets[starts]
            pos = node_pos + dirs * (radii[starts] * 0.9)[:, None]
            self._add_walkers(
                cell=c,
                start=idx[starts],
                pos=pos,
                dir=dirs,
                spec=self._spec_index(prim.branch),
                order=0,
                r0=rng.uniform(*prim.branch.radius, n),
                length=rng.uniform(*prim.branch.length, n),
                initial=2500.0,
            )

    def _soma_bodies(self, kind, n, node, inner, radius, r_range, half_range) -> None:
        """Organelles scattered in the cytoplasm between nucleus and membrane."""
        rng = self.rng
        if n == 0 or radius - 400 <= inner + 300:
            return
        u = _random_dirs(rng, n)
        rho = rng.uniform(inner + 300, radius - 400, n)
        o = _random_dirs(rng, n) * rng.uniform(*half_range, n)[:, None]
        centre = u * rho[:, None]
        self._add_orgs(
            kind,
            np.full(n, node),
            np.full(n, node),
            centre - o,
            centre + o,
            rng.uniform(*r_range, n),
        )

    def _primary_dirs(
        self, how: str, n: int, spec: CellTypeSpec, idx: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        rng = self.rng
        up = np.array([0.0, 1.0, 0.0])
        jitter = rng.standard_normal((n, 3))
        start = np.zeros(n, np.int64)
        if how == "up":
            dirs = _unit(up + 0.15 * jitter)
            start[:] = 1 if spec.soma_shape in ("teardrop", "spindle") else 0
        elif how == "down":
            dirs = _unit(-up + 0.35 * jitter)
            start[:] = 2 if spec.soma_shape == "spindle" else 0
        elif how == "vertical":
            sign = np.where(np.arange(n) % 2 == 0, 1.0, -1.0)
            dirs = _unit(sign[:, None] * up + 0.15 * jitter)
            if spec.soma_shape == "spindle":
                start[:] = np.where(sign > 0, 1, 2)
        else:
            dirs = _unit(jitter)
            if spec.soma_shape == "teardrop":  # basal dendrites leave the lower half
                dirs[:, 1] = -np.abs(dirs[:, 1]) * 0.7
                dirs = _unit(dirs)
        return dirs, start

    def add_fragments(
        self,
        spec: CellTypeSpec,
        branch: BranchSpec,
        direction: str,
        lo: np.ndarray,
        ids: np.ndarray,
    ) -> None:
        rng = self.rng
        n = len(ids)
        if n == 0:
            return
        roots = lo + rng.random((n, 3)) * TILE_NM
        centres, radii = self.obstacles
        if len(radii):
            v = roots[:, None] - centres[None]
            dist = norm3(v)
            inside = dist < radii[None] + 500
            if inside.any():
                worst = np.argmax(np.where(inside, radii[None] + 500 - dist, -np.inf), axis=1)
                hit = inside.any(axis=1)
                k = worst[hit]
                u = _unit(v[hit, k])
                roots[hit] = centres[k] + u * (radii[k] + 600)[:, None]
        dirs = _random_dirs(rng, n)
        if direction == "vertical":
            dirs = _unit(dirs * np.array([0.3, 1.0, 0.3]))
        elif direction == "planar":
            dirs = _unit(dirs * np.array([1.0, 0.2, 1.0]))
        r0 = rng.uniform(*branch.radius, n)
        cells = self._add_cells(ids, spec, False)
        root = self._add_nodes(
            roots, np.full(n, -1), r0, comp=branch.compartment, cell=cells, fill=branch.fill
        )
        s = self._spec_index(branch)
        for sign in (1.0, -1.0):
            self._add_walkers(
                cell=cells,
                start=root,
                pos=roots,
                dir=sign * dirs,
                spec=s,
                order=0,
                r0=r0,
                length=rng.uniform(*branch.length, n),
                initial=0.0,
            )

    # -- growth ----------------------------------------------------------------------
    def _grow_all(self) -> list[tuple]:
        names = [f.name for f in dataclasses.fields(BranchSpec)]
        self.table = {a: np.array([getattr(s, a) for s in self.specs]) for a in names}
        paths = []
        while self.walkers["pos"]:
            w = {k: np.concatenate(v) for k, v in self.walkers.items()}
            self.walkers = {k: [] for k in _WALKER_FIELDS}
            thick = w["r0"] >= THICK_NM
            for subdiv, sel in ((1, thick), (2, ~thick)):
                if sel.any():
                    paths.append(self._wave({k: v[sel] for k, v in w.items()}, subdiv))
        return paths

    def _walk(self, start, d0, n_steps, tort, bias, planar, fill) -> tuple[np.ndarray, np.ndarray]:
        rng = self.rng
        shrink = np.where(fill, _FILL_SHRINK, 0.0)[:, None]
        lo, hi = self.box[0] + shrink, self.box[1] - shrink
        centres, radii = self.obstacles
        b, k_max = len(start), int(n_steps.max())
        path = np.empty((b, k_max, 3))
        valid = np.zeros((b, k_max), bool)
        p, d = start.copy(), d0.copy()
        alive = np.ones(b, bool)

        def to_somata(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            v = p[:, None] - centres[None]
            return v, norm3(v) + 1e-6

        # Offsets to the somata where the walkers stand (kept from the end of
        # the previous step, where they were needed too).
        v, dist = to_somata(p)
        for k in range(k_max):
            d = d + tort[:, None] * rng.standard_normal((b, 3)) + bias
            d[:, 1] *= 1.0 - planar
            d += 0.6 * (
                np.clip((lo + _SOFT - p) / _SOFT, 0, None)
                - np.clip((p - hi + _SOFT) / _SOFT, 0, None)
            )
            if len(radii):
                w = np.clip(1.0 - (dist - radii[None]) / 600.0, 0.0, 3.0)
                d += np.einsum("bs,bsk->bk", w / dist, v)
            d = _unit(d)
            p = p + STEP_NM * d
            if len(radii):
                # A step that ends inside a soma slides out onto its surface.
                v, dist = to_somata(p)
                depth = radii[None] + _SOMA_GAP - dist
                worst = np.argmax(depth, axis=1)
                hit = depth[np.arange(b), worst] > 0
                if hit.any():
                    k_hit = worst[hit]
                    u = v[hit, k_hit] / dist[hit, k_hit][:, None]
                    p[hit] = centres[k_hit] + u * (radii[k_hit] + _SOMA_GAP)[:, None]
                    d[hit] = _unit(
                        d[hit] - np.minimum(np.einsum("ij,ij->i", d[hit], u), 0)[:, None] * u
                    )
                    v[hit], dist[hit] = to_somata(p[hit])
            alive &= (k < n_steps) & np.all((p > lo) & (p < hi), axis=1)
            path[:, k] = p
            valid[:, k] = alive
        return path, valid

    def _wave(self, w: dict[str, np.ndarray], subdiv: int) -> tuple:
        rng = self.rng
        sp = w["spec"]

        def per(attr: str) -> np.ndarray:
            return self.table[attr][sp]

        b = len(sp)
        n_steps = np.maximum(1, np.round(w["length"] / STEP_NM)).astype(int)
        path, valid = self._walk(
            w["pos"],
            _unit(w["dir"]),
            n_steps,
            per("tortuosity"),
            per("bias"),
            per("planar"),
            per("fill"),
        )
        spacing = STEP_NM / subdiv
        fine, tang = _catmull_rom(w["pos"], path, subdiv)
        lo, hi = self.box
        inside = np.all((fine > lo) & (fine < hi), axis=2)
        fvalid = np.cumprod(np.repeat(valid, subdiv, axis=1) & inside, axis=1).astype(bool)
        n_f = fvalid.sum(axis=1)
        nf_max = fine.shape[1]
        arc = (np.arange(nf_max) + 1) * spacing
        length = n_f * spacing
        # Radii: taper along the branch, small irregularities, a fine tip.
        frac = np.clip(arc[None] / np.maximum(length[:, None], 1.0), 0, 1)
        r = w["r0"][:, None] * (1 + (per("taper")[:, None] - 1) * frac)
        r *= 1 + np.clip(0.05 * rng.standard_normal(r.shape), -0.1, 0.1)
        r *= 0.55 + 0.45 * np.clip((length[:, None] - arc[None] + spacing) / 700.0, 0, 1)
        r = np.clip(r, 30.0, OVERHANG_NM)
        # Myelin on main axons (order 0), with nodes of Ranvier and an initial segment.
        myelin = per("myelin")[:, None] * (w["order"] == 0)[:, None]
        internode = rng.uniform(12000, 18000, b)[:, None]
        phase = (arc[None] + rng.uniform(0, 1, b)[:, None] * internode) % internode
        sheath = np.where((phase > 1000) & (arc[None] > w["initial"][:, None]), myelin, 0.0)
        # Boutons: varicosities every ~bouton_spacing µm, a terminal one at most ends.
        b_sp = per("bouton_spacing")
        has_b = (b_sp > 0)[:, None] & fvalid & (sheath == 0)
        p_b = np.where(b_sp > 0, spacing / 1000.0 / np.maximum(b_sp, 1e-6), 0.0)
        bout = has_b & (rng.random(r.shape) < p_b[:, None])
        bout[:, :3] = False
        last = np.maximum(n_f - 1, 0)
        bout[np.arange(b), last] |= has_b[np.arange(b), last] & (rng.random(b) < 0.7)
        bout[:, 1:] &= ~bout[:, :-1]
        lo_b, hi_b = per("bouton_radius").T
        rb = rng.uniform(lo_b[:, None], np.maximum(hi_b, lo_b)[:, None], r.shape)
        near_b = np.zeros_like(bout)
        near_b[:, 1:] |= bout[:, :-1]
        near_b[:, :-1] |= bout[:, 1:]
        rb_near = np.zeros_like(r)
        rb_near[:, 1:] = np.maximum(rb_near[:, 1:], np.where(bout[:, :-1], rb[:, :-1], 0))
        rb_near[:, :-1] = np.maximum(rb_near[:, :-1], np.where(bout[:, 1:], rb[:, 1:], 0))
        r = np.where(near_b & ~bout, np.maximum(r, 0.5 * (r + rb_near)), r)
        r = np.where(bout, np.maximum(r, rb), r)
        # Global node indices; a walker's nodes are consecutive.
        gidx = np.full(fvalid.shape, -1, np.int64)
        count = int(fvalid.sum())
        gidx[fvalid] = self.n_nodes + np.arange(count)
        parent = np.empty_like(gidx)
        parent[:, 0] = w["start"]
        parent[:, 1:] = gidx[:, :-1]
        rows = np.nonzero(fvalid)[0]
        self._add_nodes(
            fine[fvalid],
            parent[fvalid],
            r[fvalid],
            sheath=sheath[fvalid],
            comp=per("compartment")[rows],
            cell=w["cell"][rows],
            bouton=bout[fvalid],
            fill=per("fill")[rows],
        )
        self._children(w, fine, tang, r, gidx, n_f, spacing)
        return sp, w["cell"], gidx, fvalid, fine, tang, r, bout, rb, spacing

    def _children(self, w, fine, tang, r, gidx, n_f, spacing) -> None:
        rng = self.rng
        tab = {a: v[w["spec"]] for a, v in self.table.items()}
        can = (w["order"] < tab["max_order"]) & (n_f >= 4)
        n_child = np.where(can, rng.poisson(tab["branch_rate"] * n_f * spacing / 1000.0), 0)
        src = np.repeat(np.arange(len(n_f)), n_child)
        if not len(src):
            return
        f = 1 + (rng.random(len(src)) * (n_f[src] - 3)).astype(int)
        t = tang[src, f]
        angle = np.radians(tab["branch_angle"][src] + rng.normal(0, 10, len(src)))
        dirs = np.cos(angle)[:, None] * t + np.sin(angle)[:, None] * _perpendicular(rng, t)
        cr = tab["child_radius"][src]
        cl = tab["child_length"][src]
        order = w["order"][src] + 1
        lo_len, hi_len = tab["length"][src].T
        length = rng.uniform(lo_len, hi_len) * cl**order
        self._add_walkers(
            cell=w["cell"][src],
            start=gidx[src, f],
            pos=fine[src, f],
            dir=dirs,
            spec=w["spec"][src],
            order=order,
            r0=np.maximum(r[src, f] * cr * rng.uniform(0.9, 1.1, len(src)), 35.0),
            length=length,
            initial=0.0,
        )

    # -- details -----------------------------------------------------------------
    def _spines_and_organelles(self, paths: list[tuple]) -> None:
        rng = self.rng
        for sp, cell, gidx, fvalid, fine, tang, r, bout, rb, spacing in paths:
            per = {a: v[sp] for a, v in self.table.items()}
            interior = fvalid.copy()
            interior[:, :2] = False
            # Spines: neck then head, sticking out sideways.
            pick = interior & (rng.random(fvalid.shape) < per["spines"][:, None] * spacing / 1000)
            if pick.any():
                shaft = gidx[pick]
                t = tang[pick]
                u = _perpendicular(rng, t)
                n = len(shaft)
                neck_r = rng.uniform(35, 65, n)
                head_r = rng.uniform(150, 340, n)
                neck_len = rng.uniform(400, 1000, n)
                base = fine[pick] + u * (r[pick] * 0.8)[:, None]
                neck = base + u * neck_len[:, None]
                head = neck + u * (head_r * 0.8)[:, None]
                lo, hi = self.box
                ok = np.all(
                    (head - head_r[:, None] > lo - OVERHANG_NM)
                    & (head + head_r[:, None] < hi + OVERHANG_NM),
                    axis=1,
                )
                shaft, base, neck, head, neck_r, head_r = (
                    shaft[ok],
                    base[ok],
                    neck[ok],
                    head[ok],
                    neck_r[ok],
                    head_r[ok],
                )
                rows = np.nonzero(pick)[0][ok]
                comp = per["compartment"][rows]
                c = cell[rows]
                i_base = self._add_nodes(base, shaft, neck_r, comp=comp, cell=c, spine=True)
                i_neck = self._add_nodes(neck, i_base, neck_r, comp=comp, cell=c, spine=True)
                self._add_nodes(head, i_neck, head_r, comp=comp, cell=c, spine=True)
            # Mitochondria: chains of capsules along the path.
            start = interior & (
                rng.random(fvalid.shape) < per["mito_rate"][:, None] * spacing / 1000
            )
            rows, cols = np.nonzero(start)
            if len(rows):
                lo_len, hi_len = per["mito_length"][rows].T
                k = np.maximum(1, np.round(rng.uniform(lo_len, hi_len) / spacing)).astype(int)
                mr = np.clip(0.45 * r[rows, cols], 35.0, 160.0)
                side = (
                    _perpendicular(rng, tang[rows, cols])
                    * (rng.uniform(0, 1, len(rows)) * np.maximum(0.75 * r[rows, cols] - mr, 0))[
                        :, None
                    ]
                )
                chain = np.repeat(np.arange(len(rows)), k)
                step = np.arange(len(chain)) - np.repeat(np.cumsum(k) - k, k)
                ca, cb = cols[chain] + step, cols[chain] + step + 1
                ok = cb < fvalid.shape[1]
                ok[ok] &= fvalid[rows[chain][ok], cb[ok]]
                chain, ca, cb = chain[ok], ca[ok], cb[ok]
                rr = rows[chain]
                self._add_orgs(
                    MITO, gidx[rr, ca], gidx[rr, cb], side[chain], side[chain], mr[chain]
                )
            # Boutons: a vesicle cloud, often a mitochondrion.
            rows, cols = np.nonzero(bout)
            if len(rows):
                node = gidx[rows, cols]
                radius = rb[rows, cols]
                zero = np.zeros((len(rows), 3))
                self._add_orgs(VESICLES, node, node, zero, zero, 0.8 * radius)
                has = rng.random(len(rows)) < per["bouton_mito"][rows]
                t = tang[rows, cols][has]
                side = _perpendicular(rng, t) * (0.35 * radius[has])[:, None]
                along = t * (0.3 * radius[has])[:, None]
                self._add_orgs(
                    MITO, node[has], node[has], side - along, side + along, 0.28 * radius[has]
                )
            # Lysosomes (microglia): dark round bodies.
            lyso = interior & (
                rng.random(fvalid.shape) < per["lysosome_rate"][:, None] * spacing / 1000
            )
            if lyso.any():
                node = gidx[lyso]
                zero = np.zeros((len(node), 3))
                self._add_orgs(LYSOSOME, node, node, zero, zero, np.minimum(0.6 * r[lyso], 220.0))

    def finish(self) -> Skeletons:
        paths = self._grow_all()
        self._spines_and_organelles(paths)
        if not self.cells["cell_id"]:
            return empty_skeletons()
        nd = {k: np.concatenate(v) for k, v in self.nodes.items()}
        org = {k: np.concatenate(v) if v else None for k, v in self.orgs.items()}
        # Group nodes by cell (stable), then renumber.
        order = np.argsort(nd["cell"], kind="stable")
        new = np.empty_like(order)
        new[order] = np.arange(len(order))
        nd = {k: v[order] for k, v in nd.items()}
        nd["parent"] = np.where(nd["parent"] >= 0, new[np.maximum(nd["parent"], 0)], -1)
        first = np.searchsorted(nd["cell"], np.arange(len(self.cells["cell_id"])))
        node = np.arange(len(order)) - first[nd["cell"]]
        if org["kind"] is None:
            orgs = empty_organelles()
        else:
            orgs = {
                "org_kind": org["kind"],
                "org_a": new[org["a"]],
                "org_b": new[org["b"]],
                "org_off_a": org["off_a"],
                "org_off_b": org["off_b"],
                "org_radius": org["radius"],
            }
        cells = self.cells
        return Skeletons(
            pos=nd["pos"],
            parent=nd["parent"],
            radius=nd["radius"],
            sheath=nd["sheath"],
            comp=nd["comp"],
            cell=nd["cell"],
            node=node,
            bouton=nd["bouton"],
            spine=nd["spine"],
            fill=nd["fill"],
            segment=np.zeros(len(order), np.uint64),
            cell_id=np.array(cells["cell_id"], np.uint64),
            cell_type=np.array(cells["cell_type"], object),
            cell_class=np.array(cells["cell_class"], object),
            has_soma=np.array(cells["has_soma"], bool),
            shade=np.array(cells["shade"], np.float32),
            mesh=np.full(len(cells["cell_id"]), None, object),
            **orgs,
        )


def _catmull_rom(start: np.ndarray, path: np.ndarray, subdiv: int) -> tuple[np.ndarray, np.ndarray]:
    """Points and unit tangents, ``subdiv`` per step, along a Catmull–Rom spline."""
    b, k, _ = path.shape
    q = np.empty((3, k + 3, b))  # walkers last: long, contiguous inner loops
    q[:, 1] = start.T
    q[:, 2 : k + 2] = path.transpose(2, 1, 0)
    q[:, 0] = 2 * q[:, 1] - q[:, 2]
    q[:, k + 2] = 2 * q[:, k + 1] - q[:, k]
    ctrl = [q[:, i : i + k] for i in range(4)]
    pts = np.empty((3, k, subdiv, b))
    der = np.empty((3, k, subdiv, b))
    for i in range(subdiv):
        t = (i + 1) / subdiv
        w = (
            -0.5 * t**3 + t**2 - 0.5 * t,
            1.5 * t**3 - 2.5 * t**2 + 1,
            -1.5 * t**3 + 2 * t**2 + 0.5 * t,
            0.5 * t**3 - 0.5 * t**2,
        )
        dw = (
            -1.5 * t**2 + 2 * t - 0.5,
            4.5 * t**2 - 5 * t,
            -4.5 * t**2 + 4 * t + 0.5,
            1.5 * t**2 - t,
        )
        pts[:, :, i] = w[0] * ctrl[0] + w[1] * ctrl[1] + w[2] * ctrl[2] + w[3] * ctrl[3]
        der[:, :, i] = dw[0] * ctrl[0] + dw[1] * ctrl[1] + dw[2] * ctrl[2] + dw[3] * ctrl[3]
    pts = pts.reshape(3, k * subdiv, b).transpose(2, 1, 0)
    der = der.reshape(3, k * subdiv, b)
    der /= np.maximum(np.sqrt((der * der).sum(axis=0)), 1e-12)
    return np.ascontiguousarray(pts), np.ascontiguousarray(der.transpose(2, 1, 0))

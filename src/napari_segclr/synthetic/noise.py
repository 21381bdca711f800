"""Deterministic randomness keyed by global coordinates.

Everything random in a rendered crop comes from integer hashes of *global*
coordinates (voxel indices of the virtual volume, or lattice points in nm), never
from a random generator run over the crop, so a voxel gets the same value in
every crop that contains it.
"""

from __future__ import annotations

import functools

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)
#: Largest id handed out plus one: ids stay exact in float64.
ID_LIMIT = 2**53


def _mix(h: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser, in place on a uint64 array."""
    h ^= h >> _S30
    h *= _M1
    h ^= h >> _S27
    h *= _M2
    h ^= h >> _S31
    return h


def hash64(*parts: int | np.ndarray) -> np.ndarray:
    """Hash integers (broadcast together) to uint64; always returns an array."""
    # Leading scalars (seed, tile, salt, ...) are hashed in Python integers:
    # cheaper than a round of numpy calls per part.
    n = next((i for i, p in enumerate(parts) if np.ndim(p)), len(parts))
    return rehash(np.full((), _hash_ints(*parts[:n]), dtype=np.uint64), *parts[n:])


def rehash(h: np.ndarray, *parts: int | np.ndarray) -> np.ndarray:
    """Go on hashing from ``h``: ``rehash(hash64(a, b), c) == hash64(a, b, c)``.

    Lets hashes that share leading parts share their work.
    """
    for part in parts:
        p = np.atleast_1d(np.asarray(part, dtype=np.int64)).view(np.uint64)
        h = _mix(np.bitwise_xor(h, p) + _GOLDEN)
    return np.atleast_1d(h)


def uniform(*parts: int | np.ndarray) -> np.ndarray:
    """Uniform floats in [0, 1) from hashed integers."""
    return (hash64(*parts) >> np.uint64(11)).astype(np.float64) * 2.0**-53


def make_ids(*parts: int | np.ndarray) -> np.ndarray:
    """Large sparse uint64 ids in [1, 2**53) from hashed integers."""
    return hash64(*parts) % np.uint64(ID_LIMIT - 1) + np.uint64(1)


def rng_for(*parts: int) -> np.random.Generator:
    """A random generator seeded from hashed integers (e.g. seed, tile, salt)."""
    return np.random.default_rng(_hash_ints(*parts))


_MASK64 = 2**64 - 1


def _hash_ints(*parts: int) -> int:
    """``int(hash64(*parts)[0])`` of integers, in Python integers (ten times
    faster than numpy on one tuple, and every tile seeds several generators)."""
    h = 0x243F6A8885A308D3
    for part in parts:
        h = ((h ^ (int(part) & _MASK64)) + int(_GOLDEN)) & _MASK64
        h ^= h >> 30
        h = (h * int(_M1)) & _MASK64
        h ^= h >> 27
        h = (h * int(_M2)) & _MASK64
        h ^= h >> 31
    return h


def _bspline_taps(coords: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Cubic B-spline taps: first lattice index per coordinate and (n, 4) weights."""
    u = coords / scale
    i0 = np.floor(u)
    f = (u - i0).astype(np.float32)
    g = 1.0 - f
    w = np.stack(
        [g**3, 3 * f**3 - 6 * f**2 + 4, -3 * f**3 + 3 * f**2 + 3 * f + 1, f**3], axis=1
    ) / np.float32(6)
    return i0.astype(np.int64) - 1, w


def _spline_std() -> float:
    """Standard deviation of B-spline-interpolated uniform(-1, 1) lattice noise."""
    _, w = _bspline_taps(np.linspace(0, 1, 256, endpoint=False), 1.0)
    per_axis = float(np.mean(np.sum(w.astype(np.float64) ** 2, axis=1)))
    return float(np.sqrt(per_axis**3 / 3.0))


_SPLINE_STD = _spline_std()


def lattice_range(coords: np.ndarray, scale: float) -> tuple[int, int]:
    """First and one-past-last lattice index (spacing ``scale``) that
    :func:`interpolate_lattice` reads for these coordinates."""
    first, _ = _bspline_taps(np.asarray(coords, dtype=np.float64), scale)
    if not len(first):
        return 0, 0
    return int(first.min()), int(first.max()) + 4


def interpolate_lattice(
    values: np.ndarray,
    lattice_lo: tuple[int, int, int],
    axes: tuple[np.ndarray, np.ndarray, np.ndarray],
    scale: float,
) -> np.ndarray:
    """Smooth (cubic B-spline) field from values on a lattice of spacing ``scale`` nm.

    ``values[i, j, k]`` sits at ``(lattice_lo + (i, j, k)) * scale`` nm and must
    cover :func:`lattice_range` of each axis. Interpolates one axis at a time,
    each output voxel summing its four taps in a fixed order, so the result
    does not depend on the crop. Returns float32 of shape (len(z), len(y), len(x)).
    """
    out = np.asarray(values, dtype=np.float32)
    # x first (on the smallest array), then y, then z; each pass moves the
    # interpolated axis to the front and sums the taps k = 0..3 in order.
    for axis in (2, 1, 0):
        first, w = _bspline_taps(np.asarray(axes[axis], dtype=np.float64), scale)
        rel = first - lattice_lo[axis]
        src = np.moveaxis(out, axis, 0)
        if len(rel) * src[0].size < 2**20:
            # A small pass at once: Python overhead would dominate a loop.
            taps = w.reshape(len(rel), 4, *(1,) * (src.ndim - 1))
            res = np.take(src, rel, axis=0)
            res *= taps[:, 0]
            for k in (1, 2, 3):
                tap = np.take(src, rel + k, axis=0)
                tap *= taps[:, k]
                res += tap
        else:
            # A large one plane by plane, each tap reading a contiguous plane:
            # no crop-sized temporaries.
            src = np.ascontiguousarray(src)
            res = np.empty((len(rel), *src.shape[1:]), np.float32)
            tap = np.empty(src.shape[1:], np.float32)
            for i in range(len(rel)):
                j = rel[i]
                np.multiply(src[j], w[i, 0], out=res[i])
                for k in (1, 2, 3):
                    np.multiply(src[j + k], w[i, k], out=tap)
                    res[i] += tap
        out = np.moveaxis(res, 0, axis)
    return np.ascontiguousarray(out)


def value_noise(
    axes: tuple[np.ndarray, np.ndarray, np.ndarray], scale: float, key: int
) -> np.ndarray:
    """Smooth noise with unit standard deviation and feature size ``scale`` (nm).

    Hashed uniform values on a lattice of spacing ``scale``, anchored at 0 nm,
    smoothed by :func:`interpolate_lattice`; ``axes`` are the voxel centres (nm)
    along z, y and x. float32 of shape (len(z), len(y), len(x)).
    """
    ranges = [lattice_range(a, scale) for a in axes]
    lz, ly, lx = (np.arange(a, b) for a, b in ranges)
    lattice = hash64(key, lz[:, None, None], ly[None, :, None], lx[None, None, :])
    values = (lattice >> np.uint64(40)).astype(np.float32) * np.float32(2.0**-23) - np.float32(1.0)
    lo = (ranges[0][0], ranges[1][0], ranges[2][0])
    return interpolate_lattice(values / np.float32(_SPLINE_STD), lo, axes, scale)


#: Periods (voxels) of the two tables behind :func:`voxel_normal`; coprime, so
#: the sum repeats only every 64 * 61 voxels along each axis.
_PERIODS = (64, 61)


@functools.lru_cache(maxsize=8)
def _normal_tables(key: int) -> tuple[np.ndarray, ...]:
    rng = rng_for(key, 0x5EED)
    return tuple(rng.standard_normal((p, p, p)).astype(np.float32) for p in _PERIODS)


def voxel_normal(indices: tuple[np.ndarray, np.ndarray, np.ndarray], key: int) -> np.ndarray:
    """Standard-normal noise per voxel, a function of the global voxel index.

    The sum of two tables of random numbers with coprime periods, looked up by
    the global index, so each voxel gets its value whatever the crop.
    """
    out = None
    for table, p in zip(_normal_tables(key), _PERIODS, strict=True):
        part = table
        for axis, idx in enumerate(indices):
            part = np.take(part, np.asarray(idx) % p, axis=axis)
        if out is None:
            out = part
        else:
            out += part
    out *= np.float32(1 / np.sqrt(2))
    return out

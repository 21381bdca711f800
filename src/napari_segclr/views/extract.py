"""Cut views around points: cubes defined in nm, resampled from each volume's own voxels.

The EM and the segmentation are each read in their own voxels and sampled at
the view's voxel centres in physical space, so they may differ in voxel size
and extent. Views whose centres fall in the same cell of a spatial grid share
one crop per volume, read once.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..exceptions import SegmentNotFoundError, ShapeMismatchError, VoxelSizeError
from ..io.dataset import Dataset
from ..io.volume import Volume, as_vec3
from .sampling import (
    AxisTaps,
    area_taps,
    axis_positions,
    nearest_index,
    nearest_mask,
    resample,
    snap_shift,
    trim_taps,
)
from .spec import UINT8_SCALE, ViewSpec, as_view_spec

#: A view voxel may be at most this many times finer than the finest volume voxel
#: along any axis; finer views would hold little but interpolation.
MAX_UPSAMPLING = 4.0
#: The most one view may read from one volume; beyond this, give the volume a
#: coarser pyramid level or the views a coarser voxel size.
MAX_VIEW_BYTES = 2 * 2**30
#: Largest crop shared by a group of views (bounds memory); larger groups read per view.
MAX_GROUP_BYTES = 512 * 2**20

VolumeSource = Dataset | Mapping[str, Volume] | Volume
Seed = np.random.Generator | int | None
JitterShape = Literal["cube", "ball"]
ViewDtype = Literal["float32", "uint8"]
VIEW_DTYPES: tuple[ViewDtype, ...] = ("float32", "uint8")


def extract_views(
    source: VolumeSource,
    segment_ids: np.ndarray | Sequence[int] | int | None,
    centers_nm: np.ndarray,
    spec: ViewSpec,
    *,
    jitter_nm: float | Sequence[float] = 0.0,
    jitter_shape: JitterShape = "cube",
    generator: Seed = None,
    snap: bool = True,
    group_nm: float | None = None,
    out: np.ndarray | None = None,
    dtype: ViewDtype = "float32",
) -> np.ndarray:
    """Views (B, C, Z, Y, X) float32 (or uint8) of segments around centres given in nm.

    View voxel ``i`` along an axis has its centre at
    ``centre + (i - (n - 1) / 2) * view_voxel_size``. EM is resampled with the
    area kernel (linear interpolation where the view is finer than the EM, the
    mean over each view voxel's footprint where it is coarser; see
    :mod:`.sampling`) and scaled to [0, 1] (integers divided by their dtype's
    maximum, 255 for uint8; float EM is taken as already in [0, 1]). Segment
    ids are sampled at the nearest voxel and compared exactly: mask =
    ``seg == segment_id``, masked EM = EM · mask. Outside a volume the EM reads
    0 and the mask 0. Each volume is read at its coarsest pyramid level that is
    still as fine as the views.

    Parameters
    ----------
    source
        A :class:`~napari_segclr.io.Dataset`, a mapping with ``"em"`` and
        ``"segmentation"`` volumes, or an EM volume alone (for "em" views).
    segment_ids
        (B,) uint64 ids, or one id for all views; may be None when no channel
        uses the segmentation.
    centers_nm
        (B, 3) view centres in nm (z, y, x); each must lie inside the volumes.
    spec
        A :class:`ViewSpec` or a ``ModelConfig``.
    jitter_nm
        Random shift of each centre (the SegCLR augmentation): up to this many nm
        per axis (one number or z, y, x), uniform in a cube or a ball.
    jitter_shape
        "cube" (each axis uniform in ±jitter) or "ball" (uniform in the ellipsoid).
    generator
        Seed or ``numpy.random.Generator`` for the jitter.
    snap
        Shift each centre by under half a voxel of the EM (the segmentation for
        mask-only views) so that, along axes where the view voxel size is a whole
        multiple of it, view voxels cover whole source voxels: views are then
        plain slices (equal sizes) or plain means, all resampled alike.
    group_nm
        Edge of the grid cells (nm) whose views share one crop; None: the
        view's field of view; 0: one read per view. A group is read as one crop only
        when that reads no more voxels than reading its views one by one.
    out
        A (B, C, Z, Y, X) array of ``dtype`` to write into (e.g. ``tensor.numpy()``).
    dtype
        "float32", or "uint8": each value round(255 × its float32 value), a quarter
        of the bytes for carrying views to a GPU (``SegclrModel.embed`` takes both).

    Raises
    ------
    ShapeMismatchError
        A centre outside the volumes, or a missing segmentation.
    VoxelSizeError
        View voxels over 4× finer than a volume's, or views too large to read.
    SegmentNotFoundError
        A segment id that is 0, or that has no voxel in any of its views.

    Examples
    --------
    >>> views = extract_views(dataset, ids, centers, get_preset("lite"))  # doctest: +SKIP
    >>> views.shape  # doctest: +SKIP
    (32, 1, 33, 33, 33)
    """
    spec = as_view_spec(spec)
    dataset = as_dataset(source)
    centers = as_centers(centers_nm)
    n_views = len(centers)
    ids = as_segment_ids(segment_ids, n_views) if spec.needs_segmentation else None
    out = _output(out, n_views, spec, dtype)
    em = _Sampler.choose(dataset.em, spec, nearest=False) if spec.needs_em else None
    seg = (
        _Sampler.choose(_segmentation(dataset, spec), spec, nearest=True)
        if ids is not None
        else None
    )
    samplers = [s for s in (em, seg) if s is not None]
    _check_inside(centers, [s.extent_nm for s in samplers])
    centers = jitter_centers(centers, jitter_nm, shape=jitter_shape, generator=generator)
    if n_views == 0:
        return out
    if snap:
        centers = samplers[0].snapped(centers, spec)
    em_plan = em.plan(centers, spec) if em is not None else None
    seg_plan = seg.plan(centers, spec) if seg is not None else None
    em_range = _em_range(dataset.em.dtype)
    has_voxels = np.zeros(n_views, dtype=bool)
    for members in view_groups(centers, spec, group_nm=group_nm):
        blocks = zip(members, _blocks(em_plan, members), _blocks(seg_plan, members), strict=False)
        for b, em_block, seg_block in blocks:
            em_view = mask = None
            if em_block is not None:
                em_view = resample(em_block, em_plan.taps(b))
            if seg_block is not None:
                mask = nearest_mask(seg_block, seg_plan.index(b), ids[b])
                # A process thinner than a view voxel can fall between the sampled
                # centres; it is still in the view, so look for it in the crop itself.
                has_voxels[b] = mask.any() or (seg_block == ids[b]).any()
            _write(out[b], spec.input_kinds, em_view, em_range, mask)
    if ids is not None:
        _check_segments(ids, has_voxels)
    return out


def jitter_centers(
    centers_nm: np.ndarray,
    jitter_nm: float | Sequence[float],
    *,
    shape: JitterShape = "cube",
    generator: Seed = None,
) -> np.ndarray:
    """Centres shifted at random by up to ``jitter_nm`` (one number or z, y, x).

    "cube" draws each axis uniformly in ``[-jitter, jitter]``; "ball" draws
    uniformly inside the ball (the ellipsoid for per-axis amounts). Nothing is
    drawn when the jitter is 0.
    """
    centers = as_centers(centers_nm)
    amount = np.asarray(as_vec3(jitter_nm, "jitter_nm"))
    if np.any(amount < 0):
        raise ValueError(f"jitter_nm must be >= 0, got {jitter_nm!r}")
    if shape not in ("cube", "ball"):
        raise ValueError(f"jitter_shape must be 'cube' or 'ball', got {shape!r}")
    if not np.any(amount):
        return centers
    rng = np.random.default_rng(generator)
    if shape == "cube":
        unit = rng.uniform(-1.0, 1.0, size=centers.shape)
    else:
        direction = rng.standard_normal(centers.shape)
        direction /= np.maximum(np.linalg.norm(direction, axis=1, keepdims=True), 1e-300)
        unit = direction * rng.random(len(centers))[:, None] ** (1 / 3)
    return centers + unit * amount


def view_groups(
    centers_nm: np.ndarray, spec: ViewSpec, *, group_nm: float | None = None
) -> list[np.ndarray]:
    """Indices of the views that fall in each cell of a grid of ``group_nm`` (nm) cells."""
    centers = as_centers(centers_nm)
    if group_nm is None:
        # For views along a neurite s nm apart, a cell of edge g saves a factor of about
        # g / (s (1 + g / F)^k) for a run along k axes: g = F is best along one or two axes
        # and within 16 % of the best (F / 2) along a 3D diagonal.
        cell = np.asarray(spec.field_of_view_nm)
    elif np.isfinite(group_nm) and group_nm >= 0:
        cell = np.full(3, float(group_nm))
    else:
        raise ValueError(f"group_nm must be >= 0 or None, got {group_nm!r}")
    if not np.all(cell > 0):
        return [np.array([i]) for i in range(len(centers))]
    keys = np.floor(centers / cell).astype(np.int64)
    inverse = np.unique(keys, axis=0, return_inverse=True)[1].reshape(-1)
    order = np.argsort(inverse, kind="stable")
    return np.split(order, np.flatnonzero(np.diff(inverse[order])) + 1)


def as_dataset(source: VolumeSource) -> Dataset:
    """A dataset from a dataset, a mapping of "em" (and "segmentation") volumes, or a volume."""
    if isinstance(source, Dataset):
        return source
    if isinstance(source, Volume):
        return Dataset(source)
    if isinstance(source, Mapping):
        if "em" not in source:
            raise ValueError(f"source needs an 'em' volume, got keys {sorted(source)}")
        return Dataset(source["em"], source.get("segmentation"))
    raise TypeError(f"source must be a Dataset, a mapping of volumes or a Volume, got {source!r}")


def as_centers(centers_nm: np.ndarray) -> np.ndarray:
    """Validate centres: a finite (B, 3) float array in nm."""
    centers = np.asarray(centers_nm, dtype=np.float64)
    if centers.ndim != 2 or centers.shape[1] != 3:
        raise ShapeMismatchError(f"centers_nm must be (B, 3) in nm (z, y, x), got {centers.shape}")
    if not np.all(np.isfinite(centers)):
        raise ValueError("centers_nm must be finite")
    return centers


def as_segment_ids(segment_ids: np.ndarray | Sequence[int] | int | None, n: int) -> np.ndarray:
    """Validate segment ids: n uint64 values (one id is repeated), none of them 0."""
    if segment_ids is None:
        raise ValueError("segment_ids are needed for mask and masked_em views")
    ids = np.asarray(segment_ids)
    if ids.dtype.kind not in "iu" and not isinstance(segment_ids, np.ndarray):
        # Python ints at or above 2**63 next to small ones turn into float64: keep them exact.
        values = np.asarray(segment_ids, dtype=object)
        if all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in values.flat):
            try:
                ids = np.array(values.tolist(), dtype=np.uint64)
            except OverflowError:
                raise ValueError("segment_ids must be in [0, 2**64)") from None
    if ids.dtype.kind not in "iu":
        raise ValueError(f"segment_ids must be integers (uint64 ids), got dtype {ids.dtype}")
    if ids.dtype.kind == "i" and np.any(ids < 0):
        raise ValueError("segment_ids must be non-negative")
    ids = ids.astype(np.uint64)
    if ids.ndim == 0:
        ids = np.full(n, ids, dtype=np.uint64)
    if ids.shape != (n,):
        raise ShapeMismatchError(f"segment_ids must hold one id per centre ({n}), got {ids.shape}")
    if np.any(ids == 0):
        raise SegmentNotFoundError("segment id 0 is the background, not a segment")
    return ids


@dataclass(frozen=True)
class _Plan:
    """Where and how every view samples one volume level."""

    volume: Volume
    firsts: tuple[np.ndarray, ...]  # per axis (B, n): first tap (or nearest) index
    weights: tuple[np.ndarray | None, ...]  # per axis (B, n, T), None for nearest
    lo: np.ndarray  # (B, 3) each view's box in the level's voxels
    hi: np.ndarray

    def taps(self, b: int) -> list[AxisTaps]:
        """View ``b``'s taps along each axis, indexed from its own box."""
        taps: list[AxisTaps] = []
        for k, (first, weights) in enumerate(zip(self.firsts, self.weights, strict=True)):
            local = first[b] - self.lo[b, k]
            taps.append((local, None) if weights is None else trim_taps(local, weights[b]))
        return taps

    def index(self, b: int) -> list[np.ndarray]:
        """View ``b``'s nearest-voxel indices along each axis, from its own box."""
        return [first for first, _ in self.taps(b)]

    def blocks(self, members: np.ndarray) -> Iterator[np.ndarray]:
        """Each member's box, from one shared crop when that reads fewer voxels."""
        lo, hi = self.lo[members], self.hi[members]
        group_lo, group_hi = lo.min(axis=0), hi.max(axis=0)
        group = int(np.prod(group_hi - group_lo))
        limit = min(
            int(np.prod(hi - lo, axis=1).sum()), MAX_GROUP_BYTES // self.volume.dtype.itemsize
        )
        if len(members) > 1 and group <= limit:
            crop = self._read(group_lo, group_hi)
            for a, b in zip(lo - group_lo, hi - group_lo, strict=True):
                yield crop[_box(a, b)]
        else:
            for a, b in zip(lo, hi, strict=True):
                yield self._read(a, b)

    def _read(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """The box's voxels, not to be written to: in memory, the volume's own where unpadded."""
        if np.all(lo >= 0) and np.all(hi <= self.volume.shape):
            return self.volume.read(_box(lo, hi))
        return self.volume.read_padded(_box(lo, hi))


@dataclass(frozen=True)
class _Sampler:
    """One volume, at the pyramid level views are read from."""

    volume: Volume
    level: Volume
    ratios: np.ndarray  # view voxel size / level voxel size, (3,)
    nearest: bool

    @classmethod
    def choose(cls, volume: Volume, spec: ViewSpec, *, nearest: bool) -> _Sampler:
        """Read ``volume`` at its coarsest level still as fine as the views (else its finest)."""
        view = np.asarray(spec.voxel_size_nm)
        sizes = np.asarray(volume.level_voxel_sizes)
        volumes = np.prod(sizes, axis=1)
        fits = np.all(sizes <= view * (1 + 1e-6), axis=1)
        index = (
            int(np.argmax(np.where(fits, volumes, -np.inf)))
            if fits.any()
            else int(np.argmin(volumes))
        )
        level = volume if index == 0 else volume.level(index)
        ratios = view / np.asarray(level.voxel_size)
        if np.any(ratios < 1 / MAX_UPSAMPLING):
            raise VoxelSizeError(
                f"view voxel size {spec.voxel_size_nm} nm is over {MAX_UPSAMPLING:g}× finer than "
                f"{volume.source} ({level.voxel_size} nm): views would be mostly interpolation "
                "(are the voxel sizes in nm?)"
            )
        extent = np.ceil((np.asarray(spec.shape) - 1) * ratios + np.maximum(ratios, 1)) + 1
        view_bytes = int(np.prod(extent)) * level.dtype.itemsize
        if view_bytes > MAX_VIEW_BYTES:
            raise VoxelSizeError(
                f"one view would read {view_bytes / 2**30:.1f} GiB of {volume.source} at "
                f"{level.voxel_size} nm; use a volume with coarser pyramid levels or a coarser "
                "view voxel size"
            )
        return cls(volume, level, ratios, nearest)

    @property
    def extent_nm(self) -> tuple[np.ndarray, np.ndarray]:
        return self.volume.extent_nm

    def snapped(self, centers: np.ndarray, spec: ViewSpec) -> np.ndarray:
        shift = snap_shift(self.level.to_voxel(centers), spec.shape, self.ratios)
        return centers + shift * np.asarray(self.level.voxel_size)

    def plan(self, centers: np.ndarray, spec: ViewSpec) -> _Plan:
        voxels = self.level.to_voxel(centers)
        firsts, weights = [], []
        for k in range(3):
            positions = axis_positions(voxels[:, k], spec.shape[k], self.ratios[k])
            if self.nearest:
                firsts.append(nearest_index(positions))
                weights.append(None)
            else:
                first, w = trim_taps(*area_taps(positions, self.ratios[k]))
                firsts.append(first)
                weights.append(w)
        lo = np.stack([f[:, 0] for f in firsts], axis=1)
        reach = [1 if w is None else w.shape[2] for w in weights]
        hi = np.stack([f[:, -1] + r for f, r in zip(firsts, reach, strict=True)], axis=1)
        return _Plan(self.level, tuple(firsts), tuple(weights), lo, hi)


def _blocks(plan: _Plan | None, members: np.ndarray) -> Iterator[np.ndarray | None]:
    return itertools.repeat(None) if plan is None else plan.blocks(members)


def _segmentation(dataset: Dataset, spec: ViewSpec) -> Volume:
    if dataset.segmentation is None:
        raise ShapeMismatchError(
            f"{dataset.em.source}: views of kinds {spec.input_kinds} need a segmentation, "
            "and this dataset has none"
        )
    return dataset.segmentation


def as_view_dtype(dtype: str) -> ViewDtype:
    """Validate a view dtype: one of :data:`VIEW_DTYPES`."""
    if dtype not in VIEW_DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(VIEW_DTYPES)}, got {dtype!r}")
    return dtype


def _output(out: np.ndarray | None, n: int, spec: ViewSpec, dtype: ViewDtype) -> np.ndarray:
    dtype = as_view_dtype(dtype)
    shape = (n, spec.in_channels, *spec.shape)
    if out is None:
        return np.empty(shape, dtype=dtype)
    if not isinstance(out, np.ndarray) or out.shape != shape or out.dtype != dtype:
        got = (getattr(out, "shape", None), getattr(out, "dtype", type(out).__name__))
        raise ShapeMismatchError(f"out must be a {dtype} array of shape {shape}, got {got}")
    return out


def _em_range(dtype: np.dtype) -> np.float32:
    """What EM values are divided by to lie in [0, 1]: an integer dtype's maximum, else 1."""
    if np.issubdtype(dtype, np.integer):
        return np.float32(np.iinfo(dtype).max)
    return np.float32(1)


def _write(
    dst: np.ndarray,
    kinds: tuple[str, ...],
    em: np.ndarray | None,
    em_range: np.float32,
    mask: np.ndarray | None,
) -> None:
    """Fill one view's channels (C, Z, Y, X) from its EM and mask."""
    quantised = dst.dtype == np.uint8
    for channel, kind in zip(dst, kinds, strict=True):
        if kind == "mask":
            np.multiply(mask, UINT8_SCALE if quantised else 1, out=channel, casting="unsafe")
            continue
        if not quantised:
            np.divide(em, em_range, out=channel, casting="unsafe")
        elif em.dtype == np.uint8:  # a plain crop of uint8 EM: nothing to scale or round
            np.copyto(channel, em)
        else:
            scaled = np.clip(em * np.float32(UINT8_SCALE / em_range), 0, UINT8_SCALE)
            np.rint(scaled, out=channel, casting="unsafe")
        if kind == "masked_em":
            channel *= mask


def _check_inside(centers: np.ndarray, extents: list[tuple[np.ndarray, np.ndarray]]) -> None:
    lo = np.max([e[0] for e in extents], axis=0)
    hi = np.min([e[1] for e in extents], axis=0)
    outside = np.flatnonzero(~np.all((centers >= lo) & (centers < hi), axis=1))
    if len(outside):
        i = int(outside[0])
        point = ", ".join(f"{v:.6g}" for v in centers[i])
        span = ", ".join(f"{a / 1e3:.6g}–{b / 1e3:.6g}" for a, b in zip(lo, hi, strict=True))
        raise ShapeMismatchError(
            f"centers_nm[{i}] = ({point}) nm is outside the volumes, which span ({span}) µm "
            f"(z, y, x); {len(outside)} of {len(centers)} centres are outside"
        )


def _check_segments(ids: np.ndarray, has_voxels: np.ndarray) -> None:
    unique, inverse = np.unique(ids, return_inverse=True)
    views = np.bincount(inverse, minlength=len(unique))
    found = np.bincount(inverse, weights=has_voxels, minlength=len(unique))
    missing = np.flatnonzero(found == 0)
    if len(missing):
        i = missing[0]
        raise SegmentNotFoundError(
            f"segment {int(unique[i])} has no voxel in any of its {int(views[i])} views; "
            "check the id and that its centres (nm, z y x) lie on it"
        )


def _box(lo: np.ndarray, hi: np.ndarray) -> tuple[slice, slice, slice]:
    z, y, x = (slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    return z, y, x

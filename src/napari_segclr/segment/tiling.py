"""Affinities of a whole volume from a network that sees one tile at a time.

The volume is cut into tiles of the model's input shape, overlapping by
``overlap``. Each tile's prediction is weighted by a separable cosine window
(high in its centre, low near its faces, where the network saw the least
context) and divided by the summed weights of all tiles there, so the result
has no seams. The tile grid reaches half an overlap past the volume's faces and
the part outside is filled by mirror reflection, so border voxels get context
too; a volume smaller than one tile is padded the same way.

The tile grid is a product of three 1D grids, so the summed weight is a product
of three 1D sums: each tile's share is normalised as soon as it is predicted
and added to the output once. The output can therefore be a zarr array (or a
memory map) for volumes larger than memory; only a few tiles are ever held.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ..exceptions import CheckpointError, ShapeMismatchError, VoxelSizeError
from ..io import Volume

Progress = Callable[[int, int], None]
Overlap = float | int | Sequence[float | int]

#: Default largest relative difference, per axis, between the volume's and the model's voxel size.
VOXEL_SIZE_TOLERANCE = 0.1


class AffinityPredictor(Protocol):
    """What tiled inference needs of an affinity network (``napari_segclr.mae.AffinityModel``).

    ``forward`` maps (B, 1, Z, Y, X) float tiles of ``patch_shape`` to
    (B, 3, Z, Y, X) affinity logits: channel 0 links a voxel to its −z
    neighbour, 1 to −y, 2 to −x.
    """

    patch_shape: tuple[int, int, int]
    voxel_size_nm: tuple[float, float, float]

    def normalise(self, raw: np.ndarray) -> np.ndarray: ...

    def __call__(self, x: Any) -> Any: ...


def model_level(
    volume: Volume | np.ndarray,
    model: AffinityPredictor,
    *,
    tolerance: float = VOXEL_SIZE_TOLERANCE,
) -> Volume:
    """The level of ``volume`` at the model's voxel size, as a one-level volume.

    A numpy array is taken to be at the model's voxel size. Level 0 is preferred;
    coarser levels of a multiscale volume are tried next.

    Raises
    ------
    ShapeMismatchError
        The array is not 3D or is empty.
    VoxelSizeError
        No level's voxel size is within ``tolerance`` (relative, per axis) of the model's.
    """
    if not isinstance(volume, Volume):
        array = np.asarray(volume)
        if array.ndim != 3:
            raise ShapeMismatchError(
                f"volume: expected a 3D (z, y, x) array, got shape {array.shape}"
            )
        volume = Volume(array, tuple(model.voxel_size_nm))
    if min(volume.shape) == 0:
        raise ShapeMismatchError(f"{volume.source}: the volume is empty (shape {volume.shape})")
    wanted = np.asarray(model.voxel_size_nm, dtype=float)
    for index, size in enumerate(volume.level_voxel_sizes):
        if np.all(np.abs(np.asarray(size) / wanted - 1) <= tolerance):
            return volume if index == 0 else volume.level(index)
    sizes = " or ".join(_fmt_nm(s) for s in volume.level_voxel_sizes)
    raise VoxelSizeError(
        f"{volume.source}: voxel size {sizes} nm differs from the model's "
        f"{_fmt_nm(wanted)} nm by more than {tolerance:.0%}; resample the volume to the "
        "model's voxel size (or check the voxel size given for it)"
    )


def predict_affinities(
    volume: Volume | np.ndarray,
    model: AffinityPredictor,
    *,
    overlap: Overlap = 0.25,
    batch_size: int = 4,
    device: str = "auto",
    out: Any = None,
    voxel_size_tolerance: float = VOXEL_SIZE_TOLERANCE,
    progress: Progress | None = None,
) -> Any:
    """Affinity probabilities (3, Z, Y, X) float32 of a volume, predicted tile by tile.

    Only each tile's box is read from the volume (a lazy :class:`Volume` stays
    lazy); the next batch is read while the network runs on the current one.
    The model is put in eval mode on ``device``.

    Parameters
    ----------
    volume
        The EM volume, or a 3D numpy array taken to be at the model's voxel size.
        Of a multiscale volume, the level at the model's voxel size is used
        (:func:`model_level`); the output has that level's shape.
    model
        An affinity network (see :class:`AffinityPredictor`).
    overlap
        Overlap of neighbouring tiles: a fraction of the tile in [0, 1) if a
        float, voxels if an integer; one value or three (z, y, x).
    batch_size
        Tiles per forward pass.
    device
        "auto" (CUDA when available), "cpu", "cuda" or "cuda:N".
    out
        Where to write: an array of shape (3, Z, Y, X) and float dtype supporting
        slicing (a zarr array, a numpy memory map). It is zeroed first. None
        returns a new numpy array.
    voxel_size_tolerance
        Largest relative difference, per axis, between the volume's and the
        model's voxel size (default 10 %); beyond it ``VoxelSizeError``.
    progress
        Called as ``progress(done, total)`` in tiles after each batch; an
        exception raised there stops the prediction (``out`` is then partly filled).

    Returns
    -------
    The affinities: ``out``, or a new numpy array. Channel 0 is the probability
    that a voxel belongs with its −z neighbour, 1 with −y, 2 with −x.
    """
    import torch

    from ..embed import resolve_device

    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    volume = model_level(volume, model, tolerance=voxel_size_tolerance)
    patch = patch_shape(model)
    grid = TileGrid.build(volume.shape, patch, overlap)
    shape = (3, *volume.shape)
    if out is None:
        out = np.zeros(shape, np.float32)
    elif tuple(out.shape) != shape:
        raise ShapeMismatchError(f"out: expected shape {shape}, got {tuple(out.shape)}")
    else:
        out[...] = 0
    torch_device = resolve_device(device)
    model.to(torch_device).eval()  # type: ignore[attr-defined]
    corners = grid.corners()
    batches = [corners[i : i + batch_size] for i in range(0, len(corners), batch_size)]

    def read(batch: list[tuple[int, int, int]]) -> np.ndarray:
        tiles = [np.asarray(model.normalise(grid.read(volume, c)), np.float32) for c in batch]
        return np.stack(tiles)[:, None]

    autocast = torch.autocast("cuda", torch.bfloat16, enabled=torch_device.type == "cuda")
    with ThreadPoolExecutor(max_workers=1) as reader, torch.inference_mode(), autocast:
        pending = reader.submit(read, batches[0])
        for index, batch in enumerate(batches):
            x = torch.from_numpy(pending.result()).to(torch_device)
            if index + 1 < len(batches):
                pending = reader.submit(read, batches[index + 1])
            logits = model(x)
            if tuple(logits.shape) != (len(batch), 3, *patch):
                raise CheckpointError(
                    f"the model returned shape {tuple(logits.shape)} for tiles of shape "
                    f"{tuple(x.shape)}; an affinity model returns (B, 3, *patch_shape)"
                )
            probabilities = torch.sigmoid(logits.float()).cpu().numpy()
            for corner, tile in zip(batch, probabilities, strict=True):
                grid.add(out, tile, corner)
            if progress is not None:
                progress(min((index + 1) * batch_size, len(corners)), len(corners))
    return out


@dataclass(frozen=True, eq=False)
class TileGrid:
    """Tile corners along each axis (may lie outside the volume) and their blending weights.

    ``weights[axis][i]`` holds the normalised weights of the ``i``-th tile along
    ``axis`` over the voxels it covers inside the volume: along each axis, the
    weights of all tiles covering a voxel sum to one.
    """

    shape: tuple[int, int, int]
    patch: tuple[int, int, int]
    starts: tuple[tuple[int, ...], ...]
    weights: tuple[tuple[np.ndarray, ...], ...]

    @classmethod
    def build(cls, shape: Sequence[int], patch: Sequence[int], overlap: Overlap = 0.25) -> TileGrid:
        """The grid for a volume of ``shape`` and tiles of ``patch`` (voxels)."""
        shape3 = tuple(int(n) for n in shape)
        patch3 = tuple(int(p) for p in patch)
        overlaps = _overlap_voxels(overlap, patch3)
        axes = [_axis_tiles(n, p, o) for n, p, o in zip(shape3, patch3, overlaps, strict=True)]
        return cls(
            shape3,  # type: ignore[arg-type]
            patch3,  # type: ignore[arg-type]
            tuple(starts for starts, _ in axes),
            tuple(weights for _, weights in axes),
        )

    def corners(self) -> list[tuple[int, int, int]]:
        return list(itertools.product(*self.starts))  # type: ignore[arg-type]

    def inside(self, corner: Sequence[int]) -> tuple[slice, slice, slice]:
        """The part of the tile at ``corner`` that lies inside the volume."""
        z, y, x = (
            slice(max(c, 0), min(c + p, n))
            for c, p, n in zip(corner, self.patch, self.shape, strict=True)
        )
        return z, y, x

    def read(self, volume: Volume, corner: Sequence[int]) -> np.ndarray:
        """The tile at ``corner``: its box read from ``volume``, mirrored where outside."""
        box = self.inside(corner)
        crop = volume.read(box)
        pad = [
            (b.start - c, c + p - b.stop) for b, c, p in zip(box, corner, self.patch, strict=True)
        ]
        return np.pad(crop, pad, mode="reflect") if any(any(w) for w in pad) else crop

    def add(self, out: Any, tile: np.ndarray, corner: Sequence[int]) -> None:
        """Add the weighted in-volume part of a (C, *patch) prediction to ``out``."""
        box = self.inside(corner)
        wz, wy, wx = (
            self.weights[axis][self.starts[axis].index(corner[axis])] for axis in range(3)
        )
        weight = wz[:, None, None] * wy[None, :, None] * wx[None, None, :]
        local = tuple(slice(b.start - c, b.stop - c) for b, c in zip(box, corner, strict=True))
        key = (slice(None), *box)
        out[key] = out[key] + tile[(slice(None), *local)] * weight


def _axis_tiles(n: int, p: int, overlap: int) -> tuple[tuple[int, ...], tuple[np.ndarray, ...]]:
    """Tile starts along one axis of length ``n`` and each tile's normalised weights."""
    margin = overlap // 2
    span = n + 2 * margin
    if span <= p:  # one tile, centred, padded on both sides
        starts = np.array([-((p - n) // 2)])
    else:
        count = -(-(span - p) // (p - overlap)) + 1
        starts = np.round(np.linspace(0, span - p, count)).astype(int) - margin
    window = np.sin(np.pi * (np.arange(p) + 0.5) / p) ** 2  # positive everywhere
    total = np.zeros(n)
    for s in starts:
        lo, hi = max(s, 0), min(s + p, n)
        total[lo:hi] += window[lo - s : hi - s]
    weights = []
    for s in starts:
        lo, hi = max(s, 0), min(s + p, n)
        weights.append((window[lo - s : hi - s] / total[lo:hi]).astype(np.float32))
    return tuple(int(s) for s in starts), tuple(weights)


def _overlap_voxels(overlap: Overlap, patch: tuple[int, ...]) -> tuple[int, int, int]:
    values = list(overlap) if isinstance(overlap, Sequence) else [overlap] * 3
    if len(values) != 3:
        raise ValueError(f"overlap must be one value or three (z, y, x), got {overlap!r}")
    voxels = []
    for value, p in zip(values, patch, strict=True):
        if isinstance(value, bool) or not isinstance(value, int | float | np.number):
            raise ValueError(f"overlap must be a number, got {value!r}")
        if isinstance(value, float | np.floating):
            if not 0 <= value < 1:
                raise ValueError(
                    f"overlap as a fraction of the tile must be in [0, 1), got {value}"
                )
            value = round(value * p)
        if not 0 <= value < p:
            raise ValueError(f"overlap must be in [0, {p}) voxels for tiles of {p}, got {value}")
        voxels.append(int(value))
    return voxels[0], voxels[1], voxels[2]


def patch_shape(model: AffinityPredictor) -> tuple[int, int, int]:
    """The model's tile shape (z, y, x) in voxels, checked."""
    patch = tuple(int(p) for p in model.patch_shape)
    if len(patch) != 3 or min(patch) < 1:
        raise CheckpointError(
            f"the model's patch_shape must be three positive integers, got {model.patch_shape}"
        )
    return patch  # type: ignore[return-value]


def _fmt_nm(size: Sequence[float]) -> str:
    return "(" + ", ".join(f"{float(v):g}" for v in size) + ")"

"""Training tiles: random crops of volumes, their intensity scale and augmentation."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..exceptions import ShapeMismatchError, VoxelSizeError
from ..io import Volume
from .affinity import labels_to_affinities
from .config import MAEConfig, normalise_intensity

#: Relative difference between voxel sizes still taken as equal.
VOXEL_SIZE_TOLERANCE = 1e-3
#: Tiles per volume that the intensity normalisation is measured on.
INTENSITY_SAMPLES = 16


def check_volume(volume: Volume, config: MAEConfig, *, what: str) -> None:
    """A volume must be at the model's voxel size and hold at least one tile."""
    size, model = np.array(volume.voxel_size), np.array(config.voxel_size_nm)
    if np.any(np.abs(size - model) > VOXEL_SIZE_TOLERANCE * model):
        raise VoxelSizeError(
            f"{what} {volume.source} has voxel size {volume.voxel_size} nm; the model "
            f"works at {config.voxel_size_nm} nm (resample the volume or choose a model "
            "config of its voxel size)"
        )
    small = np.array(volume.shape) < np.array(config.tile_shape)
    if np.any(small):
        axes = ", ".join(np.array(list("zyx"))[small])
        raise ShapeMismatchError(
            f"{what} {volume.source} of shape {volume.shape} is smaller than one tile "
            f"{config.tile_shape} of the model along {axes}"
        )


def measure_intensity(
    volumes: Sequence[Volume], tile_shape: tuple[int, int, int], *, seed: int
) -> tuple[float, float]:
    """Mean and standard deviation of the voxels of random tiles of each volume."""
    sampler = TileSampler(volumes, tile_shape)
    generator = np.random.default_rng([seed, 0x1A7E])
    values = [
        volume.read(box).astype(np.float64)
        for volume, box in sampler.draw(INTENSITY_SAMPLES * len(volumes), generator)
    ]
    flat = np.concatenate([v.ravel() for v in values])
    std = float(flat.std())
    return float(flat.mean()), std if std > 0 else 1.0


class TileSampler:
    """Draws tile boxes uniformly over the voxels of several volumes.

    A volume is chosen in proportion to its number of tile positions, then a
    position within it uniformly.
    """

    def __init__(self, volumes: Sequence[Volume], tile_shape: tuple[int, int, int]) -> None:
        self.volumes = tuple(volumes)
        self.tile_shape = tile_shape
        self._spans = np.array([np.array(v.shape) - tile_shape + 1 for v in self.volumes])
        if np.any(self._spans < 1):
            raise ShapeMismatchError(f"a volume is smaller than the tile {tile_shape}")
        weights = self._spans.prod(axis=1).astype(np.float64)
        self._weights = weights / weights.sum()

    def draw(
        self, count: int, generator: np.random.Generator
    ) -> list[tuple[Volume, tuple[slice, slice, slice]]]:
        """``count`` (volume, box) pairs."""
        which = generator.choice(len(self.volumes), size=count, p=self._weights)
        corners = (generator.random((count, 3)) * self._spans[which]).astype(np.int64)
        boxes = []
        for index, corner in zip(which, corners, strict=True):
            z, y, x = (
                slice(int(a), int(a + n)) for a, n in zip(corner, self.tile_shape, strict=True)
            )
            boxes.append((self.volumes[index], (z, y, x)))
        return boxes


def augment_choices(
    count: int, tile_shape: tuple[int, int, int], generator: np.random.Generator, *, flips: bool
) -> np.ndarray:
    """Per tile: flip z, flip y, flip x, swap y and x (bool (count, 4)); all False without flips.

    y and x are swapped only where the tile is as long in y as in x.
    """
    if not flips:
        return np.zeros((count, 4), dtype=bool)
    choice = generator.random((count, 4)) < 0.5
    choice[:, 3] &= tile_shape[1] == tile_shape[2]
    return choice


def augment(array: np.ndarray, choice: np.ndarray) -> np.ndarray:
    """Apply one tile's :func:`augment_choices` to its last three axes."""
    axes = [a - 3 for a in range(3) if choice[a]]
    out = np.flip(array, axis=axes) if axes else array
    if choice[3]:
        out = np.swapaxes(out, -1, -2)
    return np.ascontiguousarray(out)


def raw_tiles(
    sampler: TileSampler,
    config: MAEConfig,
    generator: np.random.Generator,
    *,
    count: int,
    flips: bool,
) -> np.ndarray:
    """``count`` random normalised, augmented tiles (count, 1, Z, Y, X) float32."""
    boxes = sampler.draw(count, generator)
    choices = augment_choices(count, config.tile_shape, generator, flips=flips)
    tiles = [
        augment(normalise_intensity(volume.read(box), config), choice)
        for (volume, box), choice in zip(boxes, choices, strict=True)
    ]
    return np.stack(tiles)[:, None]


def labelled_tiles(
    raw: Volume,
    labels: Volume,
    config: MAEConfig,
    generator: np.random.Generator,
    *,
    count: int,
    flips: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random tiles (count, 1, Z, Y, X) float32 with their affinities and where those are known.

    Affinities and validity are (count, 3, Z, Y, X) uint8. Labels are read one
    voxel beyond the tile on every side, so that the affinities of its first
    planes are known wherever the neighbour lies inside the volume.
    """
    boxes = TileSampler([raw], config.tile_shape).draw(count, generator)
    choices = augment_choices(count, config.tile_shape, generator, flips=flips)
    images, targets, valid = [], [], []
    for (_, box), choice in zip(boxes, choices, strict=True):
        grown = tuple(slice(s.start - 1, s.stop + 1) for s in box)
        ids = labels.read_padded(grown)
        inside = np.zeros(ids.shape, dtype=np.uint8)
        inside[
            tuple(
                slice(max(0, -g.start), min(n, size - g.start))
                for g, n, size in zip(grown, ids.shape, labels.shape, strict=True)
            )
        ] = 1
        images.append(augment(normalise_intensity(raw.read(box), config), choice))
        interior = (slice(None), slice(1, -1), slice(1, -1), slice(1, -1))
        targets.append(labels_to_affinities(augment(ids, choice))[interior])
        valid.append(labels_to_affinities(augment(inside, choice))[interior])
    return np.stack(images)[:, None], np.stack(targets), np.stack(valid)

"""A toy labelled EM volume: Voronoi cells, bright inside, dark membranes between them."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from napari_segclr.io import Volume

SHAPE = (16, 32, 32)
VOXEL_NM = 10.0


def toy_cells(shape=SHAPE, *, cells: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Raw (uint8) and labels (uint32) of a volume tiled by random convex cells."""
    rng = np.random.default_rng(seed)
    seeds = rng.random((cells, 3)) * shape
    grid = np.stack(np.meshgrid(*map(np.arange, shape), indexing="ij"), -1).reshape(-1, 3)
    nearest = ((grid[:, None, :] - seeds[None]) ** 2).sum(-1).argmin(1)
    labels = (nearest + 1).reshape(shape).astype(np.uint32)
    membrane = ndimage.grey_dilation(labels, size=3) != ndimage.grey_erosion(labels, size=3)
    raw = np.where(membrane, 60.0, 190.0) + rng.normal(0, 12, shape)
    return np.clip(raw, 0, 255).astype(np.uint8), labels


@pytest.fixture(scope="session")
def toy() -> tuple[Volume, Volume]:
    raw, labels = toy_cells()
    return (
        Volume(raw, VOXEL_NM, source="toy raw"),
        Volume(labels, VOXEL_NM, kind="labels", source="toy labels"),
    )


@pytest.fixture(scope="session")
def unlabelled() -> Volume:
    raw, _ = toy_cells((24, 40, 40), cells=20, seed=1)
    return Volume(raw, VOXEL_NM, source="toy unlabelled")

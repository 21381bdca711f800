"""Small volumes for view tests."""

from __future__ import annotations

import numpy as np
import pytest

from napari_segclr.io import Dataset, Volume


def blob_dataset(
    shape: tuple[int, int, int] = (40, 48, 56),
    voxel_size: tuple[float, float, float] = (8.0, 8.0, 8.0),
    *,
    seed: int = 0,
    base_id: int = 2**60,
) -> Dataset:
    """Random uint8 EM and three adjacent box segments with huge ids (base_id + 1, 2, 3)."""
    rng = np.random.default_rng(seed)
    em = rng.integers(0, 256, shape, dtype=np.uint8)
    seg = np.zeros(shape, dtype=np.uint64)
    z, y, x = shape
    seg[: z // 2, :, : x // 2] = base_id + 1
    seg[: z // 2, :, x // 2 :] = base_id + 2
    seg[z // 2 :, : y // 2, :] = base_id + 3
    return Dataset(Volume(em, voxel_size), Volume(seg, voxel_size, kind="labels"))


@pytest.fixture(name="blobs")
def blobs_fixture() -> Dataset:
    return blob_dataset()

"""Toy cells with known labels, and small affinity networks that obey the model contract."""

from __future__ import annotations

from dataclasses import replace

import cc3d
import numpy as np
import pytest
import torch
from scipy import ndimage

from napari_segclr.mae import AffinityModel, get_preset, save_model

VOXEL_NM = (10.0, 10.0, 10.0)


def toy_labels(shape=(20, 28, 28), *, cells: int = 10, seed: int = 0) -> np.ndarray:
    """Random convex cells (uint64 ids 1..n), each one 6-connected piece."""
    rng = np.random.default_rng(seed)
    centres = rng.random((cells, 3)) * shape
    grid = np.stack(np.meshgrid(*map(np.arange, shape), indexing="ij"), -1)
    nearest = ((grid[..., None, :] - centres) ** 2).sum(-1).argmin(-1) + 1
    # discrete Voronoi cells may touch themselves only along an edge: make pieces explicit
    return cc3d.connected_components(nearest, connectivity=6).astype(np.uint64)


def membranes(labels: np.ndarray) -> np.ndarray:
    """Two voxels thick where ids change (a voxel with another id within one step)."""
    return ndimage.grey_dilation(labels, size=3) != ndimage.grey_erosion(labels, size=3)


def membrane_image(labels: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """EM-like uint8: bright cells, dark membranes, some noise."""
    noise = np.random.default_rng(seed).normal(0, 10, labels.shape)
    return np.clip(np.where(membranes(labels), 50.0, 200.0) + noise, 0, 255).astype(np.uint8)


class PointwiseModel(torch.nn.Module):
    """Affinities that depend on each voxel's intensity only: tiling cannot change them."""

    def __init__(self, patch_shape=(8, 12, 16), voxel_size_nm=VOXEL_NM) -> None:
        super().__init__()
        self.patch_shape = patch_shape
        self.voxel_size_nm = voxel_size_nm
        self.mix = torch.nn.Conv3d(1, 3, kernel_size=1)
        with torch.no_grad():
            self.mix.weight.copy_(torch.tensor([4.0, -3.0, 2.0]).view(3, 1, 1, 1, 1))
            self.mix.bias.copy_(torch.tensor([-2.0, 1.0, 0.0]))

    def normalise(self, raw: np.ndarray) -> np.ndarray:
        return np.asarray(raw, np.float32) / 255

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mix(x)


class MembraneModel(PointwiseModel):
    """A voxel belongs with its neighbour when both are bright (no membrane between them).

    At a tile's first plane the missing neighbour is taken to be the voxel itself,
    as a network's padding would: the tile edge is a little wrong, as in real networks.
    """

    def __init__(self, patch_shape=(12, 16, 16), voxel_size_nm=VOXEL_NM) -> None:
        super().__init__(patch_shape, voxel_size_nm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        links = []
        for axis in (2, 3, 4):
            back = torch.cat([x.narrow(axis, 0, 1), x.narrow(axis, 0, x.shape[axis] - 1)], axis)
            links.append(torch.minimum(x, back))
        return 20 * (torch.cat(links, 1) - 0.5)


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> str:
    """A tiny MAE affinity network with random weights, saved as a fine-tuning checkpoint."""
    path = tmp_path_factory.mktemp("model") / "affinity.pt"
    torch.manual_seed(0)
    config = replace(get_preset("tiny"), intensity_mean=128.0, intensity_std=50.0)
    save_model(path, AffinityModel(config), extra={})
    return str(path)


@pytest.fixture(scope="session")
def cells() -> np.ndarray:
    return toy_labels()


@pytest.fixture(scope="session")
def cell_image(cells) -> np.ndarray:
    return membrane_image(cells)


@pytest.fixture(scope="session")
def cell_interiors(cells) -> np.ndarray:
    """The cells' ids off their membranes, 0 on them (ground truth that scores ignore there)."""
    return np.where(membranes(cells), 0, cells)


@pytest.fixture
def pointwise_model() -> type[PointwiseModel]:
    return PointwiseModel


@pytest.fixture
def membrane_model() -> type[MembraneModel]:
    return MembraneModel


@pytest.fixture
def labelled_cells():
    """``toy_labels`` itself, for tests that need other shapes or seeds."""
    return toy_labels

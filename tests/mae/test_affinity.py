"""Affinity targets from labels, their loss, and the UNETR-style network's shapes."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from napari_segclr.mae import (
    AffinityModel,
    MAEConfig,
    affinity_loss,
    get_preset,
    labels_to_affinities,
    upsampling_factors,
)


def naive_affinities(labels: np.ndarray) -> np.ndarray:
    out = np.zeros((3, *labels.shape), dtype=np.uint8)
    for c, (z, y, x) in itertools.product(range(3), np.ndindex(labels.shape)):
        back = [z, y, x]
        back[c] -= 1
        if back[c] >= 0 and labels[z, y, x] != 0 and labels[z, y, x] == labels[tuple(back)]:
            out[c, z, y, x] = 1
    return out


def test_affinities_link_equal_nonzero_neighbours_backwards():
    labels = np.random.default_rng(0).integers(0, 3, (4, 5, 6)).astype(np.uint64) * 2**40
    assert np.array_equal(labels_to_affinities(labels), naive_affinities(labels))
    one = np.zeros((3, 3, 3), dtype=np.uint32)
    one[1:, 1, 1] = 7  # voxels (1,1,1) and (2,1,1) share an id along z
    affinities = labels_to_affinities(one)
    assert affinities[0, 2, 1, 1] == 1 and affinities.sum() == 1


def test_affinities_need_a_3d_array():
    with pytest.raises(ValueError, match="3D"):
        labels_to_affinities(np.zeros((4, 4)))


def test_loss_prefers_right_affinities_and_ignores_unknown_voxels():
    target = torch.from_numpy(
        labels_to_affinities(np.repeat(np.arange(4), 4)[None, None, :].repeat(4, 0).repeat(4, 1))
    )[None].float()
    valid = torch.ones_like(target)
    right = affinity_loss((target * 2 - 1) * 6, target, valid)
    wrong = affinity_loss((1 - target * 2) * 6, target, valid)
    guess = affinity_loss(torch.zeros_like(target), target, valid)
    assert right < 0.1 < guess < wrong
    # Voxels marked unknown do not count, whatever is predicted there.
    logits = (target * 2 - 1) * 6
    spoiled = logits.clone()
    valid[..., :2] = 0
    spoiled[..., :2] = -logits[..., :2]
    assert affinity_loss(spoiled, target, valid) == pytest.approx(
        affinity_loss(logits, target, valid).item()
    )


def test_upsampling_undoes_each_patch_side():
    assert upsampling_factors((4, 4, 4)) == [(2, 2, 2), (2, 2, 2)]
    assert upsampling_factors((2, 8, 8)) == [(2, 2, 2), (1, 2, 2), (1, 2, 2)]
    assert upsampling_factors((1, 2, 4)) == [(1, 2, 2), (1, 1, 2)]


@pytest.mark.parametrize(
    "config",
    [
        get_preset("tiny"),
        MAEConfig(
            tile_shape=(4, 32, 32),
            patch_shape=(2, 8, 8),
            voxel_size_nm=(40, 10, 10),
            hidden_size=24,
            num_layers=3,
            num_heads=2,
            mlp_dim=24,
            decoder_hidden_size=12,
            decoder_num_heads=2,
            feature_size=4,
        ),
    ],
    ids=["isotropic", "anisotropic"],
)
def test_network_maps_tiles_to_three_affinity_channels(config):
    torch.manual_seed(0)
    model = AffinityModel(config)
    assert model.patch_shape == config.tile_shape
    assert model.voxel_size_nm == config.voxel_size_nm
    x = torch.randn(2, 1, *config.tile_shape)
    out = model(x)
    assert out.shape == (2, 3, *config.tile_shape) and out.dtype == torch.float32
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)

"""Network and training configs: presets, round trips and one-line messages for bad shapes."""

from __future__ import annotations

import pytest

from napari_segclr.exceptions import ShapeMismatchError, VoxelSizeError
from napari_segclr.mae import (
    PRESETS,
    FinetuneConfig,
    MAEConfig,
    PretrainConfig,
    get_preset,
    normalise_intensity,
    patch_shape_for,
)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_are_valid_and_round_trip(name):
    config = get_preset(name)
    assert MAEConfig.from_dict(config.to_dict()) == config
    assert config.num_patches >= 32 and config.voxel_size_nm == (10.0, 10.0, 10.0)


def test_unknown_preset_names_the_choices():
    with pytest.raises(ValueError, match="base"):
        get_preset("huge")


def test_tile_not_divisible_by_patch_names_the_axis():
    with pytest.raises(ShapeMismatchError, match=r"not divisible .* along y"):
        MAEConfig(tile_shape=(32, 60, 64), patch_shape=(8, 8, 8))


def test_patch_sides_must_be_powers_of_two():
    with pytest.raises(ShapeMismatchError, match="powers of two"):
        MAEConfig(tile_shape=(24, 24, 24), patch_shape=(6, 6, 6))


def test_single_patch_tile_cannot_be_masked():
    with pytest.raises(ShapeMismatchError, match="single patch"):
        MAEConfig(tile_shape=(8, 8, 8), patch_shape=(8, 8, 8))


def test_anisotropic_patch_is_refused_with_the_patch_that_fits():
    with pytest.raises(VoxelSizeError, match=r"4× anisotropic.*use patch_shape \(2, 8, 8\)"):
        MAEConfig(voxel_size_nm=(40, 10, 10))
    config = MAEConfig(voxel_size_nm=(40, 10, 10), tile_shape=(8, 64, 64), patch_shape=(2, 8, 8))
    assert config.patch_nm == (80.0, 80.0, 80.0) and config.grid_shape == (4, 8, 8)


def test_anisotropy_no_patch_can_express_says_so():
    with pytest.raises(VoxelSizeError, match="resample the volume"):
        MAEConfig(voxel_size_nm=(200, 4, 4), tile_shape=(4, 32, 32), patch_shape=(1, 8, 8))


def test_patch_shape_for_voxel_sizes():
    assert patch_shape_for((40, 10, 10), patch_nm=80) == (2, 8, 8)
    assert patch_shape_for((30, 6, 6), patch_nm=60) == (2, 8, 8)
    assert patch_shape_for((10, 10, 10), patch_nm=80) == (8, 8, 8)
    assert patch_shape_for((500, 4, 4), patch_nm=32) is None


def test_widths_must_suit_position_embedding_and_heads():
    with pytest.raises(ValueError, match="hidden_size must be a multiple of 6"):
        MAEConfig(hidden_size=100, num_heads=4)
    with pytest.raises(ValueError, match="decoder_hidden_size"):
        MAEConfig(decoder_hidden_size=96, decoder_num_heads=5)
    with pytest.raises(ValueError, match="num_layers must be a positive integer"):
        MAEConfig(num_layers=0)


def test_intensity_normalisation():
    config = MAEConfig(intensity_mean=100, intensity_std=20)
    out = normalise_intensity([[[80, 140]]], config)
    assert out.dtype.name == "float32" and out.tolist() == [[[-1.0, 2.0]]]
    with pytest.raises(ValueError, match="unknown"):
        normalise_intensity([[[1]]], MAEConfig())
    with pytest.raises(ValueError, match="together"):
        MAEConfig(intensity_mean=1.0)
    with pytest.raises(ValueError, match="intensity_std must be a positive number"):
        MAEConfig(intensity_mean=1.0, intensity_std=0.0)


def test_training_configs_validate_and_round_trip():
    pre = PretrainConfig(model="tiny", mask_ratio=0.9, steps=10)
    assert PretrainConfig.from_dict(pre.to_dict()) == pre and pre.model == get_preset("tiny")
    tune = FinetuneConfig(model=None, dice_weight=0.5)
    assert FinetuneConfig.from_dict(tune.to_dict()) == tune
    with pytest.raises(ValueError, match="mask_ratio must be a number in"):
        PretrainConfig(mask_ratio=1.0)
    with pytest.raises(ValueError, match="hides 32 of the 32 patches"):
        PretrainConfig(model="tiny", mask_ratio=0.99)
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        PretrainConfig(steps=0)
    with pytest.raises(ValueError, match="schedule"):
        FinetuneConfig(schedule="step")
    with pytest.raises(ValueError, match="unknown training config keys"):
        PretrainConfig.from_dict({"masking": 0.5})


def test_learning_rate_warms_up_then_decays():
    config = PretrainConfig(model="tiny", steps=100, learning_rate=1e-3, warmup_fraction=0.1)
    rates = [config.learning_rate_at(k) for k in range(100)]
    assert rates[0] < rates[5] < rates[9] and max(rates) <= 1e-3
    assert rates[50] > rates[90] > rates[99] > 0

"""Model configs: presets, validation and the JSON round trip."""

from __future__ import annotations

import json

import pytest

from napari_segclr.exceptions import VoxelSizeError
from napari_segclr.model import PRESETS, ModelConfig, get_preset


def test_paper_preset_matches_the_published_network():
    cfg = get_preset("paper")
    assert cfg.view_shape == (129, 129, 129)
    assert cfg.voxel_size_nm == (32.0, 32.0, 32.0)
    assert cfg.stage_widths == (64, 128, 256, 512)
    assert cfg.stage_blocks == (2, 2, 2, 2)
    assert (cfg.embedding_dim, cfg.projection_dim, cfg.temperature) == (64, 16, 0.1)
    assert cfg.input_kinds == ("masked_em",)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_sees_about_four_microns(name):
    cfg = get_preset(name)
    assert all(3800 <= fov <= 4500 for fov in cfg.field_of_view_nm)
    assert cfg.embedding_dim == 64
    assert cfg.projection_dim == 16


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_config_round_trips_through_json(name):
    cfg = get_preset(name)
    again = ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    assert isinstance(again.view_shape, tuple)
    assert hash(again) == hash(cfg)


def test_missing_keys_take_defaults_and_lists_become_tuples():
    cfg = ModelConfig.from_dict({"input_kinds": ["em", "mask"], "view_shape": [33, 65, 65]})
    assert cfg.in_channels == 2
    assert cfg.input_kinds == ("em", "mask")
    assert cfg.view_shape == (33, 65, 65)
    assert cfg.stage_widths == (64, 128, 256, 512)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"view_shape": (65, 65)}, "view_shape"),
        ({"view_shape": (65, 0, 65)}, "view_shape"),
        ({"stage_widths": (32, 64, 128)}, "stage_widths"),
        ({"stage_blocks": (2, 2, 2, 2.5)}, "stage_blocks"),
        ({"embedding_hidden": ()}, "embedding_hidden"),
        ({"embedding_dim": 0}, "embedding_dim"),
        ({"projection_dim": True}, "projection_dim"),
        ({"input_kinds": ("raw",)}, "input_kinds"),
        ({"input_kinds": "masked_em"}, "input_kinds"),
        ({"input_kinds": ()}, "input_kinds"),
        ({"temperature": 0.0}, "temperature"),
        ({"colour": "blue"}, "unknown model config keys"),
    ],
)
def test_invalid_configs_are_rejected_naming_the_parameter(changes, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig.from_dict(changes)


def test_bad_voxel_size_is_a_voxel_size_error():
    with pytest.raises(VoxelSizeError, match="voxel_size_nm"):
        ModelConfig(voxel_size_nm=(32.0, -1.0, 32.0))


def test_one_voxel_size_means_isotropic():
    assert ModelConfig(voxel_size_nm=40).voxel_size_nm == (40.0, 40.0, 40.0)


def test_unknown_preset_lists_the_names():
    with pytest.raises(ValueError, match="paper, lite, tiny"):
        get_preset("huge")

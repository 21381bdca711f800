"""View specs: from model configs, validated, with the model's channel kinds."""

from __future__ import annotations

import numpy as np
import pytest

from napari_segclr.model import PRESETS
from napari_segclr.views import ViewSpec, as_view_spec, extract_views


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_give_their_views(name):
    config = PRESETS[name]
    spec = as_view_spec(config)
    assert spec.shape == config.view_shape and spec.voxel_size_nm == config.voxel_size_nm
    assert spec.input_kinds == config.input_kinds and spec.in_channels == config.in_channels
    assert spec.field_of_view_nm == config.field_of_view_nm
    assert spec.needs_em and spec.needs_segmentation


def test_specs_are_validated():
    assert ViewSpec((3, 5, 7), (40, 8, 8), ("em",)).voxel_size_nm == (40.0, 8.0, 8.0)
    with pytest.raises(ValueError, match="view shape"):
        ViewSpec((3, 5), 8.0)
    with pytest.raises(ValueError, match="input_kinds"):
        ViewSpec((3, 3, 3), 8.0, ("membranes",))
    with pytest.raises(ValueError, match="voxel size"):
        ViewSpec((3, 3, 3), -8.0)
    with pytest.raises(TypeError, match="ViewSpec or a ModelConfig"):
        as_view_spec("lite")


def test_no_centres_give_no_views(blobs):
    views = extract_views(blobs, np.zeros(0, np.uint64), np.zeros((0, 3)), PRESETS["tiny"])
    assert views.shape == (0, 1, 17, 17, 17)

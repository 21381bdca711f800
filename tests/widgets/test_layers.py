"""The plugin's own overlay layers are never offered as data to work on."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from napari.layers import Image, Labels

from napari_segclr.widgets._layers import NODES_LAYER, SELECTION_LAYER, layer_choices


def test_overlays_are_left_out_of_the_choices():
    labels = np.zeros((2, 4, 4), np.uint32)
    viewer = SimpleNamespace(
        layers=[
            Image(np.zeros((2, 4, 4)), name="EM"),
            Labels(labels, name="segmentation"),
            Labels(labels, name=SELECTION_LAYER),
            Labels(labels, name=NODES_LAYER),
        ]
    )
    assert layer_choices(viewer, Labels)() == ["segmentation"]
    assert layer_choices(viewer, Image)() == ["EM"]

"""The Segment volume dock widget in a real napari window, with a tiny affinity network."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from napari.utils.notifications import notification_manager

from napari_segclr.mae import AffinityModel, get_preset, save_model
from napari_segclr.widgets.segment import SegmentWidget

pytestmark = pytest.mark.gui


@pytest.fixture
def checkpoint(tmp_path) -> str:
    """A tiny affinity network (8 × 16 × 16 tiles at 10 nm) with random weights."""
    torch.manual_seed(0)
    config = replace(get_preset("tiny"), intensity_mean=128.0, intensity_std=50.0)
    path = tmp_path / "affinity.pt"
    save_model(path, AffinityModel(config), extra={})
    return str(path)


def _image(shape) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)


def _dock(viewer) -> SegmentWidget:
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Segment volume")
    return widget


def test_segments_an_image_layer_into_labels(make_napari_viewer, qtbot, checkpoint):
    viewer = make_napari_viewer()
    widget = _dock(viewer)
    assert widget.image.value is None
    viewer.add_image(np.zeros((4, 5), np.uint8), name="flat")  # 2D: not offered
    image = viewer.add_image(_image((12, 20, 24)), name="em", scale=(10, 10, 10),
                             translate=(100, 0, -30))  # fmt: skip
    assert widget.image.value is image and len(widget.image.choices) == 1
    widget.checkpoint.value = checkpoint
    widget.threshold.value = 0.4
    widget.segment()  # in a worker, as a click does
    qtbot.waitUntil(lambda: "em segmentation" in viewer.layers, timeout=60_000)
    labels = viewer.layers["em segmentation"]
    assert labels.__class__.__name__ == "Labels" and labels.data.dtype == np.uint64
    assert labels.data.shape == (12, 20, 24) and labels.data.min() >= 1
    assert tuple(labels.scale) == (10, 10, 10) and tuple(labels.translate) == (100, 0, -30)
    assert viewer.layers.selection.active is labels
    qtbot.waitUntil(lambda: widget.run_button.enabled, timeout=10_000)
    assert widget.status.value == f"{labels.data.max()} segments"


def test_cancel_stops_and_adds_nothing(make_napari_viewer, qtbot, checkpoint):
    viewer = make_napari_viewer()
    widget = _dock(viewer)
    viewer.add_image(_image((48, 96, 96)), name="em", scale=(10, 10, 10))
    widget.checkpoint.value = checkpoint
    widget.segment()
    assert widget.cancel_button.enabled and not widget.run_button.enabled
    widget.cancel_button.clicked.emit()
    qtbot.waitUntil(lambda: widget.run_button.enabled, timeout=60_000)
    assert len(viewer.layers) == 1
    assert "cancelled" in str(notification_manager.records[-1].message)


def test_bad_input_is_a_notification(make_napari_viewer, checkpoint, tmp_path):
    viewer = make_napari_viewer()
    widget = _dock(viewer)
    before = len(notification_manager.records)
    widget.segment()  # no image
    viewer.add_image(_image((8, 16, 16)), name="unscaled")  # scale 1: not 10 nm voxels
    widget.checkpoint.value = tmp_path / "missing.pt"
    widget.segment()
    widget.checkpoint.value = checkpoint
    widget.segment(background=False)
    messages = [str(n.message) for n in notification_manager.records[before:]]
    assert len(messages) == 3, messages
    assert "image layer" in messages[0]
    assert "missing.pt does not exist" in messages[1]
    assert "layer 'unscaled'" in messages[2] and "differs from the model's" in messages[2]
    assert len(viewer.layers) == 1 and widget.run_button.enabled

"""The loader dock widget, the sample and the reader, in a real napari window."""

from __future__ import annotations

import numpy as np
import pytest
from napari.utils.notifications import notification_manager

from napari_segclr.widgets.loader import LoaderWidget

pytestmark = pytest.mark.gui


def _dock_loader(viewer) -> LoaderWidget:
    _, widget = viewer.window.add_plugin_dock_widget("napari-segclr", "Loader")
    assert isinstance(widget, LoaderWidget)
    return widget


def _assert_not_blank(shot: np.ndarray) -> None:
    rgb = shot[..., :3].reshape(-1, 3)
    assert rgb.std() > 10
    assert len(np.unique(rgb[:: max(1, len(rgb) // 20000)], axis=0)) > 50


def test_loader_docks_and_loads_sample(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    widget = _dock_loader(viewer)
    widget.load_sample(seed=0)  # in a worker, as a user's click does
    qtbot.waitUntil(lambda: len(viewer.layers) >= 2, timeout=120_000)
    em, seg = viewer.layers["EM"], viewer.layers["segmentation"]
    assert em.data.ndim == 3 and em.data.dtype == np.uint8
    assert seg.data.dtype == np.uint64 and tuple(seg.scale) == tuple(em.scale)
    assert {"index", "cell_type"} <= set(seg.features.columns)
    assert widget.open_button.enabled and not widget.cancel_button.enabled
    viewer.dims.set_current_step(0, em.data.shape[0] // 2)
    shot = viewer.screenshot(str(tmp_path / "loader.png"), canvas_only=False)
    _assert_not_blank(shot)
    assert (tmp_path / "loader.png").stat().st_size > 10_000


def test_loader_opens_real_files(make_napari_viewer, shared_data):
    viewer = make_napari_viewer()
    widget = _dock_loader(viewer)
    widget.em_path.value = shared_data / "gala" / "train_raw.tif"
    widget.seg_path.value = shared_data / "gala" / "train_gt.tif"
    widget.em_voxel_size.nm = widget.seg_voxel_size.nm = (10.0, 10.0, 10.0)
    widget.open_files(background=False)
    raw, gt = viewer.layers["train_raw.tif"], viewer.layers["train_gt.tif"]
    assert raw.data.shape == (50, 100, 200) and tuple(raw.scale) == (10.0, 10.0, 10.0)
    assert gt.__class__.__name__ == "Labels"


def test_loader_reports_bad_input_without_traceback(make_napari_viewer, tmp_path, shared_data):
    viewer = make_napari_viewer()
    widget = _dock_loader(viewer)
    before = len(notification_manager.records)
    widget.em_path.value = tmp_path / "missing.tif"
    widget.open_files(background=False)
    widget.em_path.value = shared_data / "gala" / "train_raw.tif"  # no voxel size in the file
    widget.open_files(background=False)
    messages = [str(n.message) for n in notification_manager.records[before:]]
    assert len(messages) == 2, messages
    assert "missing.tif" in messages[0]
    assert "voxel size" in messages[1] and "train_raw.tif" in messages[1]
    assert len(viewer.layers) == 0


def test_sample_and_reader_contributions(make_napari_viewer, shared_data):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-segclr", "neuropil")
    assert {"EM", "segmentation"} <= {layer.name for layer in viewer.layers}
    viewer.layers.clear()
    viewer.open(str(shared_data / "fib25" / "sample2_labels_z000-159.tif"), plugin="napari-segclr")
    (labels,) = viewer.layers
    assert labels.__class__.__name__ == "Labels" and labels.data.shape == (160, 250, 250)


def test_cancel_stops_the_sample_and_adds_nothing(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    widget = _dock_loader(viewer)
    widget.load_sample(seed=1)
    assert widget.cancel_button.enabled
    widget.cancel_button.clicked.emit()
    qtbot.waitUntil(lambda: widget.sample_button.enabled, timeout=120_000)
    assert len(viewer.layers) == 0
    assert "cancelled" in str(notification_manager.records[-1].message)


def test_demo_command_saves_a_screenshot(qtbot, tmp_path):
    from skimage.io import imread

    from napari_segclr.cli import main

    out = tmp_path / "demo.png"
    assert main(["demo", "--screenshot", str(out)]) == 0
    _assert_not_blank(imread(out))

"""The Train widget in a napari window: train, watch the loss, cancel, resume, hand over."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from napari.utils.notifications import notification_manager

from napari_segclr.model import SegclrModel, get_preset, load_checkpoint, model_signature
from napari_segclr.model import save_checkpoint as save_model
from napari_segclr.runs import loss_log_path, read_log
from napari_segclr.synthetic import Neuropil, NeuropilConfig, render_all
from napari_segclr.widgets.annotate import CHECKPOINT, AnnotateWidget
from napari_segclr.widgets.train import LAYERS, SYNTHETIC, TrainWidget

pytestmark = pytest.mark.gui

VOXEL = 128.0


def _dock(viewer, checkpoint: Path, *, steps: int, every: int) -> TrainWidget:
    widget = TrainWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Train")
    widget.preset.value = "tiny"
    widget.steps.value = steps
    widget.batch_size.value = 4
    widget.checkpoint_every.value = every
    widget.device.value = "cpu"
    widget.checkpoint.value = checkpoint
    return widget


def _messages(since: int) -> list[str]:
    return [str(n.message) for n in notification_manager.records[since:]]


def test_train_cancel_resume_and_hand_over(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    annotate = AnnotateWidget(viewer)
    viewer.window.add_dock_widget(annotate, name="Annotate")
    path = tmp_path / "model.pt"
    widget = _dock(viewer, path, steps=500, every=2)
    widget.source.value = SYNTHETIC
    assert not widget.synthetic_size.native.isHidden() and widget.em_layer.native.isHidden()
    widget.synthetic_size.value, widget.synthetic_voxel.value = 40, VOXEL

    widget.train()  # in a worker, as the button does
    assert widget.cancel_button.enabled and not widget.train_button.enabled
    qtbot.waitUntil(lambda: len(widget.loss_plot.losses) >= 3, timeout=300_000)
    assert "step" in widget.status.value and "loss" in widget.status.value
    widget.cancel_button.clicked.emit()
    qtbot.waitUntil(lambda: widget.train_button.enabled, timeout=300_000)
    _, extra = load_checkpoint(path)
    stopped = int(widget.loss_plot.steps[-1])
    assert 2 <= extra["step"] <= stopped and extra["step"] % 2 == 0
    assert f"holds step {extra['step']}" in widget.status.value and "Resume" in widget.status.value
    assert annotate.checkpoint.value != path  # nothing handed over from a cancelled run

    before = len(notification_manager.records)
    widget.train(background=False)  # the checkpoint exists: only a resume may continue it
    assert "tick Resume" in _messages(before)[-1]
    widget.resume.value = True
    widget.steps.value = extra["step"] + 3
    widget.train(background=False)
    _, done = load_checkpoint(path)
    assert done["step"] == extra["step"] + 3
    log = read_log(loss_log_path(path))
    np.testing.assert_array_equal(log["step"], np.arange(1, done["step"] + 1))
    np.testing.assert_array_equal(widget.loss_plot.steps, log["step"])
    np.testing.assert_allclose(widget.loss_plot.losses, log["loss"], rtol=1e-5)
    assert np.isfinite(widget.loss_plot.losses).all()
    assert f"trained {done['step']} steps" in widget.status.value

    # the Annotate widget (no session open) now embeds with the new checkpoint
    assert annotate.model_source.value == CHECKPOINT and Path(annotate.checkpoint.value) == path
    assert "Annotate widget" in _messages(before)[-1]
    image = widget.loss_plot.grab().toImage()
    assert image.width() > 100 and image.height() >= 110


def test_train_on_the_open_layers_reopens_the_annotate_session(make_napari_viewer, qtbot, tmp_path):
    config = NeuropilConfig(shape=(24, 40, 40), voxel_size=VOXEL, seed=5)
    crop = render_all(Neuropil(config))
    viewer = make_napari_viewer()
    viewer.add_image(crop.em, name="EM", scale=(VOXEL,) * 3)
    viewer.add_labels(crop.segmentation, name="segmentation", scale=(VOXEL,) * 3)
    torch.manual_seed(0)
    start = tmp_path / "start.pt"
    save_model(start, SegclrModel(get_preset("tiny")), extra={})
    annotate = AnnotateWidget(viewer)
    viewer.window.add_dock_widget(annotate, name="Annotate")
    annotate.em_layer.value, annotate.seg_layer.value = "EM", "segmentation"
    annotate.model_source.value = CHECKPOINT
    annotate.checkpoint.value = start
    annotate.device.value = "cpu"
    annotate.folder.value = tmp_path / "session"
    annotate.open_session(background=False)
    old = annotate.session
    assert old is not None

    path = tmp_path / "trained.pt"
    widget = _dock(viewer, path, steps=2, every=1)
    assert widget.source.value == LAYERS and not widget.em_layer.native.isHidden()
    widget.em_layer.value, widget.seg_layer.value = "EM", "segmentation"
    widget.train(background=False)
    model, extra = load_checkpoint(path)
    assert extra["step"] == 2 and extra["data"][0]["kind"] == "volumes"
    assert len(widget.loss_plot.losses) == 2
    # the session was opened again (in a worker) with the trained model
    assert Path(annotate.checkpoint.value) == path

    def reopened() -> bool:
        return annotate.session is not None and annotate.session is not old

    qtbot.waitUntil(reopened, timeout=120_000)
    assert annotate.session.model_signature == model_signature(model)


def test_bad_choices_are_notifications(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    _, docked = viewer.window.add_plugin_dock_widget("napari-segclr", "Train")
    assert isinstance(docked, TrainWidget) and docked.checkpoint.value.suffix == ".pt"
    widget = _dock(viewer, tmp_path / "model.pt", steps=2, every=1)
    before = len(notification_manager.records)
    widget.train(background=False)  # no layers to train on
    assert "Labels layer" in _messages(before)[-1]
    widget.source.value = SYNTHETIC
    widget.synthetic_size.value, widget.synthetic_voxel.value = 16, VOXEL
    if not torch.cuda.is_available():
        widget.device.value = "cuda"
        widget.train(background=False)
        assert "CUDA" in _messages(before)[-1]
    assert not (tmp_path / "model.pt").exists() and widget.train_button.enabled

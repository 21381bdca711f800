"""The Annotate widget in a real napari window: click, predict, label by key, reopen, bad input."""

from __future__ import annotations

import contextlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from napari.utils.colormaps import DirectLabelColormap
from napari.utils.notifications import notification_manager

from napari_segclr.model import ModelConfig, SegclrModel, get_preset, save_checkpoint
from napari_segclr.session import CELL_TYPE, COMPARTMENT
from napari_segclr.synthetic import Neuropil, NeuropilConfig, render_all, sample_neuropil
from napari_segclr.widgets.annotate import (
    CHECKPOINT,
    NODES_LAYER,
    AnnotateWidget,
    viewer_session,
)

pytestmark = pytest.mark.gui

VOXEL = 32.0


@pytest.fixture(scope="module")
def scene():
    """A 1.5 × 4 × 4 µm neuropil at 32 nm and five mid-sized segments (id, central voxel).

    Mid-sized (5,000–13,000 voxels): a few nodes each, so a click embeds in about a second.
    """
    config = NeuropilConfig(
        shape=(48, 128, 128), voxel_size=VOXEL, seed=0, offset=sample_neuropil(0).config.offset
    )
    crop = render_all(Neuropil(config))
    ids, counts = np.unique(crop.segmentation, return_counts=True)
    mid = (counts >= 5000) & (counts <= 13000) & (ids != 0)
    largest = [int(s) for s in ids[mid][np.argsort(-counts[mid])]][:5]
    segments = []
    for sid in largest:
        voxels = np.argwhere(crop.segmentation == sid)
        middle = voxels[np.argmin(np.linalg.norm(voxels - voxels.mean(axis=0), axis=1))]
        segments.append((sid, tuple(int(v) for v in middle)))
    return crop.em, crop.segmentation, np.asarray(config.offset), segments


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_checkpoint(path, SegclrModel(get_preset("tiny")), extra={})
    return path


def _open(viewer, scene, checkpoint: Path, folder: Path, seg=None) -> AnnotateWidget:
    em, segmentation, offset, _ = scene
    common = {"scale": (VOXEL,) * 3, "translate": tuple(offset)}
    viewer.add_image(em, name="EM", contrast_limits=(0, 255), **common)
    viewer.add_labels(segmentation if seg is None else seg, name="segmentation", **common)
    widget = AnnotateWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Annotate")
    widget.em_layer.value, widget.seg_layer.value = "EM", "segmentation"
    widget.model_source.value = CHECKPOINT
    widget.checkpoint.value = checkpoint
    widget.device.value = "cpu"
    widget.folder.value = folder
    widget.target.value = COMPARTMENT
    return widget


def _world(scene, voxel) -> tuple[float, ...]:
    return tuple(scene[2] + VOXEL * np.asarray(voxel, float))


def _click(viewer, widget, scene, index: int) -> int:
    sid, voxel = scene[3][index]
    viewer.dims.point = _world(scene, voxel)
    widget.click_at(_world(scene, voxel), background=False)
    return sid


def _press(viewer, key: str) -> None:
    """A key press on the canvas, through napari's own key map."""
    viewer.window._qt_viewer.canvas._key_map_handler.press_key(key)


def _shot(viewer, path: Path) -> np.ndarray:
    shot = viewer.screenshot(str(path), canvas_only=False)
    rgb = shot[..., :3].reshape(-1, 3)
    assert rgb.std() > 10
    assert len(np.unique(rgb[:: max(1, len(rgb) // 20000)], axis=0)) > 50
    return shot


def _messages(since: int) -> list[str]:
    return [str(n.message) for n in notification_manager.records[since:]]


def test_click_label_by_key_learn_and_reopen(make_napari_viewer, scene, checkpoint, tmp_path):
    viewer = make_napari_viewer()
    folder = tmp_path / "session"
    widget = _open(viewer, scene, checkpoint, folder)
    layer = viewer.layers["segmentation"]
    first = _click(viewer, widget, scene, 0)
    session = viewer_session(viewer)
    assert session is widget.session and session.selected == (first,) and first in session
    assert "label at least two classes" in widget.answer.value
    assert f"segment {first}" in widget.answer.value
    assert first in layer.features["index"].tolist()
    _shot(viewer, tmp_path / "clicked.png")

    viewer.layers.selection.active = layer
    _press(viewer, "1")  # axon
    second = _click(viewer, widget, scene, 1)
    _press(viewer, "2")  # dendrite: two classes, the head fits
    assert session.annotation(first, COMPARTMENT) == "axon"
    assert session.annotation(second, COMPARTMENT) == "dendrite"
    features = layer.features.set_index("index")
    assert features.loc[first, "predicted_compartment"] in ("axon", "dendrite")
    assert 0.5 <= features.loc[second, "compartment_confidence"] <= 1
    assert np.isfinite(features.loc[second, "compartment_entropy"])
    assert "entropy" in widget.answer.value and "Dempster–Shafer" in widget.answer.value
    assert isinstance(layer.colormap, DirectLabelColormap)
    colour = layer.colormap.color_dict[first]
    assert colour[3] > 0 and not np.allclose(colour[:3], 0.6)
    points = viewer.layers[NODES_LAYER]
    assert len(points.data) == len(session.table) and points.face_color[:, 3].min() > 0
    before = features["p_compartment_axon"].to_numpy()
    viewer.dims.point = _world(scene, scene[3][1][1])
    _shot(viewer, tmp_path / "predictions.png")

    third = _click(viewer, widget, scene, 2)
    _press(viewer, "1")
    after = layer.features.set_index("index").loc[features.index, "p_compartment_axon"]
    assert not np.allclose(before, after.to_numpy())  # the head learnt the third label
    assert session.annotation(third, COMPARTMENT) == "axon"
    widget.undo_button.clicked.emit()
    assert session.annotation(third, COMPARTMENT) == ""
    _press(viewer, "1")
    widget.target.value = CELL_TYPE
    assert "pyramidal" in widget.classes.value and widget.radius.enabled

    # labels reach the disk at once: a new window on the same folder has them
    widget.close()
    viewer.close()
    viewer = make_napari_viewer()
    widget = _open(viewer, scene, checkpoint, folder)
    again = _click(viewer, widget, scene, 0)
    assert again == first and widget.session.annotation(first, COMPARTMENT) == "axon"
    assert len(widget.session.annotations) == 3
    assert widget.session.head(COMPARTMENT) is not None  # refitted from the saved labels
    assert "labelled <b>axon</b>" in widget.answer.value
    assert "axon" in widget.status.value


def test_next_most_uncertain_moves_there(make_napari_viewer, scene, checkpoint, tmp_path):
    viewer = make_napari_viewer()
    widget = _open(viewer, scene, checkpoint, tmp_path / "session")
    for index, key in ((0, 1), (1, 2), (3, 1)):
        _click(viewer, widget, scene, index)
        widget.label_key(key, background=False)
    _click(viewer, widget, scene, 4)  # embedded, unlabelled
    _click(viewer, widget, scene, 2)  # embedded, unlabelled, selected: not proposed
    session = widget.session
    expected = session.next_uncertain(COMPARTMENT)
    chosen = widget.next_uncertain()
    assert chosen == expected == scene[3][4][0]
    assert session.selected == (chosen,) and session.annotation(chosen, COMPARTMENT) == ""
    center = session.segment_center_nm(chosen)
    np.testing.assert_allclose(viewer.dims.point, center, atol=VOXEL)
    original = widget._original_colormap
    widget.color_segments.value = False  # the layer's own colours come back
    assert viewer.layers["segmentation"].colormap is original
    viewer.layers.remove("segmentation")  # no segmentation: no session, no markers
    assert widget.session is None and NODES_LAYER not in viewer.layers


def test_embed_in_view_embeds_what_is_on_screen(make_napari_viewer, scene, checkpoint, tmp_path):
    viewer = make_napari_viewer()
    widget = _open(viewer, scene, checkpoint, tmp_path / "session")
    sid, voxel = scene[3][0]
    viewer.dims.point = _world(scene, voxel)
    viewer.scene.camera.center = _world(scene, voxel)[1:]
    viewer.scene.camera.zoom = 2.0  # a few hundred nm on screen
    viewer.window._qt_viewer.canvas.on_draw(None)  # a hidden window draws only when asked
    widget.embed_in_view(background=False)
    session = widget.session
    on_screen = session.segments_in_box(*_view_box(viewer))
    assert sid in on_screen and 1 <= len(np.unique(session.table.segment_id)) <= len(on_screen)
    assert set(np.unique(session.table.segment_id).tolist()) <= set(on_screen)


def _view_box(viewer):
    from napari_segclr.widgets.annotate import _view_box_nm

    return _view_box_nm(viewer, viewer.layers["segmentation"])


def test_bad_input_is_a_notification(make_napari_viewer, scene, checkpoint, tmp_path):
    viewer = make_napari_viewer()
    before = len(notification_manager.records)
    widget = AnnotateWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Annotate")
    widget.click_at((0.0, 0.0, 0.0), background=False)  # no segmentation at all
    assert "no segmentation" in _messages(before)[-1]

    _, segmentation, _, segments = scene
    speck = segmentation.copy()
    empty = np.argwhere(segmentation[8:-8, 8:-8, 8:-8] == 0)[0] + 8  # inside the volume
    speck[tuple(empty)] = 424242
    widget.close()
    viewer.layers.clear()
    widget = _open(viewer, scene, checkpoint, tmp_path / "session", seg=speck)
    widget.click_at(_world(scene, empty), background=False)  # too small to skeletonise
    background = np.argwhere(speck == 0)[0]
    widget.click_at(_world(scene, background))
    messages = _messages(before)
    assert any("424242" in m and "min_volume" in m for m in messages), messages
    assert "background" in messages[-1]

    fine = tmp_path / "fine.pt"
    config = ModelConfig(view_shape=(9, 9, 9), voxel_size_nm=2.0, stage_widths=(4,) * 4)
    save_checkpoint(fine, SegclrModel(config), extra={})
    widget.checkpoint.value = fine
    widget.click_at(_world(scene, segments[0][1]), background=False)  # views far finer than data
    assert "finer" in _messages(before)[-1] and widget.session is None

    widget.model_source.value = "shipped lite"
    widget.open_session(background=False)
    from napari_segclr.model.shipped import shipped_checkpoint_path, shipped_head_paths

    if not shipped_checkpoint_path().is_file():
        assert "shipped" in _messages(before)[-1] and widget.model_source.value == CHECKPOINT
    else:  # the shipped heads answer before any label
        for target, path in shipped_head_paths().items():
            assert path.name in widget.session.status(target)
    widget.label_key(1)  # the model changed: no session, nothing selected
    assert "select a segment" in _messages(before)[-1]


def test_ctrl_click_picks_and_drags_do_not(make_napari_viewer, monkeypatch):
    viewer = make_napari_viewer()
    widget = AnnotateWidget(viewer)
    picked = []
    monkeypatch.setattr(widget, "click_at", lambda position, **kw: picked.append(position))

    def press(modifiers, *, moves=()):
        event = SimpleNamespace(
            type="mouse_press",
            modifiers=modifiers,
            pos=(100, 100),
            position=(1.0, 2.0, 3.0),
            view_direction=None,
            dims_displayed=(1, 2),
        )
        callback = widget._on_mouse(viewer, event)  # napari's generator protocol
        with contextlib.suppress(StopIteration):
            next(callback)
            for pos in moves:
                event.type, event.pos = "mouse_move", pos
                next(callback)
            event.type = "mouse_release"
            next(callback)

    press(())  # a plain click paints or pans: not a pick
    press(("Control",), moves=[(101, 100)])  # a tremble is still a click
    press(("Control",), moves=[(140, 100)])  # a drag is not
    widget.pick_mode.value = True
    press(())
    assert picked == [(1.0, 2.0, 3.0)] * 2
    assert widget._on_mouse in viewer.mouse_drag_callbacks

"""The UMAP view in a napari window: fit, lasso → selection in the viewer and back, new points."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from qtpy.QtCore import QPoint
from scipy.spatial import ConvexHull

from napari_segclr.embedding_map import NO_CLASS_COLOR, UmapSettings
from napari_segclr.model import SegclrModel, get_preset, save_checkpoint
from napari_segclr.overlays import class_colors
from napari_segclr.session import COMPARTMENT
from napari_segclr.store import EmbeddingTable
from napari_segclr.synthetic import Neuropil, NeuropilConfig, render_all
from napari_segclr.widgets.annotate import CHECKPOINT, AnnotateWidget
from napari_segclr.widgets.umap_view import (
    HIGHLIGHT,
    LASSO,
    RECTANGLE,
    SEGMENTS,
    SELECTION_LAYER,
    UmapViewWidget,
)

pytestmark = pytest.mark.gui

VOXEL = 64.0
CLASSES = ("axon", "dendrite", "soma")
NODES_PER_SEGMENT = 8


@pytest.fixture(scope="module")
def scene():
    """A 2 × 4 × 4 µm neuropil at 64 nm and its 15 largest segments, 5 per made-up class."""
    config = NeuropilConfig(shape=(32, 64, 64), voxel_size=VOXEL, seed=2)
    crop = render_all(Neuropil(config))
    ids, counts = np.unique(crop.segmentation, return_counts=True)
    largest = ids[ids != 0][np.argsort(-counts[ids != 0])][:15]
    return crop.em, crop.segmentation, {int(s): CLASSES[i % 3] for i, s in enumerate(largest)}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_checkpoint(path, SegclrModel(get_preset("tiny")), extra={})
    return path


def _table(segments: dict[int, str], dim: int, seed: int) -> EmbeddingTable:
    """Embedded nodes for these segments: one well-separated cluster per class."""
    rng = np.random.default_rng(seed)
    centre = {name: 10.0 * np.eye(dim)[i] for i, name in enumerate(CLASSES)}
    ids = np.repeat(np.array(list(segments), np.uint64), NODES_PER_SEGMENT)
    x = np.array([centre[segments[int(s)]] for s in ids]) + rng.normal(size=(len(ids), dim))
    nodes = np.tile(np.arange(NODES_PER_SEGMENT), len(segments))
    positions = rng.uniform(0, 2000, (len(ids), 3))
    return EmbeddingTable(ids, nodes, positions, x.astype(np.float32))


def _viewer_with_session(make_napari_viewer, scene, checkpoint, folder, *, show=False):
    """A viewer with EM, segmentation, an Annotate widget whose session holds 12 segments.

    Only a shown window sizes the plot's canvas (mouse positions, pixels), but
    workers must not run in one: napari's progress bar, made in the worker,
    processes GUI events there and may draw a canvas off the GUI thread.
    """
    em, segmentation, segments = scene
    viewer = make_napari_viewer(show=show)
    viewer.add_image(em, name="EM", scale=(VOXEL,) * 3)
    viewer.add_labels(segmentation, name="segmentation", scale=(VOXEL,) * 3)
    annotate = AnnotateWidget(viewer)
    viewer.window.add_dock_widget(annotate, name="Annotate")
    annotate.em_layer.value, annotate.seg_layer.value = "EM", "segmentation"
    annotate.model_source.value = CHECKPOINT
    annotate.checkpoint.value = checkpoint
    annotate.device.value = "cpu"
    annotate.folder.value = folder
    annotate.target.value = COMPARTMENT
    annotate.open_session(background=False)
    session = annotate.session
    first = dict(list(segments.items())[:12])
    session.add_embeddings(_table(first, session.store.dim, seed=0))
    for name in CLASSES:  # two labelled segments per class: the head predicts
        labelled = [s for s, c in first.items() if c == name][:2]
        session.label(labelled, name, target=COMPARTMENT)
    return viewer, annotate, session


def _dock(viewer) -> UmapViewWidget:
    widget = UmapViewWidget(viewer, settings=UmapSettings(n_neighbors=10, n_epochs=30))
    viewer.window.add_dock_widget(widget, name="UMAP view")
    return widget


def _hull(xy: np.ndarray, margin: float) -> np.ndarray:
    """A polygon around points, pushed out from their centre by ``margin``."""
    hull = xy[ConvexHull(xy).vertices]
    centre = hull.mean(axis=0)
    away = (hull - centre) / np.linalg.norm(hull - centre, axis=1, keepdims=True)
    return hull + margin * away


def _near(image: np.ndarray, pixel: np.ndarray, color, radius: int = 4) -> bool:
    """Whether a pixel of ``color`` lies within ``radius`` px of ``pixel`` (x, y)."""
    x, y = np.round(pixel).astype(int)
    patch = image[max(y - radius, 0) : y + radius + 1, max(x - radius, 0) : x + radius + 1, :3]
    target = 255 * np.asarray(color[:3])
    return bool((np.abs(patch.astype(float) - target).max(axis=2) < 40).any())


def test_lasso_selects_segments_and_the_viewer_selection_shows_in_the_plot(
    make_napari_viewer, scene, checkpoint, tmp_path
):
    viewer, annotate, session = _viewer_with_session(
        make_napari_viewer, scene, checkpoint, tmp_path / "session", show=True
    )
    _, _, segments = scene
    widget = _dock(viewer)
    assert widget.session is session  # found through the Annotate widget
    assert "Press Fit" in widget.status.value
    widget.fit(background=False)
    umap_map = widget.map
    assert umap_map is not None and len(umap_map.points) == 12 * NODES_PER_SEGMENT
    assert widget.fit_button.text == "Refit UMAP" and "fitted to 96" in widget.status.value

    # lasso the axon cluster: exactly the axon segments become the session's selection
    points = umap_map.points
    axon = np.array([segments[int(s)] == "axon" for s in points.segment_id])
    ids = widget.select_polygon(_hull(points.xy[axon], margin=0.3))
    expected = sorted(s for s in np.unique(points.segment_id[axon]).tolist())
    assert ids.tolist() == expected and sorted(session.selected) == expected
    np.testing.assert_array_equal(widget.highlighted_rows, np.flatnonzero(axon))
    assert f"segment {session.selected[-1]}" in annotate.answer.value  # the panel follows
    overlay = viewer.layers[SELECTION_LAYER]
    assert overlay.visible and overlay.data is viewer.layers["segmentation"].data
    np.testing.assert_allclose(overlay.get_color(expected[0]), HIGHLIGHT)
    other = next(s for s, c in segments.items() if c == "soma")
    assert overlay.get_color(other) is None or overlay.get_color(other)[3] == 0
    assert viewer.layers.selection.active is not overlay

    # the same lasso drawn with the mouse on the canvas, with Shift adding the soma cluster
    soma = np.array([segments[int(s)] == "soma" for s in points.segment_id])
    _drag(widget, _hull(points.xy[soma], margin=0.3), shift=True)
    both = sorted(np.unique(points.segment_id[axon | soma]).tolist())
    assert sorted(session.selected) == both

    # a segment selected in the viewer (a Ctrl-click) lights up its points in the plot
    clicked = int(points.segment_id[~axon & ~soma][0])
    session.select_segments([clicked])
    rows = np.flatnonzero(points.segment_id == clicked)
    np.testing.assert_array_equal(widget.highlighted_rows, rows)
    np.testing.assert_allclose(overlay.get_color(clicked), HIGHLIGHT)
    image = widget.plot.render()
    assert _near(image, widget.plot.to_screen(points.xy[rows[0]]), HIGHLIGHT)
    _assert_not_blank(image)

    # a rectangle, and a click on empty space clears the selection
    widget.drag_mode.value = RECTANGLE
    lo, hi = points.xy[soma].min(axis=0) - 0.2, points.xy[soma].max(axis=0) + 0.2
    _drag(widget, np.array([lo, hi]))
    assert set(session.selected) >= set(np.unique(points.segment_id[soma]).tolist())
    far = points.xy.max(axis=0) + 50 * (points.xy.max(axis=0) - points.xy.min(axis=0))
    widget.plot.camera.rect = (far[0] - 1, far[1] - 1, 2, 2)
    _click(widget, far)
    assert session.selected == () and not overlay.visible
    assert len(widget.highlighted_rows) == 0


def test_colours_follow_annotations_and_predictions(
    make_napari_viewer, scene, checkpoint, tmp_path
):
    viewer, _, session = _viewer_with_session(
        make_napari_viewer, scene, checkpoint, tmp_path / "session"
    )
    widget = _dock(viewer)
    widget.fit(background=False)
    points = widget.map.points
    colors = class_colors(session.classes(COMPARTMENT))
    widget.color_by.value = "annotation"
    labelled = session.nodes(COMPARTMENT).annotation
    for row in (np.flatnonzero(labelled != "")[0], np.flatnonzero(labelled == "")[0]):
        expected = colors[labelled[row]] if labelled[row] else NO_CLASS_COLOR
        np.testing.assert_allclose(widget.colors[row], expected, atol=1e-6)
    assert "dendrite" in widget.legend.value and "unlabelled" in widget.legend.value
    widget.color_by.value = "uncertainty"
    assert "entropy" in widget.legend.value
    assert len(np.unique(widget.colors.round(3), axis=0)) > 5  # a ramp, not one colour
    widget.color_by.value = "prediction"
    predicted = session.nodes(COMPARTMENT).predicted
    np.testing.assert_allclose(widget.colors[0, :3], colors[predicted[0]][:3], atol=1e-6)

    # a new label changes the predictions; the plot recolours without refitting
    fitted = widget.map
    session.label([int(points.segment_id[-1])], "soma", target=COMPARTMENT)
    widget.color_by.value = "annotation"
    np.testing.assert_allclose(widget.colors[-1], colors["soma"], atol=1e-6)
    assert widget.map is fitted


def test_new_points_are_placed_not_refitted(
    make_napari_viewer, qtbot, scene, checkpoint, tmp_path, monkeypatch
):
    viewer, _, session = _viewer_with_session(
        make_napari_viewer, scene, checkpoint, tmp_path / "session"
    )
    _, _, segments = scene
    widget = _dock(viewer)
    widget.fit()  # in a worker, as the button does
    assert widget.cancel_button.enabled and not widget.fit_button.enabled
    qtbot.waitUntil(lambda: widget.map is not None, timeout=300_000)
    fitted = widget.map
    assert widget.fit_button.enabled and not widget.cancel_button.enabled

    import napari_segclr.widgets.umap_view as umap_view

    def no_refit(*args, **kwargs):
        raise AssertionError("the map was refitted")

    monkeypatch.setattr(umap_view, "fit_map", no_refit)
    last = dict(list(segments.items())[12:])
    session.add_embeddings(_table(last, session.store.dim, seed=1))
    qtbot.waitUntil(lambda: widget.map is not fitted, timeout=300_000)
    placed = widget.map
    assert len(placed.points) == 15 * NODES_PER_SEGMENT
    assert placed.n_fitted == 96 and placed.n_placed == 3 * NODES_PER_SEGMENT
    old = np.isin(placed.points.segment_id, list(segments)[:12])
    np.testing.assert_array_equal(placed.points.xy[old], fitted.points.xy)
    assert "24 placed since" in widget.status.value
    # each new point lands by the old points of its class
    klass = np.array([segments[int(s)] for s in placed.points.segment_id])
    for row in np.flatnonzero(~old):
        distance = np.linalg.norm(placed.points.xy[old] - placed.points.xy[row], axis=1)
        assert klass[old][np.argmin(distance)] == klass[row]
    assert widget.colors.shape == (len(placed.points), 4)


def test_segment_points_fit_select_and_cancel(
    make_napari_viewer, qtbot, scene, checkpoint, tmp_path
):
    viewer, _, _ = _viewer_with_session(make_napari_viewer, scene, checkpoint, tmp_path / "session")
    _, _, segments = scene
    widget = _dock(viewer)
    widget.fit(background=False)
    nodes_map = widget.map
    widget.points_kind.value = SEGMENTS
    assert widget.map is None and "Press Fit" in widget.status.value
    widget.fit(background=False)
    points = widget.map.points
    assert len(points) == 12 and set(points.node_id.tolist()) == {-1}
    dendrite = np.array([segments[int(s)] == "dendrite" for s in points.segment_id])
    ids = widget.select_rectangle(
        points.xy[dendrite].min(axis=0) - 0.2, points.xy[dendrite].max(axis=0) + 0.2
    )
    assert set(ids.tolist()) >= set(points.segment_id[dendrite].tolist())
    widget.points_kind.value = "nodes"
    assert widget.map is nodes_map  # each kind keeps its map

    # Cancel: the fit stops and leaves the map as it was
    widget.drag_mode.value = LASSO
    widget.fit()
    widget.cancel_button.clicked.emit()
    qtbot.waitUntil(lambda: widget.fit_button.enabled, timeout=300_000)
    assert widget.map is nodes_map


def test_screenshot_of_the_umap_view(make_napari_viewer, scene, checkpoint, tmp_path):
    viewer, _, _ = _viewer_with_session(
        make_napari_viewer, scene, checkpoint, tmp_path / "session", show=True
    )
    widget = _dock(viewer)
    widget.fit(background=False)
    points = widget.map.points
    widget.select_polygon(_hull(points.xy[: 3 * NODES_PER_SEGMENT], margin=0.3))
    viewer.dims.ndisplay = 3
    shot = viewer.screenshot(str(tmp_path / "umap.png"), canvas_only=False)
    _assert_not_blank(shot)
    plot = widget.plot.render()
    _assert_not_blank(plot)
    # the window shot shows the plot in its dock, with the selected points outlined
    native = widget.plot.native
    corner = native.mapTo(viewer.window._qt_window, QPoint(0, 0))
    ratio = shot.shape[1] / viewer.window._qt_window.width()
    x0, y0 = int(corner.x() * ratio), int(corner.y() * ratio)
    crop = shot[y0 : y0 + int(native.height() * ratio), x0 : x0 + int(native.width() * ratio)]
    assert crop.shape[0] > 100 and crop.shape[1] > 100
    close = np.abs(crop[..., :3].astype(float) - 255 * np.asarray(HIGHLIGHT[:3])).max(axis=2)
    assert (close < 40).sum() > 20


def test_without_a_session_the_widget_says_what_to_do(make_napari_viewer):
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-segclr", "UMAP view")
    assert isinstance(widget, UmapViewWidget)
    assert "Annotate widget" in widget.status.value
    widget.fit(background=False)
    assert widget.map is None
    assert len(widget.select_polygon([(0, 0), (1, 0), (1, 1)])) == 0


def _assert_not_blank(image: np.ndarray) -> None:
    rgb = image[..., :3].reshape(-1, 3)
    assert rgb.std() > 5
    assert len(np.unique(rgb[:: max(1, len(rgb) // 20000)], axis=0)) > 20


def _drag(widget: UmapViewWidget, polygon: np.ndarray, *, shift: bool = False) -> None:
    """Press, move along ``polygon`` (map coordinates) and release, as a mouse does."""
    from vispy.util import keys

    events = widget.plot.canvas.events
    modifiers = (keys.SHIFT,) if shift else ()
    screen = [widget.plot.to_screen(p) for p in polygon]
    events.mouse_press(pos=screen[0], button=1, modifiers=modifiers)
    for pos in screen[1:]:
        events.mouse_move(pos=pos, button=1, modifiers=modifiers)
    events.mouse_release(pos=screen[-1], button=1, modifiers=modifiers)


def _click(widget: UmapViewWidget, xy: np.ndarray) -> None:
    events = widget.plot.canvas.events
    pos = widget.plot.to_screen(xy)
    events.mouse_press(pos=pos, button=1, modifiers=())
    events.mouse_release(pos=pos, button=1, modifiers=())

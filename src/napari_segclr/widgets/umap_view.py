"""UMAP view dock widget: a map of the session's embeddings that selects and is selected.

The widget plots every embedded node (or one point per segment) of the
annotation session open in the Annotate widget, on a 2D UMAP of the
embeddings that target's head sees, coloured by annotation, prediction or
uncertainty. Lasso or rectangle a group of points (Shift adds to the
selection) and their segments become the session's selection: the Annotate
panel shows the last one, and the "SegCLR selection" layer lights them up in
the viewer. Ctrl-clicking a segment in the viewer lights up its points here.

The map is fitted once (Fit, in a worker, with progress and Cancel); nodes
embedded later are placed with the fitted model's ``transform`` and every
other point stays where it was, until Refit fits everything again.

Drawing is vispy (OpenGL, as napari's canvas): one ``Markers`` visual holds
all points, a second only the highlighted ones, so a selection uploads the
selected points alone. Selection is computed by
:mod:`napari_segclr.embedding_map` (a grid index, vectorised).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import napari
import numpy as np
from magicgui.widgets import ComboBox, Container, Label, PushButton
from napari.layers import Labels
from napari.utils.colormaps import DirectLabelColormap
from napari.utils.notifications import show_warning
from qtpy.QtCore import Qt
from vispy import scene
from vispy.util import keys

from ..embedding_map import (
    COLOR_MODES,
    MIN_POINTS,
    NO_CLASS_COLOR,
    SEGMENT_POINT,
    EmbeddingMap,
    UmapSettings,
    fit_map,
    point_colors,
    segment_means,
    uncertainty_ramp,
)
from ..overlays import TRANSPARENT, class_colors
from ..session import CELL_TYPE, COMPARTMENT, TARGETS, AnnotationSession
from ._layers import SELECTION_LAYER
from ._tasks import Progress, TaskSlot
from .annotate import TARGET_NAMES, annotate_widget

NODES, SEGMENTS = "nodes", "segments"
LASSO, RECTANGLE, PAN = "lasso", "rectangle", "pan / zoom"
#: The Labels layer that shows the selected segments in the viewer.
#: Selected segments in the viewer, and the outline of highlighted points in the plot:
#: white, which no class colour is.
HIGHLIGHT = (1.0, 1.0, 1.0, 1.0)
BACKGROUND = "#1b1d22"
#: A press and release closer than this (screen px) is a click: it picks the nearest point.
CLICK_PX = 6
#: Lasso vertices closer than this (screen px) to the last are dropped.
LASSO_STEP_PX = 3


def point_size(n: int) -> float:
    """Marker size in screen px for ``n`` points: 7 px up to 1,000, down to 2 px at 1,000,000."""
    return float(np.clip(7.0 - 1.7 * np.log10(max(n, 1000) / 1000), 2.0, 7.0))


class _MapCamera(scene.PanZoomCamera):
    """Pan and zoom, except that a left drag is left to the selection while one is drawn."""

    selecting = False

    def viewbox_mouse_event(self, event: Any) -> None:
        dragging = event.type == "mouse_move" and event.press_event is not None
        if self.selecting and dragging and 1 in event.buttons:
            return
        super().viewbox_mouse_event(event)


class MapCanvas:
    """The scatter plot: a vispy canvas with all points, the highlighted ones and a lasso.

    Parameters
    ----------
    on_polygon
        Called with a lasso or rectangle (V, 2) in map coordinates and
        whether Shift was held.
    on_click
        Called with a clicked map position, a pick radius in map units and
        whether Shift was held.
    """

    def __init__(
        self,
        *,
        on_polygon: Callable[[np.ndarray, bool], None],
        on_click: Callable[[np.ndarray, float, bool], None],
    ) -> None:
        self.canvas = scene.SceneCanvas(keys=None, show=False, bgcolor=BACKGROUND, size=(360, 360))
        self.view = self.canvas.central_widget.add_view()
        self.camera = _MapCamera(aspect=1)
        self.view.camera = self.camera
        self.points = scene.visuals.Markers(parent=self.view.scene)
        self.highlighted = scene.visuals.Markers(parent=self.view.scene)
        self.outline = scene.visuals.Line(parent=self.view.scene, color=HIGHLIGHT, width=1.5)
        self.highlighted.order, self.outline.order = 1, 2  # drawn over the points
        self._on_polygon, self._on_click = on_polygon, on_click
        self.mode = LASSO
        self._press: np.ndarray | None = None  # screen position of the press
        self._path: list[np.ndarray] = []  # screen positions of the lasso
        self.canvas.events.mouse_press.connect(self._pressed)
        self.canvas.events.mouse_move.connect(self._moved)
        self.canvas.events.mouse_release.connect(self._released)

    @property
    def native(self) -> Any:
        return self.canvas.native

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, mode: str) -> None:
        self._mode = mode
        self.camera.selecting = mode != PAN

    def show_points(self, xy: np.ndarray, colors: np.ndarray, size: float) -> None:
        """Draw these points (all of them) in these colours."""
        if len(xy):
            self.points.set_data(xy, face_color=colors, size=size, edge_width=0)
        else:
            self.points.set_data(np.zeros((0, 2)))
        self.points.visible = len(xy) > 0

    def show_highlighted(self, xy: np.ndarray, colors: np.ndarray, size: float) -> None:
        """Draw these points over the others, larger, opaque and outlined."""
        if len(xy):
            opaque = np.array(colors, np.float32, copy=True)
            opaque[:, 3] = 1.0
            self.highlighted.set_data(
                xy, face_color=opaque, size=size + 4, edge_width=1.5, edge_color=HIGHLIGHT
            )
        self.highlighted.visible = len(xy) > 0

    def fit_view(self, xy: np.ndarray) -> None:
        """Zoom to show every point."""
        if len(xy):
            lo, hi = xy.min(axis=0), xy.max(axis=0)
            pad = 0.05 * np.maximum(hi - lo, 1e-3)
            (x, y), (width, height) = lo - pad, hi - lo + 2 * pad
            self.camera.rect = (float(x), float(y), float(width), float(height))

    def to_map(self, pos: Sequence[float]) -> np.ndarray:
        """Map coordinates of a canvas position (screen px)."""
        transform = self.canvas.scene.node_transform(self.view.scene)
        return np.asarray(transform.map(np.asarray(pos, float)[:2])[:2], float)

    def to_screen(self, xy: Sequence[float]) -> np.ndarray:
        """Canvas position (screen px) of map coordinates."""
        transform = self.view.scene.node_transform(self.canvas.scene)
        return np.asarray(transform.map(np.asarray(xy, float)[:2])[:2], float)

    def render(self) -> np.ndarray:
        """The plot as an RGBA image (draws it now)."""
        return self.canvas.render()

    # ----------------------------------------------------------- mouse

    def _pressed(self, event: Any) -> None:
        if event.button == 1:
            self._press = np.asarray(event.pos[:2], float)
            self._path = [self._press]

    def _moved(self, event: Any) -> None:
        if self._press is None or self.mode == PAN:
            return
        pos = np.asarray(event.pos[:2], float)
        if self.mode == RECTANGLE:
            self._path = [self._press, pos]
        elif np.linalg.norm(pos - self._path[-1]) >= LASSO_STEP_PX:
            self._path.append(pos)
        self._draw_outline()

    def _released(self, event: Any) -> None:
        if self._press is None:
            return
        press, path = self._press, self._path
        self._press, self._path = None, []
        self.outline.visible = False
        add = keys.SHIFT in (event.modifiers or ())
        pos = np.asarray(event.pos[:2], float)
        if np.linalg.norm(pos - press) < CLICK_PX:
            radius = float(
                np.linalg.norm(self.to_map(pos + np.array([CLICK_PX, 0.0])) - self.to_map(pos))
            )
            self._on_click(self.to_map(pos), radius, add)
            return
        if self.mode == PAN:
            return
        if self.mode == RECTANGLE:
            path = [press, pos]
        polygon = self._polygon(path)
        if len(polygon) >= 3:
            self._on_polygon(polygon, add)

    def _polygon(self, path: list[np.ndarray]) -> np.ndarray:
        """The selection's polygon in map coordinates (a rectangle from its two corners)."""
        if self.mode == RECTANGLE and len(path) == 2:
            (x0, y0), (x1, y1) = path
            path = [np.array(p) for p in ((x0, y0), (x1, y0), (x1, y1), (x0, y1))]
        return np.array([self.to_map(p) for p in path]) if path else np.zeros((0, 2))

    def _draw_outline(self) -> None:
        polygon = self._polygon(self._path)
        if len(polygon) >= 2:
            self.outline.set_data(np.vstack([polygon, polygon[:1]]))
            self.outline.visible = True


class UmapViewWidget(Container):
    """A UMAP of the session's embeddings: colour, select by lasso, see the selection."""

    def __init__(
        self, viewer: napari.viewer.Viewer, *, settings: UmapSettings | None = None
    ) -> None:
        self.viewer = viewer
        self.settings = settings or UmapSettings()
        self.session: AnnotationSession | None = None
        self.points_kind = ComboBox(
            label="Points", choices=[("every node", NODES), ("one per segment", SEGMENTS)]
        )
        self.target = ComboBox(
            label="Embeddings of",
            choices=[(TARGET_NAMES[t], t) for t in TARGETS],
            value=COMPARTMENT,
            tooltip="the target whose head inputs are mapped (cell type: averaged over R)",
        )
        self.color_by = ComboBox(label="Colour by", choices=list(COLOR_MODES), value="prediction")
        self.drag_mode = ComboBox(
            label="Drag to",
            choices=[LASSO, RECTANGLE, PAN],
            value=LASSO,
            tooltip="select with a lasso or a rectangle (Shift adds), or pan; "
            "the wheel zooms, a click picks the nearest point's segment",
        )
        self.fit_button = PushButton(text="Fit UMAP")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.legend = Label(value="")
        self.status = Label(value="")
        super().__init__(
            widgets=[
                self.points_kind,
                self.target,
                self.color_by,
                self.drag_mode,
                Container(
                    widgets=[self.fit_button, self.cancel_button], layout="horizontal", labels=False
                ),
                self.legend,
                self.status,
            ]
        )
        self.plot = MapCanvas(on_polygon=self._lassoed, on_click=self._clicked)
        self.plot.native.setMinimumHeight(280)
        layout = self.native.layout()
        layout.insertWidget(layout.count() - 2, self.plot.native, 1)  # above legend and status
        for label in (self.legend, self.status):
            label.native.setWordWrap(True)
            label.native.setTextFormat(Qt.TextFormat.RichText)
        self.max_width = 480
        self._maps: dict[tuple[str, str], tuple[EmbeddingMap, float]] = {}
        self._colors = np.zeros((0, 4), np.float32)
        #: Rows of the map's points shown highlighted (the selected segments' points).
        self.highlighted_rows = np.zeros(0, np.int64)
        self._tasks = TaskSlot(on_idle=self._finish)
        self._sync_again = False
        self._annotate: Any = None
        self._overlay_of: Labels | None = None  # the segmentation the selection layer shows
        self._connect()
        self.attach()
        self._draw()

    # --------------------------------------------------------------- wiring

    def _connect(self) -> None:
        self.points_kind.changed.connect(self._view_changed)
        self.target.changed.connect(self._view_changed)
        self.color_by.changed.connect(lambda: self._draw())
        self.drag_mode.changed.connect(self._drag_mode_changed)
        self.fit_button.changed.connect(lambda: self.fit())
        self.cancel_button.changed.connect(self._cancel)
        self.native.destroyed.connect(self._disconnect)

    def _disconnect(self, *_: Any) -> None:
        if self._annotate is not None:
            self._annotate.session_changed.disconnect(self.set_session)
        self._release_session()

    def attach(self) -> bool:
        """Follow the session of the Annotate widget docked in the viewer, if there is one."""
        widget = annotate_widget(self.viewer)
        if widget is None or widget is self._annotate:
            return widget is not None
        if self._annotate is not None:
            self._annotate.session_changed.disconnect(self.set_session)
        self._annotate = widget
        widget.session_changed.connect(self.set_session)
        self.set_session(widget.session)
        return True

    def set_session(self, session: AnnotationSession | None) -> None:
        """Map this session's embeddings (None: show nothing)."""
        if session is self.session:
            return
        self._release_session()
        self.session = session
        self._maps.clear()
        if session is not None:
            session.changed.connect(self._on_change)
        self._draw(fit_view=True)

    def _release_session(self) -> None:
        if self.session is not None:
            self.session.changed.disconnect(self._on_change)
            self.session = None

    @property
    def segmentation_layer(self) -> Labels | None:
        """The Labels layer the session's segments are shown in (the Annotate widget's)."""
        return None if self._annotate is None else self._annotate.segmentation_layer

    @property
    def map(self) -> EmbeddingMap | None:
        """The map shown (of the chosen points and target), if it has been fitted."""
        entry = self._maps.get(self._key)
        return None if entry is None else entry[0]

    @property
    def colors(self) -> np.ndarray:
        """(N, 4) RGBA of each point of the map shown."""
        return self._colors

    @property
    def _key(self) -> tuple[str, str]:
        return self.points_kind.value, self.target.value

    # ----------------------------------------------------------------- data

    def _rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Keys (segment id, node id) and embeddings of the chosen points, now."""
        assert self.session is not None
        nodes = self.session.nodes(self.target.value)
        if self.points_kind.value == NODES:
            return nodes.segment_id, nodes.node_id, nodes.embedding
        ids, means = segment_means(nodes.segment_id, nodes.embedding)
        return ids, np.full(len(ids), SEGMENT_POINT, np.int64), means

    def _results(self) -> Any:
        assert self.session is not None
        target = self.target.value
        if self.points_kind.value == NODES:
            results = self.session.nodes(target)
            return results, results.segment_id, results.node_id
        results = self.session.segments(target)
        keys = np.full(len(results.segment_id), SEGMENT_POINT, np.int64)
        return results, results.segment_id, keys

    # ------------------------------------------------------------- fitting

    def fit(self, *, background: bool = True) -> None:
        """Fit the map to every embedded point of the chosen kind (in a worker)."""
        if self._busy():
            return
        self.attach()
        session = self.session
        if session is None:
            show_warning("no annotation session: open one in the Annotate widget first")
            return
        segment_id, node_id, embedding = self._rows()
        if len(segment_id) < MIN_POINTS:
            show_warning(
                f"{len(segment_id)} embedded {self.points_kind.value}: a map needs at least "
                f"{MIN_POINTS}; embed more segments in the Annotate widget"
            )
            return
        key, radius, settings = self._key, self._radius(), self.settings

        def work(progress: Progress) -> EmbeddingMap:
            return fit_map(segment_id, node_id, embedding, settings=settings, progress=progress)

        self._run(
            work,
            f"fitting a UMAP of {len(segment_id):,} {key[0]}",
            lambda result: self._use_map(session, key, result, radius, fit_view=True),
            background,
        )

    def _sync(self) -> None:
        """Place newly embedded points on the shown map with its transform (nothing refitted)."""
        entry = self._maps.get(self._key)
        if entry is None or self.session is None:
            return
        if self._tasks.busy:
            self._sync_again = True
            return
        umap_map, radius = entry
        segment_id, node_id, embedding = self._rows()
        points = umap_map.points
        if np.array_equal(segment_id, points.segment_id) and np.array_equal(
            node_id, points.node_id
        ):
            return
        session, key = self.session, self._key

        def work(progress: Progress) -> EmbeddingMap:
            return umap_map.place(segment_id, node_id, embedding, progress=progress)

        self._run(
            work,
            "placing new points on the UMAP",
            lambda result: self._use_map(session, key, result, radius, fit_view=False),
            background=True,
        )

    def _use_map(
        self,
        session: AnnotationSession,
        key: tuple[str, str],
        umap_map: EmbeddingMap,
        radius: float,
        *,
        fit_view: bool,
    ) -> None:
        if session is not self.session:
            return  # the session changed meanwhile
        self._maps[key] = (umap_map, radius)
        if key == self._key:
            self._draw(fit_view=fit_view)

    def _radius(self) -> float:
        return 0.0 if self.session is None else self.session.radius_um(self.target.value)

    # ------------------------------------------------------------ selecting

    def select_polygon(
        self, polygon: np.ndarray | Sequence[Sequence[float]], *, add: bool = False
    ) -> np.ndarray:
        """Select the segments of the points inside a polygon (map coordinates).

        Returns their ids; they become the session's selection (``add``: joined
        to it).
        """
        return self._select_points(lambda points: points.in_polygon(polygon), add)

    def select_rectangle(
        self, corner: Sequence[float], opposite: Sequence[float], *, add: bool = False
    ) -> np.ndarray:
        """Select the segments of the points in a rectangle (map coordinates); returns their ids."""
        return self._select_points(lambda points: points.in_rectangle(corner, opposite), add)

    def _select_points(self, rows: Callable[[Any], np.ndarray], add: bool) -> np.ndarray:
        umap_map = self.map
        if umap_map is None or self.session is None:
            return np.zeros(0, np.uint64)
        ids = umap_map.points.segments_of(rows(umap_map.points))
        self._select(ids, add)
        return ids

    def _lassoed(self, polygon: np.ndarray, add: bool) -> None:
        self.select_polygon(polygon, add=add)

    def _clicked(self, position: np.ndarray, radius: float, add: bool) -> None:
        umap_map = self.map
        if umap_map is None or self.session is None:
            return
        row = umap_map.points.nearest(position, radius)
        ids = np.zeros(0, np.uint64) if row is None else umap_map.points.segment_id[[row]]
        if row is not None or not add:  # a click on nothing clears, unless adding
            self._select(ids, add)

    def _select(self, ids: np.ndarray, add: bool) -> None:
        assert self.session is not None
        chosen = [int(s) for s in ids]
        self.session.select_segments([*self.session.selected, *chosen] if add else chosen)

    # ------------------------------------------------------------- drawing

    def _on_change(self, what: str) -> None:
        if what == "embeddings":
            self._sync()
        elif what in ("predictions", "annotations", "classes"):
            self._draw()
        elif what == "selection":
            self._highlight()
            self._show_status()

    def _view_changed(self) -> None:
        self._draw(fit_view=True)
        self._sync()

    def _draw(self, *, fit_view: bool = False) -> None:
        """Colour and draw the points of the shown map, the highlight and the legend."""
        umap_map = self.map
        self.fit_button.text = "Refit UMAP" if umap_map is not None else "Fit UMAP"
        if umap_map is None or self.session is None:
            self._colors = np.zeros((0, 4), np.float32)
            self.plot.show_points(np.zeros((0, 2)), self._colors, 1.0)
            self._highlight()
            self._show_legend()
            self._show_status()
            return
        points = umap_map.points
        results, segment_id, node_id = self._results()
        classes = self.session.classes(self.target.value)
        colors = point_colors(results, self.color_by.value, classes)
        rows = points.indexer(segment_id, node_id)
        self._colors = np.where(
            (rows >= 0)[:, None], colors[np.maximum(rows, 0)], np.float32(NO_CLASS_COLOR)
        ).astype(np.float32)
        self.plot.show_points(points.xy, self._colors, point_size(len(points)))
        if fit_view:
            self.plot.fit_view(points.xy)
        self._highlight()
        self._show_legend()
        self._show_status()

    def _highlight(self) -> None:
        """Light up the selected segments' points here and the segments in the viewer."""
        selected = () if self.session is None else self.session.selected
        umap_map = self.map
        if umap_map is None or not selected:
            rows = np.zeros(0, np.int64)
            self.plot.show_highlighted(np.zeros((0, 2)), np.zeros((0, 4)), 1.0)
        else:
            rows = umap_map.points.rows_of(np.asarray(selected, np.uint64))
            self.plot.show_highlighted(
                umap_map.points.xy[rows], self._colors[rows], point_size(len(umap_map.points))
            )
        self.highlighted_rows = rows
        self._show_in_viewer(selected)

    def _show_in_viewer(self, selected: Sequence[int]) -> None:
        """Colour the selected segments in the selection layer over the segmentation."""
        source = self.segmentation_layer
        overlay = next((ly for ly in self.viewer.layers if ly.name == SELECTION_LAYER), None)
        if source is None or (overlay is None and not selected):
            if overlay is not None:
                overlay.visible = False
            return
        colors: dict[int | None, tuple[float, ...]] = {None: TRANSPARENT, 0: TRANSPARENT}
        colors.update(dict.fromkeys(selected, HIGHLIGHT))
        colormap = DirectLabelColormap(color_dict=colors)
        if overlay is None or self._overlay_of is not source:
            if overlay is not None:
                self.viewer.layers.remove(overlay)
            active = self.viewer.layers.selection.active
            # The segmentation's own array: nothing is copied.
            overlay = Labels(
                source.data,
                name=SELECTION_LAYER,
                scale=source.scale,
                translate=source.translate,
                multiscale=source.multiscale,
                colormap=colormap,
                opacity=0.8,
            )
            overlay.editable = False
            self.viewer.add_layer(overlay)
            self._overlay_of = source
            self.viewer.layers.selection.active = active  # keep the segmentation active
        else:
            overlay.colormap = colormap
        overlay.visible = bool(selected)

    def _show_legend(self) -> None:
        if self.session is None:
            self.legend.value = ""
            return
        classes = self.session.classes(self.target.value)
        if self.color_by.value == "uncertainty":
            ramp = "".join(_swatch(c) for c in uncertainty_ramp())
            text = (
                f"entropy 0 {ramp} log {len(classes)} (chance) · {_entry(NO_CLASS_COLOR, 'none')}"
            )
        else:
            colors = class_colors(classes)
            none = "unlabelled" if self.color_by.value == "annotation" else "no prediction"
            text = " ".join(_entry(colors[c], c) for c in classes)
            text += f" · {_entry(NO_CLASS_COLOR, none)}"
        self.legend.value = text

    def _show_status(self) -> None:
        session, entry = self.session, self._maps.get(self._key)
        if session is None:
            self.status.value = "No annotation session: open one in the Annotate widget."
            return
        kind = self.points_kind.value
        if entry is None:
            self.status.value = f"Press Fit to map the embedded {kind}."
            return
        umap_map, radius = entry
        text = f"{len(umap_map.points):,} {kind}: fitted to {umap_map.n_fitted:,}"
        if umap_map.n_placed:
            text += f", {umap_map.n_placed:,} placed since (Refit to fit all)"
        if self.target.value == CELL_TYPE and radius != self._radius():
            text += f"<br>the radius changed ({radius:g} → {self._radius():g} µm): Refit"
        self.status.value = text + f"; {len(session.selected):,} segments selected"

    def _drag_mode_changed(self) -> None:
        self.plot.mode = self.drag_mode.value

    # --------------------------------------------------------------- tasks

    def _busy(self) -> bool:
        return self._tasks.refuse("busy: wait for the UMAP in progress, or cancel it")

    def _run(
        self,
        work: Callable[[Progress], Any],
        description: str,
        on_done: Callable[[Any], None],
        background: bool,
    ) -> None:
        self.cancel_button.enabled, self.fit_button.enabled = True, False
        self.status.value = description + " …"
        self._tasks.run(work, description=description, on_done=on_done, background=background)

    def _finish(self) -> None:
        self.cancel_button.enabled, self.fit_button.enabled = False, True
        self._show_status()
        if self._sync_again:
            self._sync_again = False
            self._sync()

    def _cancel(self) -> None:
        if self._tasks.busy:
            self._tasks.cancel()
            # umap-learn has no stopping point: the result is dropped once it returns.
            self.status.value = "cancelling: the map is dropped as soon as umap-learn returns …"


def _entry(color: Sequence[float], name: str) -> str:
    """A legend entry that does not break between its swatch and its name."""
    return f"{_swatch(color)}&nbsp;{name.replace(' ', '&nbsp;')}"


def _swatch(color: Sequence[float]) -> str:
    r, g, b = (round(255 * float(c)) for c in color[:3])
    return f'<span style="color: rgb({r},{g},{b})">■</span>'

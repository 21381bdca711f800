"""Annotate dock widget: click a segment → what it is and how sure; label it → the head learns.

One dock widget with three sections, because they are one loop on one
selection: **Encoder** (layers, model, device, session folder; embed what is
in view or the whole volume), **Predictions** (what the panel and the
overlays show; the cell-type radius; the head), **Annotate** (classes for keys
1–9, next most uncertain, undo). Three separate docks would have to be
opened, kept in step and laid out by the user for a single task. Other widgets
(a UMAP plot, training) share the same session through
:func:`viewer_session` and :attr:`AnnotateWidget.session_changed`.

Ctrl-click (Cmd-click on macOS) a segment of the segmentation layer, or tick
"pick segments with a plain click" (the layer then stops painting), to embed
it and see its prediction. Keys 1–9 label the selected segment with the
n-th class of the class list shown; the head refits at once (in the GUI thread
for a linear head, in a worker otherwise) and every overlay updates.

Everything long (opening a session, embedding, non-linear fits) runs in a
:class:`~._tasks.Task` worker with a progress bar and Cancel; errors in the
user's input are notifications, never traceback dialogs.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import napari
import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    LineEdit,
    PushButton,
)
from napari.layers import Image, Labels, Points
from napari.utils.colormaps import DirectLabelColormap
from napari.utils.notifications import show_error, show_info, show_warning
from psygnal import Signal
from qtpy.QtCore import Qt
from qtpy.QtGui import QKeySequence, QShortcut

from ..exceptions import SegclrError
from ..heads import HEAD_KINDS
from ..overlays import class_colors, marker_style, merge_features, segment_color_dict
from ..session import (
    CELL_TYPE,
    COMPARTMENT,
    DEFAULT_CLASSES,
    TARGETS,
    AnnotationSession,
    Answer,
    session_folder_for,
    volume_from_layer_data,
)
from ._layers import NODES_LAYER, layer_choices
from ._tasks import Progress, Task, TaskSlot

SHIPPED, CHECKPOINT = "shipped lite", "checkpoint file"
TARGET_NAMES = {COMPARTMENT: "compartment (per node)", CELL_TYPE: "cell type (per segment)"}
#: A click that moves the pointer further than this (screen px) is a drag, not a pick.
DRAG_PX = 5

_WIDGETS: weakref.WeakKeyDictionary[Any, AnnotateWidget] = weakref.WeakKeyDictionary()


def annotate_widget(viewer: napari.viewer.Viewer) -> AnnotateWidget | None:
    """The Annotate widget docked in ``viewer``, if there is one."""
    return _WIDGETS.get(viewer)


def viewer_session(viewer: napari.viewer.Viewer) -> AnnotationSession | None:
    """The annotation session open in ``viewer``'s Annotate widget, if any."""
    widget = annotate_widget(viewer)
    return None if widget is None else widget.session


def _header(text: str) -> Label:
    return Label(value=f"<b>{text}</b>")


def _set_text(label: Label, text: str) -> None:
    """Show multi-line rich text; the form layout does not grow a label's row by itself."""
    label.value = text
    native = label.native
    native.setMinimumHeight(max(native.heightForWidth(max(native.width(), 300)), 0))


def _row(*widgets: Any, label: str = "") -> Container:
    return Container(widgets=widgets, layout="horizontal", labels=False, label=label)


class AnnotateWidget(Container):
    """Embed clicked segments, show predictions with uncertainty, label and learn."""

    #: Emitted with the new session (or None) whenever the widget opens or drops one.
    session_changed = Signal(object)

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self.viewer = viewer
        self.session: AnnotationSession | None = None
        # Encoder
        self.em_layer = ComboBox(label="EM", choices=layer_choices(viewer, Image))
        self.seg_layer = ComboBox(label="Segmentation", choices=layer_choices(viewer, Labels))
        self.model_source = ComboBox(label="Model", choices=[SHIPPED, CHECKPOINT], value=SHIPPED)
        self.checkpoint = FileEdit(label="Checkpoint", mode="r", filter="*.pt", visible=False)
        self.device = ComboBox(label="Device", choices=["auto", "cuda", "cpu"], value="auto")
        self.folder = FileEdit(
            label="Session folder", mode="d", tooltip="embeddings, annotations.csv, predictions.csv"
        )
        self.pick_mode = CheckBox(text="Pick segments with a plain click (no painting)")
        self.embed_view_button = PushButton(text="Embed in view")
        self.embed_all_button = PushButton(text="Embed all")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        # Predictions
        self.target = ComboBox(
            label="Show and label",
            choices=[(TARGET_NAMES[t], t) for t in TARGETS],
            value=CELL_TYPE,
        )
        self.radius = FloatSpinBox(
            label="Cell-type radius (µm)", value=10.0, min=0.0, max=500.0, step=1.0
        )
        self.head_kind = ComboBox(label="Head", choices=list(HEAD_KINDS), value="linear")
        self.head_file = FileEdit(label="Head file", mode="r", filter="*.npz")
        self.load_head_button = PushButton(text="Load", tooltip="predict the target shown with it")
        self.color_segments = CheckBox(text="Colour segments by prediction", value=True)
        self.answer = Label(value="Ctrl-click a segment to see what it is.")
        # Annotate
        self.classes = LineEdit(
            label="Classes (keys 1–9)", value=", ".join(DEFAULT_CLASSES[CELL_TYPE])
        )
        self.annotator = LineEdit(label="Annotator", value="")
        self.next_button = PushButton(text="Next most uncertain")
        self.undo_button = PushButton(text="Undo (Ctrl-Z)", enabled=False)
        self.status = Label(value="")
        super().__init__(
            widgets=[
                _header("Encoder"),
                self.em_layer,
                self.seg_layer,
                self.model_source,
                self.checkpoint,
                self.device,
                self.folder,
                self.pick_mode,
                _row(self.embed_view_button, self.embed_all_button, self.cancel_button),
                _header("Predictions"),
                self.target,
                self.radius,
                self.head_kind,
                _row(self.head_file, self.load_head_button, label="Head file"),
                self.color_segments,
                self.answer,
                _header("Annotate"),
                self.classes,
                self.annotator,
                _row(self.next_button, self.undo_button),
                self.status,
            ]
        )
        self.max_width = 480  # leave the canvas most of the window
        for label in (self.answer, self.status):
            label.native.setWordWrap(True)
            label.native.setTextFormat(Qt.TextFormat.RichText)
        self._tasks = TaskSlot(on_idle=lambda: self._set_busy(False))
        self._fitting: set[str] = set()
        self._refit_again: set[str] = set()
        self._original_colormap: Any = None
        self._colored_layer: Labels | None = None
        self._connect()
        _WIDGETS[viewer] = self
        self._default_folder()

    # --------------------------------------------------------------- wiring

    def _connect(self) -> None:
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            event.connect(self._refresh_layer_choices)
        for widget in (self.em_layer, self.seg_layer, self.checkpoint, self.device, self.folder):
            widget.changed.connect(self._drop_session)
        self.seg_layer.changed.connect(self._default_folder)
        self.model_source.changed.connect(self._model_source_changed)
        self.pick_mode.changed.connect(self._pick_mode_changed)
        self.embed_view_button.changed.connect(lambda: self.embed_in_view())
        self.embed_all_button.changed.connect(lambda: self.embed_all())
        self.cancel_button.changed.connect(lambda: self._tasks.cancel())
        self.target.changed.connect(self._target_changed)
        self.radius.changed.connect(lambda: self.set_radius(self.radius.value))
        self.head_kind.changed.connect(self._head_kind_changed)
        self.load_head_button.changed.connect(lambda: self.load_head(self.head_file.value))
        self.color_segments.changed.connect(lambda: self._draw())
        self.classes.native.editingFinished.connect(self._classes_edited)
        self.annotator.changed.connect(self._annotator_changed)
        self.next_button.changed.connect(lambda: self.next_uncertain())
        self.undo_button.changed.connect(lambda: self.undo())
        undo = QShortcut(QKeySequence("Ctrl+Z"), self.native)
        undo.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        undo.activated.connect(self.undo)
        self.viewer.mouse_drag_callbacks.append(self._on_mouse)
        for key in range(1, 10):
            self.viewer.bind_key(str(key), partial(self._key_label, key), overwrite=True)
        self.native.destroyed.connect(self._disconnect)

    def _disconnect(self, *_: Any) -> None:
        """Leave the viewer as it was once the dock widget is gone."""
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            event.disconnect(self._refresh_layer_choices)
        if self._on_mouse in self.viewer.mouse_drag_callbacks:
            self.viewer.mouse_drag_callbacks.remove(self._on_mouse)
        if _WIDGETS.get(self.viewer) is self:
            del _WIDGETS[self.viewer]

    def _refresh_layer_choices(self, event: Any = None) -> None:
        self.em_layer.reset_choices()
        self.seg_layer.reset_choices()
        if self.session is not None and (
            self.segmentation_layer is None or self._layer(self.em_layer.value, Image) is None
        ):
            self._drop_session()  # its EM or segmentation layer is gone

    def _layer(self, name: str | None, kind: type) -> Any:
        if name is None or name not in self.viewer.layers:
            return None
        layer = self.viewer.layers[name]
        return layer if isinstance(layer, kind) else None

    @property
    def segmentation_layer(self) -> Labels | None:
        """The Labels layer that is clicked and coloured."""
        return self._layer(self.seg_layer.value, Labels)

    # ------------------------------------------------------------ session

    def open_session(
        self, *, background: bool = True, then: Callable[[], None] | None = None
    ) -> None:
        """Open the session for the chosen layers, model and folder (``then`` runs after)."""
        if self._busy():
            return
        params = self._session_params()
        if params is None:
            return
        em_layer, seg_layer, model_spec, device, folder = params
        options = {
            "radius_um": self.radius.value,
            "head_kind": self.head_kind.value,
            "annotator": self.annotator.value.strip() or None,
            "device": device,
        }

        def work(progress: Progress) -> tuple[AnnotationSession, str]:
            from ..io import Dataset

            em = layer_volume(em_layer, "image")
            seg = layer_volume(seg_layer, "labels")
            model, options["device"], note = _load_model(model_spec, device)
            if model_spec == SHIPPED:  # an answer at the first click, before any label
                from ..model.shipped import shipped_head_paths

                options["heads"] = shipped_head_paths()
            session = AnnotationSession(Dataset(em, seg), model, folder, **options)
            return session, note

        def done(result: tuple[AnnotationSession, str]) -> None:
            session, note = result
            if note:
                show_warning(note)
            self._set_session(session)
            if then is not None:
                then()

        self._run(work, "opening the annotation session", done, background)

    def _session_params(self) -> tuple[Labels, Labels, str | Path, str, Path] | None:
        seg_layer = self.segmentation_layer
        if seg_layer is None:
            show_error(
                "no segmentation: open a Labels layer (e.g. with the Loader) and choose it "
                "under Encoder ▸ Segmentation"
            )
            return None
        em_layer = self._layer(self.em_layer.value, Image)
        if em_layer is None:
            show_error("no EM image: open the EM volume as an Image layer and choose it under EM")
            return None
        if self.model_source.value == SHIPPED:
            from ..model.shipped import shipped_checkpoint_path

            if not shipped_checkpoint_path().is_file():
                show_error(
                    "the shipped 'lite' model is not installed in this copy of napari-segclr: "
                    "choose a checkpoint file (Model ▸ checkpoint file)"
                )
                self.model_source.value = CHECKPOINT
                return None
            model_spec: str | Path = SHIPPED
        else:
            model_spec = Path(self.checkpoint.value)
            if not model_spec.is_file():
                show_error(f"checkpoint {model_spec} does not exist: choose a .pt checkpoint file")
                return None
        folder = Path(self.folder.value)
        if str(self.folder.value) in ("", "."):
            folder = session_folder_for(seg_layer.metadata.get("source"), seg_layer.name)
        return em_layer, seg_layer, model_spec, self.device.value, folder

    def _set_session(self, session: AnnotationSession | None) -> None:
        self.session = session
        if session is not None:
            session.changed.connect(self._on_session_change)
            self.annotator.value = session.annotator
            layer = self.segmentation_layer
            if layer is not None:
                for key in range(1, 10):  # the layer's own digit shortcuts would win otherwise
                    layer.bind_key(str(key), partial(self._key_label, key), overwrite=True)
            self._target_changed()
        self.session_changed.emit(session)
        self._draw()
        self._show_status()

    def _drop_session(self, *_: Any) -> None:
        if self.session is not None:
            self.session.changed.disconnect(self._on_session_change)
            self._set_session(None)

    def _with_session(self, action: Callable[[], None], background: bool) -> None:
        if self.session is not None:
            action()
        else:
            self.open_session(background=background, then=action)

    # ------------------------------------------------------------ clicking

    def _on_mouse(self, viewer: Any, event: Any):
        plain = self.pick_mode.value and not event.modifiers
        if event.type != "mouse_press" or not ("Control" in event.modifiers or plain):
            return
        if annotate_widget(self.viewer) is not self:
            return  # a newer Annotate widget picks
        press = np.asarray(event.pos, float)
        yield
        while event.type == "mouse_move":
            if np.linalg.norm(np.asarray(event.pos, float) - press) > DRAG_PX:
                return  # a drag (pan, rotate), not a pick
            yield
        self.click_at(
            event.position,
            view_direction=event.view_direction,
            dims_displayed=list(event.dims_displayed),
        )

    def click_at(
        self,
        position: Sequence[float],
        *,
        view_direction: Sequence[float] | None = None,
        dims_displayed: Sequence[int] | None = None,
        background: bool = True,
    ) -> None:
        """Pick the segment under a world position (nm), as a Ctrl-click there does.

        In 3D (``view_direction`` and three ``dims_displayed``) the segment is
        the first one along the viewing ray.
        """
        layer = self.segmentation_layer
        if layer is None:
            show_error("no segmentation layer to click: choose one under Encoder ▸ Segmentation")
            return
        hit = _pick(layer, position, view_direction, dims_displayed)
        if hit is None:
            show_warning("that is background: Ctrl-click on a segment")
            return
        self.click_segment(*hit, background=background)

    def click_segment(
        self, segment_id: int, seed_voxel: Sequence[int], *, background: bool = True
    ) -> None:
        """Select a segment and embed it (from a voxel of it) unless it is already."""
        if self._busy():
            return

        def embed() -> None:
            session = self.session
            assert session is not None
            session.select_segments([segment_id])
            if segment_id in session:
                return
            self._run(
                lambda progress: session.embed_segment(
                    segment_id, seed_voxel=seed_voxel, progress=progress
                ),
                f"embedding segment {segment_id}",
                session.add_embeddings,
                background,
            )

        self._with_session(embed, background)

    def embed_in_view(self, *, background: bool = True) -> None:
        """Embed every segment with voxels in the part of the volume on screen."""
        layer = self.segmentation_layer
        if layer is None:
            show_error("no segmentation layer: choose one under Encoder ▸ Segmentation")
            return
        box = _view_box_nm(self.viewer, layer)
        self._embed(box, "embedding the segments in view", background)

    def embed_all(self, *, background: bool = True) -> None:
        """Embed every segment of the volume (skeletonised chunk by chunk)."""
        self._embed(None, "embedding all segments", background)

    def _embed(self, box: Any, description: str, background: bool) -> None:
        if self._busy():
            return

        def embed() -> None:
            session = self.session
            assert session is not None
            self._run(
                lambda progress: session.embed_region(box, progress=progress),
                description,
                session.add_embeddings,
                background,
            )

        self._with_session(embed, background)

    # ---------------------------------------------------------- annotating

    def _key_label(self, key: int, _: Any = None) -> None:
        self.label_key(key)

    def label_key(self, key: int, *, background: bool = True) -> None:
        """Label the selected segments with class number ``key`` (1–9) of the shown target."""
        session = self.session
        if session is None or not session.selected:
            show_warning("select a segment first: Ctrl-click it")
            return
        classes = session.classes(self.target.value)
        if not 1 <= key <= len(classes):
            show_warning(f"key {key}: the class list has {len(classes)} classes")
            return
        self.label(classes[key - 1], background=background)

    def label(self, class_name: str, *, background: bool = True) -> None:
        """Label the selected segments with ``class_name`` and refit the head."""
        session = self.session
        if session is None:
            show_warning("no session yet: Ctrl-click a segment first")
            return
        target = self.target.value
        try:
            session.label(session.selected, class_name, target=target, refit=False)
        except SegclrError as error:
            show_error(str(error))
            return
        self.refit(target, background=background)

    def undo(self, *, background: bool = True) -> None:
        """Take back the last labels and refit."""
        if self.session is None:
            return
        for target in self.session.undo(refit=False):
            self.refit(target, background=background)

    def refit(self, target: str, *, background: bool = True) -> None:
        """Fit ``target``'s head on the labels: here if linear (fast), else in a worker."""
        session = self.session
        if session is None:
            return
        if target in self._fitting:
            self._refit_again.add(target)  # one more fit once this one is done
            return
        job = session.fit_job(target)
        if job is None:
            return
        if not background or session.head_kind == "linear":
            session.use_head(target, job())
            return
        self._fitting.add(target)

        def finish() -> None:
            self._fitting.discard(target)
            if target in self._refit_again:
                self._refit_again.discard(target)
                self.refit(target)

        task = Task(
            lambda progress: job(),
            description=f"fitting the {target} head",
            on_done=lambda head: self._use_head(session, target, head),
            on_finish=finish,
        )
        task.start()

    def _use_head(self, session: AnnotationSession, target: str, head: Any) -> None:
        if session is self.session:  # the session may have been replaced meanwhile
            session.use_head(target, head)

    def next_uncertain(self) -> int | None:
        """Select the unlabelled segment the head is least sure of and move there."""
        session = self.session
        if session is None:
            show_warning("no session yet: Ctrl-click a segment first")
            return None
        sid = session.next_uncertain(self.target.value)
        if sid is None:
            show_info("no unlabelled segment with a prediction: embed more segments or label")
            return None
        session.select_segments([sid])
        center = session.segment_center_nm(sid)
        self.viewer.dims.point = tuple(center)
        self.viewer.scene.camera.center = tuple(center[d] for d in self.viewer.dims.displayed)
        return sid

    def set_radius(self, radius_um: float, *, background: bool = True) -> None:
        """Average cell-type embeddings over ``radius_um`` along each segment."""
        if self.session is None:
            return
        self.session.set_radius(CELL_TYPE, radius_um, refit=False)
        self.refit(CELL_TYPE, background=background)

    def load_head(self, path: Any) -> None:
        """Predict the shown target with a head file."""
        if self.session is None:
            show_warning("no session yet: Ctrl-click a segment first")
            return
        try:
            self.session.load_head(self.target.value, Path(path))
        except SegclrError as error:
            show_error(str(error))
            return
        self.radius.value = self.session.radius_um(CELL_TYPE)
        self._target_changed()

    # ------------------------------------------------------- panel changes

    def _model_source_changed(self) -> None:
        self.checkpoint.visible = self.model_source.value == CHECKPOINT
        self._drop_session()

    def _pick_mode_changed(self) -> None:
        layer = self.segmentation_layer
        if self.pick_mode.value and layer is not None:
            layer.mode = "pan_zoom"

    def _target_changed(self) -> None:
        target = self.target.value
        self.radius.enabled = target == CELL_TYPE
        classes = DEFAULT_CLASSES[target] if self.session is None else self.session.classes(target)
        self.classes.value = ", ".join(classes)
        self._draw()
        self._show_answer()
        self._show_status()

    def _classes_edited(self) -> None:
        if self.session is None:
            return
        names = [n.strip() for n in self.classes.value.split(",") if n.strip()]
        try:
            self.session.set_classes(self.target.value, names)
        except SegclrError as error:
            show_error(str(error))
            self.classes.value = ", ".join(self.session.classes(self.target.value))

    def _annotator_changed(self) -> None:
        if self.session is not None and self.annotator.value.strip():
            self.session.annotator = self.annotator.value.strip()

    def _head_kind_changed(self) -> None:
        if self.session is not None:
            self.session.head_kind = self.head_kind.value
            for target in TARGETS:
                self.refit(target)

    def _default_folder(self) -> None:
        layer = self.segmentation_layer
        if layer is not None and str(self.folder.value) in ("", "."):
            self.folder.value = session_folder_for(layer.metadata.get("source"), layer.name)

    # ------------------------------------------------------------- drawing

    def _on_session_change(self, what: str) -> None:
        if what == "predictions":
            self._draw()
        if what in ("predictions", "selection", "annotations"):
            self._show_answer()
        if what in ("predictions", "annotations"):
            self._show_status()
        if what == "classes" and self.session is not None:
            self.classes.value = ", ".join(self.session.classes(self.target.value))

    def _draw(self) -> None:
        """Colour the segments, place the node markers, write the layer's features."""
        session, layer = self.session, self.segmentation_layer
        if session is None or layer is None or len(session.table) == 0:
            self._restore_colormap()
            if NODES_LAYER in self.viewer.layers:
                self.viewer.layers.remove(NODES_LAYER)
            return
        target = self.target.value
        colors = class_colors(session.classes(target))
        segments = session.segments(target)
        layer.features = merge_features(layer.features, session.segment_frame())
        if self.color_segments.value:
            if self._colored_layer is not layer:
                self._restore_colormap()
                self._original_colormap, self._colored_layer = layer.colormap, layer
            # Labels show until a head predicts (e.g. while only one class is labelled).
            shown = np.where(segments.predicted != "", segments.predicted, segments.annotation)
            color_dict = segment_color_dict(
                segments.segment_id, shown, segments.confidence, segments.rejected, colors
            )
            layer.colormap = DirectLabelColormap(color_dict=color_dict)
        else:
            self._restore_colormap()
        self._draw_nodes(session, target, colors)

    def _draw_nodes(self, session: AnnotationSession, target: str, colors: dict) -> None:
        nodes = session.nodes(target)
        style = marker_style(
            nodes.predicted,
            nodes.confidence,
            nodes.rejected,
            colors,
            size_nm=0.25 * session.spacing_nm,
        )
        features = {
            "segment_id": nodes.segment_id,
            "node_id": nodes.node_id,
            "predicted": nodes.predicted,
            "confidence": nodes.confidence,
            "rejected": nodes.rejected,
        }
        if NODES_LAYER in self.viewer.layers:
            points = self.viewer.layers[NODES_LAYER]
            points.data = nodes.position_nm
            points.features = features
            for name, value in style.items():
                setattr(points, name, value)
        else:
            active = self.viewer.layers.selection.active
            self.viewer.add_layer(
                Points(
                    nodes.position_nm,
                    name=NODES_LAYER,
                    features=features,
                    projection_mode="rescale_linear",  # nodes near the slice shrink with distance
                    **style,
                )
            )
            self.viewer.layers.selection.active = active  # keep the segmentation active

    def _restore_colormap(self) -> None:
        if self._colored_layer is not None and self._colored_layer in self.viewer.layers:
            self._colored_layer.colormap = self._original_colormap
        self._colored_layer = self._original_colormap = None

    def _show_answer(self) -> None:
        session = self.session
        if session is None or not session.selected:
            _set_text(self.answer, "Ctrl-click a segment to see what it is.")
            return
        sid = session.selected[-1]
        answers = [session.answer(sid, target) for target in TARGETS]
        _set_text(self.answer, format_answers(sid, answers))

    def _show_status(self) -> None:
        session = self.session
        self.undo_button.enabled = session is not None and session.can_undo
        if session is None:
            _set_text(self.status, "")
            return
        frame = session.annotations
        lines = []
        for target in TARGETS:
            counts = frame.loc[frame["target"] == target, "class"].value_counts()
            labelled = ", ".join(f"{name} {n}" for name, n in counts.items()) or "none"
            lines.append(f"{TARGET_NAMES[target]}: labelled {labelled}; {session.status(target)}")
        _set_text(self.status, "<br>".join(lines))

    # --------------------------------------------------------------- tasks

    def _busy(self) -> bool:
        return self._tasks.refuse("busy: wait for the work in progress, or cancel it")

    def _run(
        self,
        work: Callable[[Progress], Any],
        description: str,
        on_done: Callable[[Any], None],
        background: bool,
    ) -> None:
        self._set_busy(True)
        self._tasks.run(work, description=description, on_done=on_done, background=background)

    def _set_busy(self, busy: bool) -> None:
        self.embed_view_button.enabled = self.embed_all_button.enabled = not busy
        self.cancel_button.enabled = busy


def format_answers(segment_id: int, answers: Sequence[Answer]) -> str:
    """The panel's text (rich text) for one segment's answers."""
    n_nodes = max(a.n_nodes for a in answers)
    lines = [f"<b>segment {segment_id}</b> ({n_nodes} nodes embedded)"]
    for a in answers:
        name = TARGET_NAMES[a.target] + (f", R = {a.radius_um:g} µm" if a.radius_um else "")
        labelled = f" — labelled <b>{a.annotation}</b>" if a.annotation else ""
        if not a.predicted:
            lines.append(f"{name}: <i>{a.status}</i>{labelled}")
            continue
        verdict = " <b>out of distribution</b>" if a.rejected else ""
        ranked = sorted(zip(a.classes, a.probabilities, strict=True), key=lambda cp: -cp[1])
        probabilities = " · ".join(f"{c} {p:.2f}" for c, p in ranked)
        variance = "—" if np.isnan(a.variance) else f"{a.variance:.3f}"
        lines.append(
            f"{name}: <b>{a.predicted}</b> {a.confidence:.2f}{verdict}{labelled}<br>"
            f"&nbsp;&nbsp;{probabilities}<br>"
            f"&nbsp;&nbsp;entropy {a.entropy:.3f} · Dempster–Shafer {a.dempster_shafer:.3f} · "
            f"GP variance {variance}"
        )
    return "<br>".join(lines)


def layer_volume(layer: Any, kind: str) -> Any:
    data = list(layer.data) if layer.multiscale else layer.data
    return volume_from_layer_data(
        data,
        scale=tuple(layer.scale),
        translate=tuple(layer.translate),
        kind=kind,
        source=layer.metadata.get("source"),
        name=layer.name,
    )


def _load_model(spec: str | Path, device: str) -> tuple[Any, str, str]:
    """The model (shipped or a checkpoint), the device to use and a note ("" if none)."""
    import torch

    from ..model import load_checkpoint
    from ..model.shipped import load_shipped_model

    model, _ = load_shipped_model() if spec == SHIPPED else load_checkpoint(spec)
    if device == "cuda" and not torch.cuda.is_available():
        return model, "cpu", "CUDA is not available here: embedding on the CPU"
    return model, device, ""


def _pick(
    layer: Labels,
    position: Sequence[float],
    view_direction: Sequence[float] | None,
    dims_displayed: Sequence[int] | None,
) -> tuple[int, tuple[int, int, int]] | None:
    """The segment id and a voxel of it under a click, or None for background."""
    data = layer.data[0] if layer.multiscale else layer.data
    shape = np.asarray(data.shape)
    if view_direction is not None and dims_displayed is not None and len(dims_displayed) == 3:
        start, end = layer.get_ray_intersections(
            position, view_direction, list(dims_displayed), world=True
        )
        if start is None:
            return None
        steps = int(np.ceil(np.linalg.norm(np.asarray(end) - np.asarray(start)))) + 1
        voxels = np.round(np.linspace(start, end, steps)).astype(np.int64)
    else:
        voxels = np.round(np.asarray(layer.world_to_data(position))).astype(np.int64)[None]
    voxels = voxels[np.all((voxels >= 0) & (voxels < shape), axis=1)]
    if len(voxels) == 0:
        return None
    index = tuple(voxels.T)
    values = np.asarray(data.vindex[index] if hasattr(data, "vindex") else data[index])
    found = np.flatnonzero(values != 0)
    if len(found) == 0:
        return None
    first = found[0]  # the first segment along the ray is the one the user sees
    return int(values[first]), tuple(int(v) for v in voxels[first])


def _view_box_nm(viewer: Any, layer: Labels) -> tuple[np.ndarray, np.ndarray]:
    """The physical box (lo, hi) of the segmentation on screen: the slice shown, or all in 3D."""
    corners = np.asarray(layer.corner_pixels, float)
    if layer.multiscale:
        corners = corners * np.asarray(layer.downsample_factors[layer.data_level])
    displayed = list(viewer.dims.displayed)
    lo_voxel, hi_voxel = corners[0], corners[1] + 1
    current = np.asarray(layer.world_to_data(viewer.dims.point), float)
    hidden = [d for d in range(3) if d not in displayed]
    lo_voxel[hidden] = np.round(current[hidden])
    hi_voxel[hidden] = lo_voxel[hidden] + 1
    # Voxel i spans [i - 1/2, i + 1/2): the box runs from the first voxel's face to the last's.
    lo = np.asarray(layer.data_to_world(lo_voxel - 0.5))
    hi = np.asarray(layer.data_to_world(hi_voxel - 0.5))
    return np.minimum(lo, hi), np.maximum(lo, hi)

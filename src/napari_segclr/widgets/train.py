"""Train dock widget: train a SegCLR model from napari, watch its loss, then annotate with it.

Training runs :func:`napari_segclr.train.train` in a worker, on the EM and
Labels layers open in the viewer (skeletonised first) or on a synthetic
neuropil rendered in memory, with a progress bar, a live loss plot and
Cancel. The checkpoint is written every "checkpoint every" steps and after
the last; a cancelled run keeps the last one written, and ticking "Resume"
continues it exactly where it stopped. The loss of every step also goes to
``<checkpoint name>.loss.csv`` beside the checkpoint (as the ``train``
command writes it).

When training ends, the checkpoint becomes the model of the Annotate widget
docked in the same viewer (found with
:func:`~napari_segclr.widgets.annotate.annotate_widget`): its model source is
set to the checkpoint, and a session it had open is opened again with the new
model. Without an Annotate widget a notification gives the checkpoint's path.
"""

from __future__ import annotations

import collections
from datetime import datetime
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
    PushButton,
    SpinBox,
)
from napari.layers import Image, Labels
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QPointF, Qt, QTimer
from qtpy.QtGui import QColor, QPainter, QPen, QPolygonF
from qtpy.QtWidgets import QWidget

from ..model.presets import PRESETS
from ._layers import layer_choices
from ._tasks import Progress, TaskSlot
from .annotate import CHECKPOINT, annotate_widget, layer_volume

LAYERS, SYNTHETIC = "open layers", "synthetic neuropil"
#: How often (ms) the loss plot takes in the steps trained meanwhile.
REFRESH_MS = 250


def default_checkpoint() -> Path:
    """A new checkpoint file under ``~/.napari-segclr/checkpoints`` named by the time."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path.home() / ".napari-segclr" / "checkpoints" / f"segclr-{stamp}.pt"


class LossPlot(QWidget):
    """The loss per step: raw values faint, their running mean bold (QPainter, no plot library)."""

    def __init__(self) -> None:
        super().__init__()
        self.setMinimumHeight(110)
        self.steps = np.zeros(0, np.int64)
        self.losses = np.zeros(0)

    def set_losses(self, steps: np.ndarray, losses: np.ndarray) -> None:
        self.steps, self.losses = np.asarray(steps, np.int64), np.asarray(losses, float)
        self.update()

    def paintEvent(self, event: Any) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.fillRect(self.rect(), QColor("#1b1d22"))
        painter.setPen(QColor("#9aa0a6"))
        if len(self.losses) < 2:
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "the loss appears here")
            return
        margin_left, margin, width, height = 46, 14, self.width(), self.height()
        lo, hi = float(self.losses.min()), float(self.losses.max())
        hi = hi if hi > lo else lo + 1e-6
        first, last = int(self.steps[0]), int(self.steps[-1])

        def line(values: np.ndarray) -> QPolygonF:
            # One vertex per pixel column at most: a long run stays cheap to draw.
            keep = np.unique(np.linspace(0, len(values) - 1, min(len(values), width)).astype(int))
            x = margin_left + (self.steps[keep] - first) / max(last - first, 1) * (
                width - margin_left - margin
            )
            y = margin + (hi - values[keep]) / (hi - lo) * (height - 2 * margin - 12)
            return QPolygonF([QPointF(float(a), float(b)) for a, b in zip(x, y, strict=True)])

        painter.drawText(4, margin + 8, f"{hi:.3g}")
        painter.drawText(4, height - margin - 12, f"{lo:.3g}")
        painter.drawText(margin_left, height - 2, f"step {first}")
        painter.drawText(width - margin - 80, height - 2, f"step {last}")
        painter.setPen(QPen(QColor(90, 140, 220, 110), 1))
        painter.drawPolyline(line(self.losses))
        painter.setPen(QPen(QColor(255, 170, 60), 2))
        painter.drawPolyline(line(_running_mean(self.losses)))


class TrainWidget(Container):
    """Train SegCLR on the open layers or a synthetic neuropil; live loss; cancel and resume."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self.viewer = viewer
        self.source = ComboBox(label="Train on", choices=[LAYERS, SYNTHETIC], value=LAYERS)
        self.em_layer = ComboBox(label="EM", choices=layer_choices(viewer, Image))
        self.seg_layer = ComboBox(label="Segmentation", choices=layer_choices(viewer, Labels))
        self.synthetic_seed = SpinBox(label="Neuropil seed", value=0, min=0, max=2**31 - 1)
        self.synthetic_size = SpinBox(
            label="Neuropil size (voxels)",
            value=128,
            min=16,
            max=1024,
            tooltip="edge of the cube rendered in memory",
        )
        self.synthetic_voxel = FloatSpinBox(
            label="Neuropil voxel (nm)", value=32.0, min=2.0, max=200.0, step=1.0
        )
        self.preset = ComboBox(
            label="Model",
            choices=list(PRESETS),
            value="lite",
            tooltip="paper: 129³ views of 32 nm; lite: 33³ of 128 nm; tiny: 17³ of 256 nm (tests)",
        )
        self.steps = SpinBox(label="Steps", value=1000, min=1, max=10_000_000)
        self.batch_size = SpinBox(label="Pairs per step", value=32, min=2, max=4096)
        self.checkpoint_every = SpinBox(label="Checkpoint every", value=100, min=1, max=1_000_000)
        self.device = ComboBox(label="Device", choices=["auto", "cuda", "cpu"], value="auto")
        self.checkpoint = FileEdit(label="Checkpoint", mode="w", filter="*.pt")
        self.checkpoint.value = default_checkpoint()
        self.resume = CheckBox(text="Resume the run in this checkpoint")
        self.train_button = PushButton(text="Train")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.status = Label(value="")
        super().__init__(
            widgets=[
                self.source,
                self.em_layer,
                self.seg_layer,
                self.synthetic_seed,
                self.synthetic_size,
                self.synthetic_voxel,
                self.preset,
                self.steps,
                self.batch_size,
                self.checkpoint_every,
                self.device,
                self.checkpoint,
                self.resume,
                Container(
                    widgets=[self.train_button, self.cancel_button],
                    layout="horizontal",
                    labels=False,
                ),
                self.status,
            ]
        )
        self.loss_plot = LossPlot()
        layout = self.native.layout()
        layout.insertWidget(layout.count() - 1, self.loss_plot)  # above the status line
        self.status.native.setWordWrap(True)
        self.max_width = 480
        self._tasks = TaskSlot(on_idle=self._finish)
        self._updates: collections.deque = collections.deque()  # from the worker
        self._timer = QTimer()
        self._timer.setInterval(REFRESH_MS)
        self._timer.timeout.connect(self._take_updates)
        self._run_info: dict[str, Any] = {}
        self._first_step = 0  # the first step of this run (after the resumed checkpoint's)
        self._source_changed()
        self.source.changed.connect(self._source_changed)
        self.train_button.changed.connect(lambda: self.train())
        self.cancel_button.changed.connect(lambda: self._tasks.cancel())
        for event in (viewer.layers.events.inserted, viewer.layers.events.removed):
            event.connect(self._refresh_layer_choices)
        self.native.destroyed.connect(self._disconnect)

    def _disconnect(self, *_: Any) -> None:
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            event.disconnect(self._refresh_layer_choices)

    def _refresh_layer_choices(self, event: Any = None) -> None:
        self.em_layer.reset_choices()
        self.seg_layer.reset_choices()

    def _source_changed(self) -> None:
        layers = self.source.value == LAYERS
        for widget in (self.em_layer, self.seg_layer):
            widget.visible = layers
        for widget in (self.synthetic_seed, self.synthetic_size, self.synthetic_voxel):
            widget.visible = not layers

    # ------------------------------------------------------------- training

    def train(self, *, background: bool = True) -> None:
        """Train with the settings shown (in a worker); Cancel stops at the next step."""
        if self._tasks.refuse("busy: training is in progress; cancel it first"):
            return
        from ..runs import loss_log_path
        from ..train import TrainConfig

        if str(self.checkpoint.value) in ("", "."):
            show_error("choose a checkpoint file to write (Checkpoint)")
            return
        path = Path(self.checkpoint.value).expanduser()
        if path.exists() and not self.resume.value:
            show_error(
                f"checkpoint {path} exists: tick Resume to continue its run, or choose another file"
            )
            return
        if self.device.value == "cuda" and not _cuda_available():
            show_error("CUDA is not available here: choose Device ▸ auto or cpu")
            return
        make_data = self._data_maker()
        if make_data is None:
            return
        config = TrainConfig(
            model=self.preset.value,
            steps=self.steps.value,
            batch_size=self.batch_size.value,
            checkpoint_every=self.checkpoint_every.value,
            device=self.device.value,
        )
        log = loss_log_path(path)
        resume = self.resume.value
        self._start_plot(log if resume and path.exists() else None)
        self._run_info = {"path": path, "every": config.checkpoint_every, "resumed": path.exists()}
        updates = self._updates

        def work(progress: Progress) -> Any:
            from ..train import train

            data = make_data(progress)

            def report(update: Any) -> None:
                updates.append(update)
                progress(update.step, update.total)

            return train(data, config, checkpoint=path, resume=resume, progress=report, log=log)

        self._set_busy(True)
        self.status.value = "preparing the training data …"
        if background:
            self._timer.start()
        self._tasks.run(
            work, description="training SegCLR", on_done=self._trained, background=background
        )

    def _data_maker(self) -> Any:
        """A function ``progress -> TrainingData`` for the chosen source, or None (and why)."""
        if self.source.value == SYNTHETIC:
            from ..synthetic import NeuropilConfig

            config = NeuropilConfig(
                shape=(self.synthetic_size.value,) * 3,
                voxel_size=self.synthetic_voxel.value,
                seed=self.synthetic_seed.value,
            )

            def synthetic(progress: Progress) -> Any:
                from ..train import TrainingData

                return TrainingData.synthetic(config, progress=progress)

            return synthetic
        em, seg = (
            self._layer(w.value, kind)
            for w, kind in ((self.em_layer, Image), (self.seg_layer, Labels))
        )
        if em is None or seg is None:
            show_error(
                "choose the EM (an Image layer) and its segmentation (a Labels layer) to "
                "train on, or Train on ▸ synthetic neuropil"
            )
            return None

        def from_layers(progress: Progress) -> Any:
            from ..io import Dataset
            from ..train import TrainingData

            dataset = Dataset(layer_volume(em, "image"), layer_volume(seg, "labels"))
            return TrainingData.from_dataset(dataset, progress=progress)

        return from_layers

    def _layer(self, name: str | None, kind: type) -> Any:
        if name is None or name not in self.viewer.layers:
            return None
        layer = self.viewer.layers[name]
        return layer if isinstance(layer, kind) else None

    def _trained(self, result: Any) -> None:
        self._run_info["result"] = result
        self._take_updates()
        final = f", final loss {result.losses[-1]:.4f}" if len(result.losses) else ""
        self.status.value = (
            f"trained {result.step:,} steps ({result.steps_per_s:.3g} steps/s){final}; "
            f"wrote {Path(result.checkpoint).name}"
        )
        self.status.tooltip = str(result.checkpoint)
        self._hand_over(Path(result.checkpoint))

    def _hand_over(self, path: Path) -> None:
        """Make the checkpoint the Annotate widget's model (reopening its session), or say where."""
        widget = annotate_widget(self.viewer)
        if widget is None:
            show_info(
                f"trained model saved to {path}; annotate with it: Annotate ▸ Model ▸ {CHECKPOINT}"
            )
            return
        reopen = widget.session is not None
        widget.model_source.value = CHECKPOINT
        widget.checkpoint.value = path  # a new model: the widget drops its session
        if reopen:
            widget.open_session()
            show_info(f"the Annotate widget now embeds with {path.name}; its session is reopened")
        else:
            show_info(f"the Annotate widget will embed with {path.name}")

    def _finish(self) -> None:
        self._timer.stop()
        self._take_updates()
        self._set_busy(False)
        if "result" not in self._run_info:
            self.status.value = self._stopped_message()

    def _stopped_message(self) -> str:
        """Where a run that did not finish stopped and what of it is kept."""
        info, steps = self._run_info, self.loss_plot.steps
        path, every = info["path"], info["every"]
        if not len(steps):
            return "stopped before the first step; nothing was written"
        done = int(steps[-1])
        saved = done - done % every
        started = int(self._first_step) - 1
        if saved <= started:
            saved = started if info["resumed"] else 0
        if saved == 0:
            return f"stopped at step {done}: no checkpoint yet (one every {every} steps)"
        return (
            f"stopped at step {done}: {path.name} holds step {saved}; "
            "tick Resume and press Train to continue"
        )

    # ------------------------------------------------------------ the plot

    def _start_plot(self, log: Path | None) -> None:
        """Start the plot anew, or from the loss log of the run being resumed."""
        from ..runs import read_log

        self._updates.clear()
        self._first_step = 0
        steps, losses = np.zeros(0, np.int64), np.zeros(0)
        if log is not None and log.is_file():
            frame = read_log(log)
            steps, losses = frame["step"].to_numpy(np.int64), frame["loss"].to_numpy(float)
        self.loss_plot.set_losses(steps, losses)

    def _take_updates(self) -> None:
        """Add the steps the worker trained since the last look to the plot and the status."""
        new = []
        while self._updates:
            new.append(self._updates.popleft())
        if not new:
            return
        steps, losses = self.loss_plot.steps, self.loss_plot.losses
        if not self._first_step:
            self._first_step = new[0].step
            keep = steps < new[0].step  # a resumed run's log beyond its checkpoint is redone
            steps, losses = steps[keep], losses[keep]
        steps = np.r_[steps, [u.step for u in new]]
        losses = np.r_[losses, [u.loss for u in new]]
        self.loss_plot.set_losses(steps, losses)
        last = new[-1]
        self.status.value = (
            f"step {last.step:,} / {last.total:,} · loss {last.loss:.4f} · "
            f"{last.steps_per_s:.3g} steps/s"
        )

    # --------------------------------------------------------------- busy

    def _set_busy(self, busy: bool) -> None:
        self.train_button.enabled = not busy
        self.cancel_button.enabled = busy


def _running_mean(values: np.ndarray, window: int = 20) -> np.ndarray:
    """The mean of each value and up to ``window - 1`` before it."""
    sums = np.cumsum(np.r_[0.0, values])
    index = np.arange(1, len(values) + 1)
    start = np.maximum(index - window, 0)
    return (sums[index] - sums[start]) / (index - start)


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()

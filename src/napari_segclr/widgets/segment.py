"""Segment volume dock widget: an affinity network's segmentation of an image layer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import napari
from magicgui.widgets import ComboBox, Container, FileEdit, FloatSpinBox, Label, PushButton
from napari.layers import Image
from napari.utils.notifications import show_error

from ..io import Volume
from ._tasks import Progress, TaskSlot


class SegmentWidget(Container):
    """Pick a 3D image layer and an affinity checkpoint; add the segmentation as Labels.

    The image's ``scale`` is taken as its voxel size in nm and must match the
    network's (the layers this plugin opens carry it). The work runs in a
    worker with a progress bar and Cancel.
    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self.viewer = viewer
        self.image = ComboBox(
            label="EM image",
            choices=self._image_layers,
            tooltip="a 3D image layer; its scale is its voxel size in nm",
        )
        self.checkpoint = FileEdit(
            label="Checkpoint",
            mode="r",
            filter="*.pt",
            tooltip="affinity network written by finetune-mae",
        )
        self.threshold = FloatSpinBox(
            label="Threshold",
            value=0.5,
            min=0.05,
            max=0.95,
            step=0.05,
            tooltip="merge neighbouring fragments while their mean affinity exceeds this; "
            "lower merges more",
        )
        self.device = ComboBox(label="Device", choices=_devices(), value="auto")
        self.run_button = PushButton(text="Segment")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.status = Label(value="")
        super().__init__(
            widgets=[
                self.image,
                self.checkpoint,
                self.threshold,
                self.device,
                self.run_button,
                self.cancel_button,
                self.status,
            ]
        )
        self.run_button.changed.connect(lambda: self.segment())
        self.cancel_button.changed.connect(lambda: self._tasks.cancel())
        for event in (viewer.layers.events.inserted, viewer.layers.events.removed):
            event.connect(self.image.reset_choices)
        self.max_width = 480
        self._tasks = TaskSlot(on_idle=lambda: self._set_busy(False, ""))

    def segment(self, *, background: bool = True) -> None:
        """Segment the chosen image with the chosen checkpoint; adds a Labels layer."""
        layer = self.image.value
        checkpoint = Path(self.checkpoint.value).expanduser()
        if layer is None:
            show_error("Segment volume: open or choose a 3D image layer first")
            return
        if not checkpoint.is_file():
            show_error(f"Segment volume: checkpoint {checkpoint} does not exist")
            return
        volume = _layer_volume(layer)
        threshold, device = float(self.threshold.value), str(self.device.value)

        def work(progress: Progress) -> tuple[Volume, int]:
            from ..mae import load_affinity_model
            from ..segment import segment_volume

            model = load_affinity_model(checkpoint)
            segmentation = segment_volume(
                volume, model, threshold=threshold, device=device, progress=progress
            )
            return segmentation, int(segmentation.array.max())  # ids are 1..n

        description = f"segmenting {layer.name}"
        self._set_busy(True, description)
        self._tasks.run(
            work,
            description=description,
            on_done=lambda result: self._add_labels(*result, name=layer.name),
            background=background,
        )

    def _add_labels(self, segmentation: Volume, count: int, *, name: str) -> None:
        labels = self.viewer.add_labels(
            segmentation.array,
            name=f"{name} segmentation",
            scale=segmentation.voxel_size,
            translate=segmentation.offset,
        )
        self.viewer.layers.selection.active = labels
        self.status.value = f"{count} segments"

    def _image_layers(self, _: Any = None) -> list[tuple[str, Image]]:
        return [
            (layer.name, layer)
            for layer in self.viewer.layers
            if isinstance(layer, Image) and layer.ndim == 3 and not layer.rgb
        ]

    def _set_busy(self, busy: bool, description: str) -> None:
        self.run_button.enabled = not busy
        self.cancel_button.enabled = busy
        if busy:
            self.status.value = description + " …"


def _layer_volume(layer: Image) -> Volume:
    """The layer's (finest) data as a lazily read volume placed by its scale and translate."""
    data = layer.data[0] if layer.multiscale else layer.data
    return Volume(
        data,
        tuple(float(s) for s in layer.scale),
        tuple(float(t) for t in layer.translate),
        source=f"layer {layer.name!r}",
    )


def _devices() -> list[str]:
    import torch

    return ["auto", "cpu"] + (["cuda"] if torch.cuda.is_available() else [])

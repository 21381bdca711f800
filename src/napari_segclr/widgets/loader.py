"""Loader dock widget: open an EM volume and its segmentation, or the sample."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import napari
from magicgui.widgets import Container, FileEdit, FloatSpinBox, Label, PushButton, SpinBox
from napari.layers import Labels, Layer

from ..layers import LayerData, dataset_layers, sample_layers
from ._tasks import Progress, TaskSlot


class VoxelSizeEdit(Container):
    """Three spin boxes (z, y, x) in nm; all zero means "from the file"."""

    def __init__(self, label: str) -> None:
        self.boxes = [
            FloatSpinBox(value=0.0, min=0.0, max=1e6, step=1.0, tooltip=f"{axis} voxel size in nm")
            for axis in "zyx"
        ]
        super().__init__(widgets=self.boxes, layout="horizontal", label=label, labels=False)

    @property
    def nm(self) -> tuple[float, float, float] | None:
        values = tuple(float(b.value) for b in self.boxes)
        return None if not any(values) else values  # type: ignore[return-value]

    @nm.setter
    def nm(self, values: Sequence[float] | None) -> None:
        for box, v in zip(self.boxes, values or (0.0, 0.0, 0.0), strict=True):
            box.value = v


class LoaderWidget(Container):
    """Open EM + segmentation files lazily (any supported format), or the sample."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self.viewer = viewer
        self.em_path = FileEdit(
            label="EM volume",
            mode="r",
            tooltip="TIFF, HDF5 (file.h5:/dataset), Zarr, OME-Zarr, N5, precomputed",
        )
        self.em_voxel_size = VoxelSizeEdit("EM voxel (nm)")
        self.seg_path = FileEdit(
            label="Segmentation", mode="r", tooltip="optional; any supported format"
        )
        self.seg_voxel_size = VoxelSizeEdit("Seg voxel (nm)")
        self.open_button = PushButton(text="Open")
        self.seed = SpinBox(label="Sample seed", value=0, min=0, max=2**31 - 1)
        self.sample_button = PushButton(text="Load synthetic sample")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.status = Label(value="")
        super().__init__(
            widgets=[
                self.em_path,
                self.em_voxel_size,
                self.seg_path,
                self.seg_voxel_size,
                self.open_button,
                self.seed,
                self.sample_button,
                self.cancel_button,
                self.status,
            ]
        )
        self.open_button.changed.connect(lambda: self.open_files())
        self.sample_button.changed.connect(lambda: self.load_sample(seed=self.seed.value))
        self.cancel_button.changed.connect(lambda: self._tasks.cancel())
        self.max_width = 480  # leave the canvas most of the window
        self._tasks = TaskSlot(on_idle=lambda: self._set_busy(False, ""))

    def open_files(self, *, background: bool = True) -> None:
        """Open the chosen files as Image and Labels layers (lazily)."""
        em = str(self.em_path.value)
        seg = str(self.seg_path.value) if str(self.seg_path.value) not in ("", ".") else None
        em_vs, seg_vs = self.em_voxel_size.nm, self.seg_voxel_size.nm

        def work(progress: Progress) -> list[LayerData]:
            return dataset_layers(em, seg, em_voxel_size=em_vs, seg_voxel_size=seg_vs)

        self._run(work, f"opening {em}", background)

    def load_sample(self, *, seed: int = 0, background: bool = True) -> None:
        """Render the synthetic neuropil sample (EM, segmentation, ground truth)."""
        self._run(
            lambda progress: sample_layers(seed=seed, progress=progress),
            "rendering sample",
            background,
        )

    def _run(
        self, work: Callable[[Progress], list[LayerData]], description: str, background: bool
    ) -> None:
        self._set_busy(True, description)
        self._tasks.run(
            work, description=description, on_done=self._add_layers, background=background
        )

    def _add_layers(self, layer_data: list[LayerData]) -> None:
        layers = [self.viewer.add_layer(Layer.create(*data)) for data in layer_data]
        # the segmentation is what a user clicks next; select it rather than the last layer
        labels = [layer for layer in layers if layer.visible and isinstance(layer, Labels)]
        if labels:
            self.viewer.layers.selection.active = labels[0]
        self.status.value = f"added {len(layers)} layers"

    def _set_busy(self, busy: bool, description: str) -> None:
        self.open_button.enabled = self.sample_button.enabled = not busy
        self.cancel_button.enabled = busy
        if busy:
            self.status.value = description + " …"

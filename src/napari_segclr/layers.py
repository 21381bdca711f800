"""Library objects as napari layer data: ``(data, kwargs, layer_type)`` tuples.

Plain Python (napari is not imported), shared by the reader, the sample and
the widgets so a volume looks the same however it was opened.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .io.volume import LazyArray, Volume

LayerData = tuple[Any, dict[str, Any], str]
Progress = Callable[[int, int], None]

# napari shows 2D planes most of the time: thin chunks read one plane at a time.
_PLANE_CHUNK = (1, 1024, 1024)


def lazy_dask(array: LazyArray) -> Any:
    """A dask array over a lazy volume array, chunked for plane-by-plane display."""
    import dask.array as da

    chunks = tuple(min(c, s) for c, s in zip(_PLANE_CHUNK, array.shape, strict=True))
    meta = np.empty((0, 0, 0), dtype=array.dtype)
    return da.from_array(array, chunks=chunks, asarray=True, fancy=False, meta=meta)


def volume_layer(volume: Volume, *, name: str | None = None, **kwargs: Any) -> LayerData:
    """Layer data for a volume: lazy, placed in nm by ``scale`` and ``translate``."""
    levels = [lazy_dask(level) for level in volume.levels]
    meta: dict[str, Any] = {
        "name": name or _display_name(volume.source),
        "scale": volume.voxel_size,
        "translate": volume.offset,
        "multiscale": len(levels) > 1,
        "metadata": {"voxel_size": volume.voxel_size, "source": volume.source},
        **kwargs,
    }
    return (levels if len(levels) > 1 else levels[0]), meta, volume.kind


def dataset_layers(
    em: str | Path,
    segmentation: str | Path | None = None,
    *,
    em_voxel_size: Sequence[float] | None = None,
    seg_voxel_size: Sequence[float] | None = None,
) -> list[LayerData]:
    """Open an EM volume and (optionally) its segmentation as layer data."""
    from .io import open_dataset

    dataset = open_dataset(
        em, segmentation, em_voxel_size=em_voxel_size, seg_voxel_size=seg_voxel_size
    )
    layers = [volume_layer(dataset.em)]
    if dataset.segmentation is not None:
        layers.append(volume_layer(dataset.segmentation))
    return layers


def _display_name(source: str) -> str:
    path = source.split(":/")[0] if ":/" in source and "://" not in source else source
    return Path(path.rstrip("/")).name or source


def sample_layers(*, seed: int = 0, progress: Progress | None = None) -> list[LayerData]:
    """The synthetic neuropil sample: EM, segmentation and hidden ground truth.

    The segmentation layer's ``features`` give each segment's true cell type
    and class, so any napari tool can read them.
    """
    from .synthetic import render_all, sample_neuropil

    neuropil = sample_neuropil(seed)
    crop = render_all(neuropil, progress=progress)
    common = {"scale": neuropil.voxel_size, "translate": neuropil.config.offset}
    return [
        (crop.em, {"name": "EM", "contrast_limits": (0, 255), **common}, "image"),
        (
            crop.segmentation,
            {"name": "segmentation", "features": segment_truth(neuropil), **common},
            "labels",
        ),
        (crop.compartments, {"name": "compartments (truth)", "visible": False, **common}, "labels"),
        (crop.cells, {"name": "cells (truth)", "visible": False, **common}, "labels"),
    ]


def segment_truth(neuropil: Any) -> Any:
    """Per segment: the true cell type(s) and class(es) of the cells it holds."""
    nodes = neuropil.nodes()
    classes = neuropil.cell_table().set_index("cell_id")["cell_class"]
    nodes = nodes.assign(cell_class=classes.reindex(nodes["cell_id"]).to_numpy())
    grouped = nodes.groupby("segment_id", sort=True)
    table = grouped.agg(
        cell_type=("cell_type", lambda s: "+".join(sorted(set(s)))),
        cell_class=("cell_class", lambda s: "+".join(sorted(set(map(str, s))))),
        n_cells=("cell_id", "nunique"),
    )
    return table.rename_axis("index").reset_index()

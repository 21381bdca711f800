"""Segment an EM volume: tiled affinities, then watershed and agglomeration, then OME-Zarr."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ..exceptions import OutputExistsError, ShapeMismatchError
from ..io import Volume
from .agglomerate import agglomerate, check_thresholds
from .tiling import (
    VOXEL_SIZE_TOLERANCE,
    AffinityPredictor,
    Overlap,
    Progress,
    model_level,
    predict_affinities,
)


def segment_volume(
    volume: Volume | np.ndarray,
    model: AffinityPredictor,
    *,
    out: str | os.PathLike[str] | None = None,
    threshold: float = 0.5,
    seed_threshold: float = 0.5,
    link_threshold: float = 0.8,
    overlap: Overlap = 0.25,
    batch_size: int = 4,
    device: str = "auto",
    overwrite: bool = False,
    voxel_size_tolerance: float = VOXEL_SIZE_TOLERANCE,
    affinities: Any = None,
    progress: Progress | None = None,
) -> Any:
    """Segment ``volume`` with an affinity model into uint64 labels.

    Affinities are predicted tile by tile (:func:`predict_affinities`), then cut
    into watershed fragments and merged by mean affinity (:func:`agglomerate`).
    The affinities and labels of the segmented level are held in memory: about
    70 bytes a voxel at the peak (0.7 GB for 10⁷ voxels).

    Parameters
    ----------
    volume
        The EM volume (its level at the model's voxel size is segmented), or a
        3D numpy array taken to be at the model's voxel size.
    model
        An affinity network, e.g. from ``napari_segclr.mae.load_affinity_model``.
    out
        An OME-Zarr path to write the segmentation to (as a labels image with
        the volume's voxel size and offset); None keeps it in memory.
    threshold, seed_threshold, link_threshold
        Merging and fragment thresholds of :func:`agglomerate`.
    overlap, batch_size, device, voxel_size_tolerance
        As in :func:`predict_affinities`.
    affinities
        Affinities already predicted for the segmented level, (3, Z, Y, X)
        (e.g. the zarr array of :func:`predict_affinities_distributed`): read
        into memory and agglomerated, nothing predicted.
    overwrite
        Replace an existing ``out``; without it an existing ``out`` raises
        ``OutputExistsError`` before any work is done.
    progress
        Called as ``progress(done, total)``; the count restarts for each phase
        (tiles, agglomeration stages, written chunks). An exception raised
        there stops the work and leaves no output.

    Returns
    -------
    A labels :class:`Volume`: in memory, or reopened from ``out``. A numpy
    input without ``out`` gives a numpy array.
    """
    from ..io import open_volume, write_ome_zarr

    check_thresholds(
        threshold=threshold, seed_threshold=seed_threshold, link_threshold=link_threshold
    )
    if out is not None and Path(out).exists() and not overwrite:
        raise OutputExistsError(f"{out}: already exists; pass overwrite=True to replace it")
    level = model_level(volume, model, tolerance=voxel_size_tolerance)
    if affinities is None:
        affinities = predict_affinities(
            level,
            model,
            overlap=overlap,
            batch_size=batch_size,
            device=device,
            voxel_size_tolerance=voxel_size_tolerance,
            progress=progress,
        )
    else:
        affinities = _given_affinities(affinities, level.shape)
    labels = agglomerate(
        affinities,
        threshold=threshold,
        seed_threshold=seed_threshold,
        link_threshold=link_threshold,
        voxel_size=level.voxel_size,
        progress=progress,
    )
    del affinities
    if out is None and not isinstance(volume, Volume):
        return labels
    source = f"segmentation of {level.source}"
    result = Volume(labels, level.voxel_size, level.offset, kind="labels", source=source)
    if out is None:
        return result
    try:
        write_ome_zarr(result, out, overwrite=overwrite, progress=progress)
    except OutputExistsError:  # refused before anything was written
        raise
    except BaseException:  # a cancel or a failure half way: no partial store is left
        shutil.rmtree(out, ignore_errors=True)
        raise
    return open_volume(out)


def _given_affinities(affinities: Any, shape: tuple[int, ...]) -> np.ndarray:
    """Precomputed affinities in memory, checked against the level's shape and for gaps."""
    if tuple(affinities.shape) != (3, *shape):
        raise ShapeMismatchError(
            f"affinities: expected shape {(3, *shape)} for this volume, "
            f"got {tuple(affinities.shape)}"
        )
    array = np.asarray(affinities[...], dtype=np.float32)
    if not np.isfinite(array).all():
        raise ShapeMismatchError(
            "affinities: some voxels were never predicted (NaN); finish the affinity job first"
        )
    return array

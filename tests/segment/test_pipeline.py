"""segment_volume: EM in, labels out (in memory or OME-Zarr), with progress and cancel."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from napari_segclr.exceptions import OutputExistsError
from napari_segclr.io import Volume, open_volume
from napari_segclr.segment import segment_volume, segmentation_scores


@pytest.fixture
def em(cell_image) -> Volume:
    return Volume(cell_image, 10.0, offset=(100.0, -50.0, 0.0), source="toy em")


def test_segments_a_membrane_image(em, cell_interiors, membrane_model):
    result = segment_volume(em, membrane_model(), device="cpu")
    assert isinstance(result, Volume) and result.kind == "labels"
    assert result.voxel_size == em.voxel_size and result.offset == em.offset
    labels = result.read((slice(0, 20), slice(0, 28), slice(0, 28)))
    assert labels.dtype == np.uint64
    scores = segmentation_scores(cell_interiors, labels)  # membranes may go either way
    assert scores["adapted_rand_error"] < 0.01
    assert scores["voi"] < 0.05


def test_numpy_in_numpy_out(cell_image, membrane_model):
    labels = segment_volume(cell_image, membrane_model(), device="cpu")
    assert isinstance(labels, np.ndarray) and labels.shape == cell_image.shape


def test_writes_ome_zarr_and_keeps_what_exists(em, membrane_model, tmp_path):
    out = tmp_path / "seg.ome.zarr"
    written = segment_volume(em, membrane_model(), out=out, device="cpu")
    reopened = open_volume(out)
    assert reopened.kind == "labels" and reopened.voxel_size == (10.0, 10.0, 10.0)
    assert reopened.offset == em.offset and reopened.shape == em.shape
    assert np.array_equal(written.read((slice(0, 20),) * 3), reopened.read((slice(0, 20),) * 3))
    calls = []
    with pytest.raises(OutputExistsError, match=r"seg\.ome\.zarr"):
        segment_volume(em, membrane_model(), out=out, progress=lambda *a: calls.append(a))
    assert calls == []  # refused before any work
    segment_volume(em, membrane_model(), out=out, overwrite=True, device="cpu")


def test_progress_runs_through_the_phases_and_cancel_writes_nothing(em, membrane_model, tmp_path):
    calls = []
    out = tmp_path / "seg.ome.zarr"
    segment_volume(em, membrane_model(), out=out, device="cpu", progress=lambda *a: calls.append(a))
    totals = [total for _, total in calls]
    tiles, chunks = totals[0], totals[-1]
    assert calls[-1] == (chunks, chunks)
    assert (tiles, tiles) in calls and calls[-chunks - 3 : -chunks] == [(1, 3), (2, 3), (3, 3)]

    # cancelled while agglomerating, then at the last chunk written
    for stop_at in (calls.index((2, 3)), len(calls) - 1):
        count = itertools.count()

        def stop(done, total, stop_at=stop_at, count=count):
            if next(count) == stop_at:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            segment_volume(em, membrane_model(), out=tmp_path / "other.zarr", progress=stop)
        assert not (tmp_path / "other.zarr").exists()

"""Affinities on Dask: block by block equal to one process, resumable, refused when foreign."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import tifffile
import torch
import zarr

from napari_segclr.cluster import recorded_partitions
from napari_segclr.exceptions import OutputExistsError, ShapeMismatchError
from napari_segclr.segment import (
    predict_affinities,
    predict_affinities_distributed,
    segment_volume,
)

from .conftest import VOXEL_NM

BLOCK = (8, 12, 12)  # 3 × 3 × 3 blocks of the (20, 28, 28) cells, thinner than a tile at the end


@pytest.fixture
def run(thread_cluster, tmp_path, cell_image):
    """``run(model, out, **options)``: the job on the test cluster, for the cells' EM file."""
    em = tmp_path / "em.tif"
    tifffile.imwrite(em, cell_image)
    return partial(
        predict_affinities_distributed,
        em,
        client=thread_cluster,
        em_voxel_size=VOXEL_NM,
        block=BLOCK,
    )


def test_blocks_on_workers_equal_one_process_and_resume(run, cell_image, pointwise_model, tmp_path):
    model = pointwise_model()
    out = tmp_path / "affinities.zarr"
    seen = []
    array = run(
        model,
        out,
        device="cpu",
        progress=lambda done, total: seen.append((done, total)),
    )
    expected = predict_affinities(cell_image, model, device="cpu")
    np.testing.assert_allclose(array[...], expected, atol=1e-5)
    assert seen[-1] == (27, 27) and len(recorded_partitions(out)) == 27

    # A rerun finds every block recorded and computes nothing.
    seen.clear()
    again = run(
        model,
        out,
        progress=lambda *a: seen.append(a),
    )
    assert seen == [(0, 0)]
    np.testing.assert_array_equal(again[...], array[...])

    # Affinities given to the pipeline are agglomerated as the ones it predicts itself.
    labels = segment_volume(cell_image, model, affinities=expected, device="cpu")
    np.testing.assert_array_equal(labels, segment_volume(cell_image, model, device="cpu"))
    assert segment_volume(cell_image, model, affinities=again).shape == cell_image.shape


def test_an_interrupted_job_completes_only_what_is_missing(
    run, cell_image, pointwise_model, tmp_path
):
    model = pointwise_model()
    out = tmp_path / "affinities.zarr"

    def stop_after_five(done: int, total: int) -> None:
        if done == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(
            model,
            out,
            progress=stop_after_five,
        )
    finished = len(recorded_partitions(out))
    assert 5 <= finished < 27
    seen = []
    array = run(
        model,
        out,
        progress=lambda *a: seen.append(a),
    )
    # Blocks still running at the cancel may finish after it: fewer are left, never more.
    assert seen[-1][1] <= 27 - finished and len(recorded_partitions(out)) == 27
    np.testing.assert_allclose(array[...], predict_affinities(cell_image, model), atol=1e-5)


def test_foreign_output_and_gaps_are_refused(run, cell_image, pointwise_model, tmp_path):
    out = tmp_path / "affinities.zarr"
    run(pointwise_model(), out)
    other = pointwise_model()
    with torch.no_grad():
        other.mix.bias.add_(1.0)
    with pytest.raises(OutputExistsError, match="not an unfinished affinity job"):
        run(other, out)
    with pytest.raises(ShapeMismatchError, match="three positive"):
        run(other, tmp_path / "x.zarr", block=(8, 12))

    gaps = zarr.create_array(
        str(tmp_path / "gaps.zarr"),
        shape=(3, *cell_image.shape),
        dtype="float32",
        fill_value=np.nan,
    )
    with pytest.raises(ShapeMismatchError, match="never predicted"):
        segment_volume(cell_image, other, affinities=gaps)
    with pytest.raises(ShapeMismatchError, match="expected shape"):
        segment_volume(cell_image, other, affinities=np.zeros((3, 2, 2, 2), np.float32))

"""Tiled affinity inference: seamless blending, lazy reads, borders, sizes and errors."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
import zarr

from napari_segclr.exceptions import CheckpointError, ShapeMismatchError, VoxelSizeError
from napari_segclr.io import Volume
from napari_segclr.io.counting import ReadCounter
from napari_segclr.segment import TileGrid, model_level, predict_affinities


def smooth_image(shape) -> np.ndarray:
    """Intensity as a smooth function of position: any seam would show."""
    z, y, x = np.meshgrid(*(np.linspace(0, 1, n) for n in shape), indexing="ij")
    return (127 + 120 * np.sin(3 * z + 2 * y) * np.cos(5 * x)).astype(np.uint8)


def direct(model, image: np.ndarray) -> np.ndarray:
    """The model on the whole image at once (fine for a model without spatial context)."""
    x = torch.from_numpy(model.normalise(image))[None, None]
    with torch.no_grad():
        return torch.sigmoid(model(x))[0].numpy()


@pytest.mark.parametrize("overlap", [0, 0.25, 0.5, 5, (2, 0.5, 0.0)])
def test_blending_is_exact_for_a_model_without_context(pointwise_model, overlap):
    model = pointwise_model()
    image = smooth_image((19, 30, 37))  # not a multiple of the (8, 12, 16) tile
    affinities = predict_affinities(image, model, overlap=overlap, batch_size=3, device="cpu")
    assert affinities.shape == (3, 19, 30, 37) and affinities.dtype == np.float32
    np.testing.assert_allclose(affinities, direct(model, image), atol=2e-6)


def test_no_seams_where_tiles_meet(membrane_model):
    """A model whose tile edges are wrong still gives a smooth whole."""
    model = membrane_model(patch_shape=(8, 8, 8))
    image = smooth_image((24, 24, 24))
    truth = direct(model, image)  # the model's padding touches only the volume's faces
    blended = predict_affinities(image, model, overlap=0.5, device="cpu")
    inner = (slice(None), slice(1, None), slice(1, None), slice(1, None))
    error = np.abs(blended - truth)[inner]
    assert error.max() < 0.05
    # the worst error of tiling without overlap sits on the tile faces; blending removes it
    abutting = predict_affinities(image, model, overlap=0, device="cpu")
    assert np.abs(abutting - truth)[inner].max() > 4 * error.max()


def test_tiles_read_only_their_boxes(pointwise_model):
    model = pointwise_model(patch_shape=(8, 8, 8))
    counter = ReadCounter(smooth_image((20, 30, 26)))
    grid = TileGrid.build(counter.shape, model.patch_shape, 0.25)
    predict_affinities(Volume(counter, 10.0), model, overlap=0.25, batch_size=4, device="cpu")
    assert counter.n_reads == len(grid.corners())
    for key, corner in zip(counter.reads, grid.corners(), strict=True):
        assert key == grid.inside(corner)
        assert all(s.stop - s.start <= 8 for s in key)
    assert counter.voxels_read <= len(grid.corners()) * 8**3


def test_grid_weights_sum_to_one_and_reach_past_the_faces():
    grid = TileGrid.build((40, 9, 100), (16, 16, 32), 0.25)
    for axis, n in enumerate(grid.shape):
        total = np.zeros(n)
        for start, weights in zip(grid.starts[axis], grid.weights[axis], strict=True):
            lo = max(start, 0)
            total[lo : lo + len(weights)] += weights
        np.testing.assert_allclose(total, 1, rtol=1e-6)
    assert grid.starts[0][0] < 0 and grid.starts[0][-1] + 16 > 40  # context beyond the faces
    assert grid.starts[1] == (-3,)  # smaller than a tile: one tile, centred


def test_tile_outside_the_volume_is_mirrored():
    image = np.arange(4 * 5 * 6, dtype=np.uint8).reshape(4, 5, 6)
    grid = TileGrid.build(image.shape, (8, 8, 8), 0)
    tile = grid.read(Volume(image, 1.0), grid.corners()[0])
    assert tile.shape == (8, 8, 8)
    np.testing.assert_array_equal(tile[2:6, 1:6, 1:7], image)
    np.testing.assert_array_equal(tile[1], tile[3])  # reflection about the first plane


def test_volume_smaller_than_a_tile(pointwise_model):
    model = pointwise_model()
    image = smooth_image((3, 1, 5))
    affinities = predict_affinities(image, model, device="cpu")
    np.testing.assert_allclose(affinities, direct(model, image), atol=2e-6)


def test_writes_into_a_zarr_array(pointwise_model, tmp_path):
    model = pointwise_model()
    image = smooth_image((10, 20, 20))
    out = zarr.create_array(tmp_path / "affinities.zarr", shape=(3, 10, 20, 20), dtype="float32",
                            chunks=(3, 8, 8, 8))  # fmt: skip
    out[:] = 7  # stale content is cleared
    returned = predict_affinities(image, model, out=out, device="cpu")
    assert returned is out
    np.testing.assert_allclose(out[:], predict_affinities(image, model, device="cpu"), atol=1e-6)


def test_progress_counts_tiles_and_its_exception_cancels(pointwise_model):
    model = pointwise_model(patch_shape=(8, 8, 8))
    image = smooth_image((16, 16, 30))
    calls = []
    record = calls.append
    predict_affinities(image, model, batch_size=5, device="cpu", progress=lambda *a: record(a))
    total = len(TileGrid.build(image.shape, (8, 8, 8), 0.25).corners())
    assert calls[-1] == (total, total) and len(calls) == -(-total // 5)

    class Stop(Exception):
        pass

    def stop(done, total):
        calls.append((done, total))
        raise Stop

    threads = threading.active_count()
    calls.clear()
    with pytest.raises(Stop):
        predict_affinities(image, model, batch_size=2, device="cpu", progress=stop)
    assert calls == [(2, total)]
    assert threading.active_count() == threads  # the reader thread has ended


def test_multiscale_volume_uses_the_level_at_the_model_voxel_size(pointwise_model):
    model = pointwise_model(voxel_size_nm=(20.0, 20.0, 20.0))
    fine, coarse = smooth_image((16, 16, 16)), smooth_image((8, 8, 8))
    volume = Volume(fine, 10.0, levels=(fine, coarse), level_voxel_sizes=((10,) * 3, (20,) * 3))
    assert model_level(volume, model).voxel_size == (20.0, 20.0, 20.0)
    affinities = predict_affinities(volume, model, device="cpu")
    np.testing.assert_allclose(affinities, direct(model, coarse), atol=2e-6)


def test_voxel_size_tolerance(pointwise_model):
    model = pointwise_model()
    image = smooth_image((8, 8, 8))
    assert predict_affinities(Volume(image, (10.5, 9.5, 10)), model, device="cpu").shape[0] == 3
    with pytest.raises(VoxelSizeError, match=r"\(12, 10, 10\) nm differs from the model's"):
        predict_affinities(Volume(image, (12, 10, 10), source="em.tif"), model, device="cpu")
    loose = predict_affinities(
        Volume(image, (12, 10, 10)), model, device="cpu", voxel_size_tolerance=0.25
    )
    assert loose.shape == (3, 8, 8, 8)


@pytest.mark.parametrize("shape", [(0, 4, 4), (4, 4), (2, 3, 4, 5)])
def test_empty_or_not_3d_volumes_are_refused(pointwise_model, shape):
    with pytest.raises(ShapeMismatchError, match=r"empty|3D"):
        predict_affinities(np.zeros(shape, np.uint8), pointwise_model(), device="cpu")


@pytest.mark.parametrize("overlap", [1.0, -0.1, 8, -1, (0.1, 0.2), "half"])
def test_bad_overlap_is_refused(pointwise_model, overlap):
    with pytest.raises(ValueError, match="overlap"):
        predict_affinities(np.zeros((4, 4, 4), np.uint8), pointwise_model(), overlap=overlap)


def test_model_that_breaks_the_contract_is_named(pointwise_model):
    model = pointwise_model()
    model.forward = lambda x: x  # one channel, not three
    with pytest.raises(CheckpointError, match="returned shape"):
        predict_affinities(np.zeros((4, 4, 4), np.uint8), model, device="cpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(membrane_model):
    image = smooth_image((20, 40, 40))
    on_cpu = predict_affinities(image, membrane_model(), device="cpu")
    on_gpu = predict_affinities(image, membrane_model(), device="cuda", batch_size=8)
    np.testing.assert_allclose(on_gpu, on_cpu, atol=0.02)  # bf16 autocast

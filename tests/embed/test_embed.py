"""Embedding segments into a store: every node once, resumable, refusing the wrong store."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_segclr.embed import (
    embed_fragment,
    embed_segments,
    embedding_signature,
    resolve_device,
)
from napari_segclr.exceptions import (
    SegmentNotFoundError,
    SegmentTooSmallError,
    ShapeMismatchError,
    StoreSignatureError,
)
from napari_segclr.io import Dataset, Volume
from napari_segclr.model import SegclrModel, get_preset, model_signature
from napari_segclr.skeleton import resample, skeletonize_volume
from napari_segclr.store import EmbeddingStore

ROD_X = 2**60 + 1  # runs the whole volume along x: touches two faces
ROD_Y = 2**63 + 5  # above 2**63: exact only as uint64
DOT = 7  # a single voxel: too small to skeletonise
SHAPE = (40, 64, 64)
SPACING = 500.0
CPU = {"device": "cpu", "spacing_nm": SPACING}


@pytest.fixture(scope="module")
def rods() -> Dataset:
    """2.6 × 4.1 × 4.1 µm at 64 nm: two rods 6 voxels thick and a one-voxel segment."""
    em = np.random.default_rng(0).integers(0, 256, SHAPE, dtype=np.uint8)
    seg = np.zeros(SHAPE, dtype=np.uint64)
    seg[8:14, 8:14, :] = ROD_X
    seg[24:30, 2:62, 40:46] = ROD_Y
    seg[35, 50, 10] = DOT
    return Dataset(
        Volume(em, 64.0, source="rods: em"),
        Volume(seg, 64.0, kind="labels", source="rods: segmentation"),
    )


@pytest.fixture(scope="module")
def skeletons(rods) -> dict:
    return skeletonize_volume(rods.segmentation, segment_ids=[ROD_X, ROD_Y])


def tiny_model(seed: int) -> SegclrModel:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return SegclrModel(get_preset("tiny")).eval()


@pytest.fixture
def model() -> SegclrModel:
    return tiny_model(0)


def snapshot(path) -> dict:
    """Every file of a store and its bytes."""
    return {p.relative_to(path): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_every_node_of_the_segments_is_stored_once(rods, model, skeletons, tmp_path):
    result = embed_segments(
        rods, model, tmp_path / "s.zarr", segment_ids=[ROD_X, ROD_Y], batch_size=4, **CPU
    )
    table = EmbeddingStore.open(tmp_path / "s.zarr").read()
    expected = {sid: resample(skeletons[sid], SPACING) for sid in (ROD_X, ROD_Y)}
    n_nodes = sum(len(s) for s in expected.values())
    assert (result.segments, result.nodes, result.embedded) == (2, n_nodes, n_nodes)
    assert (result.already_stored, result.outside) == (0, 0)
    assert len(table) == n_nodes and result.views_per_s > 0
    assert table.segment_id.dtype == np.uint64
    for sid, skel in expected.items():
        rows = table.segment_id == np.uint64(sid)
        assert table.node_id[rows].tolist() == list(range(len(skel)))
        np.testing.assert_allclose(table.position_nm[rows], skel.nodes)
    # A node is the model's embedding of the view around it.
    assert table.embedding.shape == (n_nodes, 64) and np.isfinite(table.embedding).all()
    assert np.unique(table.embedding, axis=0).shape[0] == n_nodes


def test_rerun_adds_nothing(rods, model, tmp_path):
    path = tmp_path / "s.zarr"
    first = embed_segments(rods, model, path, segment_ids=[ROD_Y], **CPU)
    before = snapshot(path)
    again = embed_segments(rods, model, path, segment_ids=[ROD_Y], **CPU)
    assert again.embedded == 0 and again.already_stored == first.embedded > 0
    assert snapshot(path) == before


def test_interrupted_run_completes_to_the_single_run(rods, model, skeletons, tmp_path):
    whole = tmp_path / "whole.zarr"
    embed_segments(rods, model, whole, skeletons=skeletons, batch_size=4, **CPU)

    class Stop(Exception):
        pass

    def stop_after_two_batches(done: int, total: int) -> None:
        if done >= 8:
            raise Stop

    parts = tmp_path / "parts.zarr"
    with pytest.raises(Stop):
        embed_segments(
            rods,
            model,
            parts,
            skeletons=skeletons,
            batch_size=4,
            progress=stop_after_two_batches,
            **CPU,
        )
    assert len(EmbeddingStore.open(parts)) == 4  # the batch in flight is lost, no more
    rest = embed_segments(rods, model, parts, skeletons=skeletons, batch_size=4, **CPU)
    assert rest.already_stored == 4

    a, b = EmbeddingStore.open(whole).read(), EmbeddingStore.open(parts).read()
    np.testing.assert_array_equal(a.segment_id, b.segment_id)
    np.testing.assert_array_equal(a.node_id, b.node_id)
    np.testing.assert_array_equal(a.position_nm, b.position_nm)
    np.testing.assert_allclose(a.embedding, b.embedding, atol=1e-5)


def test_store_of_another_model_is_refused_and_left_intact(rods, model, tmp_path):
    path = tmp_path / "s.zarr"
    embed_segments(rods, model, path, segment_ids=[ROD_Y], **CPU)
    before = snapshot(path)
    with pytest.raises(StoreSignatureError, match="another signature"):
        embed_segments(rods, tiny_model(1), path, segment_ids=[ROD_X], **CPU)
    with pytest.raises(StoreSignatureError, match="node_spacing_nm"):
        embed_segments(rods, model, path, segment_ids=[ROD_X], device="cpu", spacing_nm=750)
    assert snapshot(path) == before


@pytest.mark.parametrize(
    ("ids", "error", "match"),
    [
        ([0], SegmentNotFoundError, "background"),
        ([123456], SegmentNotFoundError, "123456"),
        ([ROD_X, DOT], SegmentNotFoundError, "segment.*7.*under"),
    ],
)
def test_bad_segment_ids_fail_before_any_store_is_made(rods, model, tmp_path, ids, error, match):
    with pytest.raises(error, match=match):
        embed_segments(rods, model, tmp_path / "s.zarr", segment_ids=ids, **CPU)
    assert not (tmp_path / "s.zarr").exists()


def test_bad_segment_ids_leave_an_existing_store_intact(rods, model, tmp_path):
    path = tmp_path / "s.zarr"
    embed_segments(rods, model, path, segment_ids=[ROD_Y], **CPU)
    before = snapshot(path)
    with pytest.raises(SegmentNotFoundError):
        embed_segments(rods, model, path, segment_ids=[ROD_X, 99], **CPU)
    assert snapshot(path) == before


def test_all_segments_leave_dust_out(rods, model, tmp_path):
    result = embed_segments(rods, model, tmp_path / "s.zarr", **CPU)
    stored = EmbeddingStore.open(tmp_path / "s.zarr").segments().tolist()
    assert stored == [ROD_X, ROD_Y] and result.segments == 2


def test_nodes_outside_the_em_are_skipped(rods, model, tmp_path):
    half = Volume(np.asarray(rods.em.array)[:, :, :32], 64.0, source="half em")
    result = embed_segments(
        Dataset(half, rods.segmentation), model, tmp_path / "s.zarr", segment_ids=[ROD_X], **CPU
    )
    assert result.outside > 0 and result.embedded == result.nodes - result.outside > 0


def test_fragment_is_embedded_once_and_returned(rods, model, tmp_path):
    path = tmp_path / "s.zarr"
    rows = embed_fragment(rods, model, path, ROD_Y, seed_voxel=(26, 30, 42), **CPU)
    assert set(rows.segment_id.tolist()) == {ROD_Y} and len(rows) > 3
    before = snapshot(path)
    again = embed_fragment(rods, model, path, ROD_Y, seed_voxel=(27, 10, 44), **CPU)
    assert snapshot(path) == before
    np.testing.assert_array_equal(again.embedding, rows.embedding)


def test_fragment_bad_clicks(rods, model, tmp_path):
    path = tmp_path / "s.zarr"
    with pytest.raises(SegmentTooSmallError):
        embed_fragment(rods, model, path, DOT, seed_voxel=(35, 50, 10), **CPU)
    with pytest.raises(SegmentNotFoundError, match="background"):
        embed_fragment(rods, model, path, 0, seed_voxel=(35, 50, 10), **CPU)
    with pytest.raises(ShapeMismatchError, match="outside"):
        embed_fragment(rods, model, path, ROD_Y, seed_voxel=(99, 0, 0), **CPU)
    with pytest.raises(SegmentNotFoundError, match="not in"):
        embed_fragment(rods, model, path, ROD_Y, seed_voxel=(2, 2, 2), **CPU)
    assert not path.exists()


def test_dataset_without_segmentation_is_refused(rods, model, tmp_path):
    with pytest.raises(ShapeMismatchError, match="segmentation"):
        embed_segments(Dataset(rods.em), model, tmp_path / "s.zarr", **CPU)


def test_signature_names_model_data_and_spacing(rods, model):
    signature = embedding_signature(model, rods, spacing_nm=SPACING)
    assert signature["model"] == model_signature(model)
    assert signature["model_config"] == get_preset("tiny").to_dict()
    assert signature["data"]["em"]["source"] == "rods: em"
    assert signature["data"]["segmentation"]["voxel_size_nm"] == [64.0, 64.0, 64.0]
    assert signature["node_spacing_nm"] == SPACING


def test_device_names():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="device"):
        resolve_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


@pytest.mark.gpu
def test_cuda_embeddings_match_cpu(rods, model, tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    embed_segments(rods, model, tmp_path / "cpu.zarr", segment_ids=[ROD_Y], **CPU)
    cuda = {**CPU, "device": "cuda"}
    embed_segments(rods, model, tmp_path / "gpu.zarr", segment_ids=[ROD_Y], **cuda)
    a = EmbeddingStore.open(tmp_path / "cpu.zarr").read().embedding
    b = EmbeddingStore.open(tmp_path / "gpu.zarr").read().embedding
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosine.min() > 0.99  # bf16 autocast

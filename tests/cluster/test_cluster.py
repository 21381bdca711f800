"""Embedding on Dask: the same store as one process, every node once, through worker and
driver crashes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import zarr

from napari_segclr import cluster
from napari_segclr.cluster import (
    DatasetSpec,
    embed_distributed,
    local_client,
    partition_points,
    recorded_partitions,
)
from napari_segclr.embed import embed_segments
from napari_segclr.exceptions import SegmentNotFoundError, StoreSignatureError
from napari_segclr.io import Dataset
from napari_segclr.model import SegclrModel, get_preset, save_checkpoint
from napari_segclr.skeleton import resample
from napari_segclr.store import EmbeddingStore, EmbeddingTable
from napari_segclr.synthetic import Neuropil, NeuropilConfig
from napari_segclr.train import TrainingData
from napari_segclr.views import ViewPoints, ViewSpec

CONFIG = NeuropilConfig(shape=(16, 32, 32), voxel_size=128.0, seed=1)  # 2 × 4 × 4 µm
SPACING = 2000.0
SMALL = {"spacing_nm": SPACING, "batch_size": 8, "device": "cpu"}


@pytest.fixture(scope="module")
def model() -> SegclrModel:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return SegclrModel(get_preset("tiny")).eval()


@pytest.fixture(scope="module")
def truth() -> TrainingData:
    """The neuropil rendered whole, with the skeletons of its ground-truth nodes."""
    return TrainingData.synthetic(CONFIG)


@pytest.fixture(scope="module")
def reference(truth, model, tmp_path_factory) -> EmbeddingTable:
    """What one process stores for the ground-truth skeletons."""
    path = tmp_path_factory.mktemp("reference") / "store.zarr"
    embed_segments(truth.dataset, model, path, skeletons=truth.skeletons, **SMALL)
    return EmbeddingStore.open(path).read()


def lazy_dataset() -> Dataset:
    """The neuropil as the workers open it (so stores of both have one signature)."""
    volumes = Neuropil(CONFIG).volumes()
    return Dataset(volumes["em"], volumes["segmentation"])


def raw_rows(path: Path) -> int:
    """Rows in all committed parts, duplicates included."""
    parts = [part for part in (path / "parts").iterdir() if part.is_dir()]
    return sum(zarr.open_group(str(part), mode="r").attrs["rows"] for part in parts)


def assert_same_rows(table: EmbeddingTable, reference: EmbeddingTable) -> None:
    np.testing.assert_array_equal(table.segment_id, reference.segment_id)
    np.testing.assert_array_equal(table.node_id, reference.node_id)
    np.testing.assert_array_equal(table.position_nm, reference.position_nm)
    np.testing.assert_allclose(table.embedding, reference.embedding, atol=1e-5)


def assert_matches_ground_truth(path: Path, reference: EmbeddingTable) -> None:
    """The reference rows, plus one row per segment seen at a single true node.

    Training data keeps only skeletons with an edge; embedding keeps them all.
    """
    table = EmbeddingStore.open(path).read()
    assert raw_rows(path) == len(table)  # no node stored twice, even in separate parts
    known = np.isin(table.segment_id, reference.segment_id)
    assert_same_rows(table.take(known), reference)
    extra = table.take(~known)
    assert np.all(extra.node_id == 0) and len(np.unique(extra.segment_id)) == len(extra)


# ----------------------------------------------------------------------------- plan


@pytest.mark.parametrize("by", ["segments", "chunks"])
def test_partitions_hold_every_point_once(truth, by):
    skeletons = [resample(truth.skeletons[sid], SPACING) for sid in sorted(truth.skeletons)]
    points = ViewPoints.from_skeletons(skeletons)
    parts = partition_points(points, by=by, chunk_nm=1000.0, max_views=16, origin_nm=(-64,) * 3)
    keys = np.concatenate(
        [np.stack([p.points.segment_ids, p.points.node_ids.astype(np.uint64)], 1) for p in parts]
    )
    expected = np.stack([points.segment_ids, points.node_ids.astype(np.uint64)], 1)
    assert len(keys) == len(points) and len(np.unique(keys, axis=0)) == len(points)
    np.testing.assert_array_equal(np.unique(keys, axis=0), np.unique(expected, axis=0))
    assert max(len(p) for p in parts) <= 16 and len({p.digest for p in parts}) == len(parts)
    if by == "chunks":  # a partition's centres all lie in one chunk's core
        for part in parts:
            cells = np.floor((part.points.centers_nm + 64) / 1000.0)
            assert len(np.unique(cells, axis=0)) == 1
    again = partition_points(points, by=by, chunk_nm=1000.0, max_views=16, origin_nm=(-64,) * 3)
    assert [p.digest for p in again] == [p.digest for p in parts]


def test_a_partition_holds_its_voxels_and_halo_read_as_the_volume():
    """A task reads its box and halo at once; reads reaching past it go to the volume."""
    dataset = lazy_dataset()
    points = ViewPoints([1, 1], [0, 1], [[500.0, 500.0, 500.0], [700.0, 900.0, 600.0]])
    spec = ViewSpec.from_config(get_preset("tiny"))
    held = cluster._with_halo(cluster._Synthetic(CONFIG), dataset, points, spec)
    assert held.em.source == dataset.em.source and held.em.offset == dataset.em.offset
    inside = (slice(0, 10), slice(0, 12), slice(0, 12))
    across = (slice(0, 16), slice(5, 32), slice(20, 32))  # the halo ends before the volume
    for box in (inside, across):
        np.testing.assert_array_equal(held.em.read(box), dataset.em.read(box))
        np.testing.assert_array_equal(held.segmentation.read(box), dataset.segmentation.read(box))


def test_bad_options_are_refused_before_any_work(model, tmp_path):
    path = tmp_path / "s.zarr"
    with pytest.raises(ValueError, match="partition"):
        embed_distributed(CONFIG, model, path, partition="slabs")
    with pytest.raises(ValueError, match="chunk_nm"):
        embed_distributed(CONFIG, model, path, chunk_nm=-1)
    with pytest.raises(ValueError, match="append_rows"):
        embed_distributed(CONFIG, model, path, append_rows=0)
    with pytest.raises(TypeError, match="DatasetSpec or a NeuropilConfig"):
        embed_distributed(lazy_dataset(), model, path)
    assert not path.exists()


# ----------------------------------------------------------------------------- equality


@pytest.mark.parametrize("by", ["segments", "chunks"])
def test_store_matches_one_process(thread_cluster, truth, model, reference, tmp_path, by):
    seen = []
    result = embed_distributed(
        CONFIG,
        model,
        tmp_path / "s.zarr",
        client=thread_cluster,
        partition=by,
        chunk_nm=1024.0,
        partition_views=24,
        skeletons=truth.skeletons,
        progress=lambda done, total: seen.append((done, total)),
        **SMALL,
    )
    assert_same_rows(EmbeddingStore.open(tmp_path / "s.zarr").read(), reference)
    assert (result.nodes, result.embedded, result.segments) == (
        len(reference),
        len(reference),
        len(truth.skeletons),
    )
    assert result.partitions == result.partitions_run > 1 and result.partitions_skipped == 0
    assert result.workers == 2 and result.views_per_s > 0
    assert seen[0] == (0, len(reference)) and seen[-1] == (len(reference), len(reference))
    assert recorded_partitions(tmp_path / "s.zarr") == {
        p.digest
        for p in partition_points(
            ViewPoints(reference.segment_id, reference.node_id, reference.position_nm),
            by=by,
            chunk_nm=1024.0,
            max_views=24,
            origin_nm=lazy_dataset().overlap_nm()[0],
        )
    }


def test_ground_truth_skeletons_are_planned_on_the_workers(
    thread_cluster, model, reference, tmp_path
):
    result = embed_distributed(CONFIG, model, tmp_path / "s.zarr", client=thread_cluster, **SMALL)
    assert_matches_ground_truth(tmp_path / "s.zarr", reference)
    assert result.embedded == result.nodes >= len(reference)


def test_a_rerun_finds_every_partition_recorded(thread_cluster, truth, model, tmp_path):
    args = (CONFIG, model, tmp_path / "s.zarr")
    first = embed_distributed(*args, client=thread_cluster, skeletons=truth.skeletons, **SMALL)
    again = embed_distributed(*args, client=thread_cluster, skeletons=truth.skeletons, **SMALL)
    assert (again.partitions_run, again.partitions_skipped) == (0, first.partitions)
    assert again.embedded == 0 and again.already_stored == first.embedded


def test_the_model_is_built_once_per_worker(thread_cluster, truth, model, tmp_path, monkeypatch):
    """Tasks carry points only: the workers place the plugin's model once each."""
    built = []
    placed = cluster.ModelPlugin._placed

    def counting(plugin, device):
        built.append(1)
        return placed(plugin, device)

    monkeypatch.setattr(cluster.ModelPlugin, "_placed", counting)
    result = embed_distributed(
        CONFIG,
        model,
        tmp_path / "s.zarr",
        client=thread_cluster,
        partition_views=16,
        skeletons=truth.skeletons,
        **SMALL,
    )
    assert result.partitions_run >= 6 and 1 <= len(built) <= 2


# ----------------------------------------------------------------------------- faults


def test_a_half_done_partition_is_completed_without_duplicates(
    thread_cluster, truth, model, reference, tmp_path
):
    """Rows a crashed worker committed (no marker): the rerun embeds only the others."""
    path = tmp_path / "s.zarr"
    some = sorted(truth.skeletons)[::3]
    done = embed_segments(
        lazy_dataset(), model, path, segment_ids=some, skeletons=truth.skeletons, **SMALL
    )
    result = embed_distributed(
        CONFIG,
        model,
        path,
        client=thread_cluster,
        partition="segments",
        skeletons=truth.skeletons,
        **SMALL,
    )
    assert result.already_stored == done.embedded > 0
    assert result.embedded == len(reference) - done.embedded
    assert raw_rows(path) == len(reference)
    assert_same_rows(EmbeddingStore.open(path).read(), reference)


def test_a_job_stopped_by_its_progress_callback_resumes(
    thread_cluster, truth, model, reference, tmp_path
):
    class Stop(Exception):
        pass

    def stop_after_two_partitions(done: int, total: int) -> None:
        if len(recorded_partitions(tmp_path / "s.zarr")) >= 2:
            raise Stop

    options = {
        "client": thread_cluster,
        "partition_views": 16,
        "skeletons": truth.skeletons,
    } | SMALL
    with pytest.raises(Stop):
        embed_distributed(
            CONFIG, model, tmp_path / "s.zarr", progress=stop_after_two_partitions, **options
        )
    result = embed_distributed(CONFIG, model, tmp_path / "s.zarr", **options)
    assert result.partitions_skipped >= 2 and result.partitions_run > 0
    assert_same_rows(EmbeddingStore.open(tmp_path / "s.zarr").read(), reference)


def test_a_store_of_another_model_is_refused(thread_cluster, truth, model, tmp_path):
    path = tmp_path / "s.zarr"
    embed_segments(
        lazy_dataset(),
        model,
        path,
        segment_ids=sorted(truth.skeletons)[:1],
        skeletons=truth.skeletons,
        **SMALL,
    )
    with pytest.raises(StoreSignatureError):
        embed_distributed(
            CONFIG, SegclrModel(get_preset("tiny")), path, client=thread_cluster, **SMALL
        )
    with pytest.raises(SegmentNotFoundError, match="ground-truth"):
        embed_distributed(CONFIG, model, path, client=thread_cluster, segment_ids=[12345], **SMALL)


@pytest.mark.slow
def test_a_killed_worker_leaves_a_complete_store(model, reference, tmp_path):
    """Kill a worker process mid-job: its partition is redone, every node stored once."""
    killed = []
    with local_client(2) as client:
        pids = client.run(os.getpid)

        def kill_a_busy_worker(done: int, total: int) -> None:
            if done == 0 or killed:
                return
            busy = [addr for addr, keys in client.processing().items() if keys] or list(pids)
            os.kill(pids[busy[0]], signal.SIGKILL)
            killed.append(pids[busy[0]])

        result = embed_distributed(
            CONFIG,
            model,
            tmp_path / "s.zarr",
            client=client,
            partition="chunks",
            chunk_nm=1024.0,
            partition_views=12,
            append_rows=4,
            progress=kill_a_busy_worker,
            **SMALL,
        )
        assert killed and killed[0] not in client.run(os.getpid).values()
    assert result.partitions_run == result.partitions > 4
    assert_matches_ground_truth(tmp_path / "s.zarr", reference)


DRIVER = """
import sys
from napari_segclr.cluster import embed_distributed
from napari_segclr.synthetic import NeuropilConfig

if __name__ == "__main__":
    config = NeuropilConfig(shape=(16, 32, 32), voxel_size=128.0, seed=1)
    embed_distributed(config, sys.argv[1], sys.argv[2], partition="chunks", chunk_nm=1024.0,
                      partition_views=8, spacing_nm={spacing}, batch_size=8, device="cpu")
"""


@pytest.mark.slow
def test_a_killed_driver_is_resumed_without_redoing_recorded_work(
    thread_cluster, model, reference, tmp_path
):
    checkpoint, path = tmp_path / "tiny.pt", tmp_path / "s.zarr"
    save_checkpoint(checkpoint, model, extra={})
    script = tmp_path / "driver.py"
    script.write_text(textwrap.dedent(DRIVER.format(spacing=SPACING)))
    # Its own session: killing the group kills the driver and its local workers at once.
    job = subprocess.Popen(
        [sys.executable, str(script), str(checkpoint), str(path)], start_new_session=True
    )
    try:
        deadline = time.monotonic() + 240
        while len(recorded_partitions(path)) < 2 and job.poll() is None:
            assert time.monotonic() < deadline, "the job recorded no partition in time"
            time.sleep(0.02)
    finally:
        os.killpg(job.pid, signal.SIGKILL)
        job.wait()
    recorded = recorded_partitions(path)
    stored = len(EmbeddingStore.open(path))
    result = embed_distributed(
        CONFIG,
        model,
        path,
        client=thread_cluster,
        partition="chunks",
        chunk_nm=1024.0,
        partition_views=8,
        **SMALL,
    )
    assert 2 <= result.partitions_skipped == len(recorded) < result.partitions
    assert result.partitions_run == result.partitions - len(recorded)
    assert result.embedded == result.nodes - stored
    assert_matches_ground_truth(path, reference)


def test_volumes_given_by_path_are_opened_on_the_workers(
    thread_cluster, truth, model, reference, tmp_path
):
    em, seg = tmp_path / "em.tif", tmp_path / "seg.tif"
    tifffile.imwrite(em, np.asarray(truth.dataset.em.array))
    tifffile.imwrite(seg, np.asarray(truth.dataset.segmentation.array))
    spec = DatasetSpec(em, str(seg), em_voxel_size=128, seg_voxel_size=(128, 128, 128))
    assert spec.em == str(em) and spec.em_voxel_size == (128.0, 128.0, 128.0)
    embed_distributed(
        spec, model, tmp_path / "s.zarr", client=thread_cluster, skeletons=truth.skeletons, **SMALL
    )
    assert_same_rows(EmbeddingStore.open(tmp_path / "s.zarr").read(), reference)
    with pytest.raises(ValueError, match=r"DatasetSpec\.em must be a path"):
        DatasetSpec("", str(seg))
